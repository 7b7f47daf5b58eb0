// Issue "Safe on a public address" (worker side), over real sockets: sipedge with two worker
// threads on 127.0.0.1:22400 (UDP and TCP); a UDP "backend" on 127.0.0.8:22408 that answers every
// request 200 and records what reached it; our own UAs on 127.0.0.x. Ports 22400-22499.
import t from 'tap'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createSocket, type Socket as UdpSocket } from 'node:dgram'
import { startProxy } from '../dist/sipp.js'
import { StreamClient, UdpClient, tempDir, sleep } from '@sipedge/tests'

const PORT = 22400

/** ../shared/sip-torture next to the checkout (its README), looked for in each parent; null when absent. */
const TORTURE_DIR = ((): string | null => {
  for (let d = dirname(fileURLToPath(import.meta.url)), i = 0; i < 32; i++, d = dirname(d)) {
    if (existsSync(join(d, 'shared', 'sip-torture', 'rfc5118'))) return join(d, 'shared', 'sip-torture')
    if (dirname(d) === d) break
  }
  return null
})()
const tmp = tempDir('sipedge-public-')
t.teardown(tmp.cleanup)

const config = `
workers: 2
listen: [udp:127.0.0.1:${PORT}, tcp:127.0.0.1:${PORT}]
domains: [example.com]
timers: { t1: 100ms, t2: 1s, t4: 1s }
registrar: { store: "lmdb:${join(tmp.dir, 'store')}" }
routes:
  - { match: { method: REGISTER, domain: example.com }, action: register }
  - { match: {}, action: { forward: "sip:127.0.0.8:22408" } }
`

/** The backend: answers every request 200 (copying Via, From, To, Call-ID, CSeq), keeps the start lines. */
class Backend {
  readonly sock: UdpSocket = createSocket('udp4')
  readonly seen: string[] = []
  constructor() {
    this.sock.on('message', (m, r) => {
      const lines = m.toString('latin1').split('\r\n')
      this.seen.push(lines[0]!)
      if (lines[0]!.startsWith('SIP/2.0') || lines[0]!.startsWith('ACK ')) return
      const keep = lines.filter(l => /^(via|from|to|call-id|cseq|[vftik])\s*:/i.test(l))
      this.sock.send(Buffer.from(['SIP/2.0 200 OK', ...keep, 'Content-Length: 0', '', ''].join('\r\n'), 'latin1'), r.port, r.address)
    })
  }
  bind(): Promise<void> { return new Promise(r => this.sock.bind(22408, '127.0.0.8', () => r())) }
  async waitFor(pred: (line: string) => boolean, n: number, ms = 3000): Promise<number> {
    const until = Date.now() + ms
    while (this.seen.filter(pred).length < n && Date.now() < until) await sleep(20)
    return this.seen.filter(pred).length
  }
}

const backend = new Backend()
await backend.bind()
t.teardown(() => backend.sock.close())
const { engine } = await startProxy(config)
t.teardown(() => engine.stop())

// RFC 5118 §4.1 ipv6-good, sent as is over UDP and then over TCP. The torture REGISTERs share
// branch and sent-by (README: the files are byte-exact); the TCP one used to match the UDP server
// transaction: it was never forwarded, and the UDP transaction's 200 was sent again instead.
t.test('torture-register-over-tcp-absorbed: ipv6-good is forwarded over UDP and over TCP', { skip: TORTURE_DIR === null ? 'no ../shared/sip-torture' : false }, async t => {
  const msg = readFileSync(join(TORTURE_DIR as string, 'rfc5118', 'ipv6-good.dat'))
  const isReg = (l: string): boolean => l.startsWith('REGISTER sip:[2001:db8::10]')
  // The Via has no rport and no port: the UDP 200 goes to 127.0.0.7:5060 (RFC 3261 §18.2.2).
  const ua = createSocket('udp4')
  const answers: string[] = []
  ua.on('message', m => answers.push(m.toString('latin1').split('\r\n')[0]!))
  await new Promise<void>(r => ua.bind(5060, '127.0.0.7', () => r()))
  t.teardown(() => ua.close())
  ua.send(msg, PORT, '127.0.0.1')
  t.equal(await backend.waitFor(isReg, 1), 1, 'UDP: forwarded to the backend')
  for (let i = 0; i < 100 && answers.length === 0; i++) await sleep(20)
  t.same(answers, ['SIP/2.0 200 OK'], 'UDP: the backend\'s 200 relayed')

  const c = await StreamClient.tcp(PORT)
  t.teardown(() => c.close())
  c.write(msg)
  t.equal(await backend.waitFor(isReg, 2), 2, 'TCP: forwarded to the backend too')
  const [resp] = await c.waitFor(1)
  t.equal(resp?.status, 200, 'TCP: the backend\'s 200 relayed on the connection')
  await sleep(200)
  t.same(answers, ['SIP/2.0 200 OK'], 'the UDP transaction did not send its 200 again')
})
