// Issue "Safe on a public address" (worker side), over real sockets: sipedge with two worker
// threads on 127.0.0.1:22400 (UDP and TCP); a UDP "backend" on 127.0.0.8:22408 that answers every
// request 200 and records what reached it; our own UAs on 127.0.0.x. Ports 22400-22499.
import t from 'tap'
import { createHash } from 'node:crypto'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
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

writeFileSync(join(tmp.dir, 'users.json'), JSON.stringify({ users: { alice: 'secret01', bob: 'secret02' } }))
const config = `
workers: 2
listen: [udp:127.0.0.1:${PORT}, tcp:127.0.0.1:${PORT}]
domains: [example.com, users.test]
timers: { t1: 100ms, t2: 1s, t4: 1s }
registrar: { store: "lmdb:${join(tmp.dir, 'store')}" }
auth:
  domains: { example.com: { users_file: ${join(tmp.dir, 'users.json')}, methods: [INVITE], algorithms: [MD5] } }
  throttle: { ban_users: 5 }
routes:
  - { match: { method: REGISTER, domain: example.com }, action: register }
  - { match: { domain: users.test }, action: lookup }
  - { match: { domain: reject.test }, action: { reject: 403 } }
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

// ------------------------------------------------------------------------------ helpers

let seq = 0
/** A request from a UA at `addr`:`port` (Via with rport, so answers come back to the socket). */
function request(method: string, ruri: string, addr: string, port: number, o: { from?: string; headers?: string[]; via?: string; callId?: string; maxForwards?: number } = {}): string {
  seq++
  return [
    `${method} ${ruri} SIP/2.0`,
    `Via: ${o.via ?? `SIP/2.0/UDP ${addr}:${port}`};branch=z9hG4bK-pa${seq}-${Date.now()};rport`,
    `Max-Forwards: ${o.maxForwards ?? 70}`,
    `From: <sip:${o.from ?? 'scan'}@${o.from !== undefined ? 'example.com' : 'elsewhere.test'}>;tag=f${seq}`,
    `To: <${ruri}>`,
    `Call-ID: ${o.callId ?? `pa-${seq}-${Date.now()}`}`,
    `CSeq: 1 ${method}`,
    ...(o.headers ?? []),
    'Content-Length: 0', '', ''].join('\r\n')
}

/** A UDP UA bound to addr:any that keeps everything it receives (bytes and start lines). */
class Ua {
  readonly sock = createSocket('udp4')
  readonly got: Buffer[] = []
  port = 0
  constructor(readonly addr: string) { this.sock.on('message', m => this.got.push(m)) }
  async bind(): Promise<this> { await new Promise<void>(r => this.sock.bind(0, this.addr, () => r())); this.port = this.sock.address().port; return this }
  send(text: string): void { this.sock.send(Buffer.from(text, 'latin1'), PORT, '127.0.0.1') }
  /** The next message received after `from` (index), or undefined after `ms`. */
  async next(from: number, ms = 800): Promise<string | undefined> {
    const until = Date.now() + ms
    while (this.got.length <= from && Date.now() < until) await sleep(10)
    return this.got[from]?.toString('latin1')
  }
  close(): void { try { this.sock.close() } catch { /* closed */ } }
}

const line = (s: string | undefined): string => s === undefined ? 'nothing' : s.slice(0, s.indexOf('\r\n'))
const md5 = (s: string): string => createHash('md5').update(s).digest('hex')

/** An INVITE as `user` answered with `password` to the 407 it draws (new Call-ID each time). */
async function attempt(ua: Ua, user: string, password: string): Promise<string> {
  const ruri = 'sip:carol@example.com'
  const callId = `auth-${user}-${++seq}-${Date.now()}`
  let at = ua.got.length
  ua.send(request('INVITE', ruri, ua.addr, ua.port, { from: user, callId }))
  const ch = await ua.next(at)
  if (ch === undefined || !/^SIP\/2\.0 407 /.test(ch)) return line(ch)
  const nonce = /nonce="([^"]+)"/.exec(ch)![1]!
  const resp = md5(`${md5(`${user}:example.com:${password}`)}:${nonce}:00000001:cn:auth:${md5(`INVITE:${ruri}`)}`)
  at = ua.got.length
  ua.send(request('INVITE', ruri, ua.addr, ua.port, { from: user, callId, headers: [
    `Proxy-Authorization: Digest username="${user}", realm="example.com", nonce="${nonce}", uri="${ruri}", response="${resp}", algorithm=MD5, qop=auth, nc=00000001, cnonce="cn"`,
  ] }))
  const r = await ua.next(at)
  // A request that got through is forwarded: the backend's 100/200 come back.
  return r !== undefined && / 100 Trying/.test(line(r)) ? line(await ua.next(at + 1)) : line(r)
}

// ------------------------------------------------------------------------------ item 8

t.test('via-port-zero-accepted: a request whose Via says port 0 is refused (TCP: 400) and never forwarded', async t => {
  const before = backend.seen.length
  const c = await StreamClient.tcp(PORT)
  t.teardown(() => c.close())
  c.write(request('INVITE', 'sip:bob@anywhere.test', '127.0.0.1', 0, { via: 'SIP/2.0/TCP 127.0.0.1:0' }))
  const [r] = await c.waitFor(1)
  t.equal(r?.status, 400, 'TCP: 400 Bad Request')
  const ua = await new Ua('127.0.0.9').bind()
  t.teardown(() => ua.close())
  ua.send(request('INVITE', 'sip:bob@anywhere.test', '127.0.0.9', 0, { via: 'SIP/2.0/UDP 127.0.0.9:0' }))
  t.equal(line(await ua.next(0, 600)), 'nothing', 'UDP: nothing to answer to (the top Via is the address)')
  t.equal(backend.seen.length, before, 'nothing forwarded')
})

t.test('scanner-user-agent-answered: friendly-scanner gets nothing, over UDP and TCP; other agents are answered', async t => {
  const ua = await new Ua('127.0.0.10').bind()
  t.teardown(() => ua.close())
  for (const [agent, m, ruri] of [['friendly-scanner', 'OPTIONS', 'sip:100@127.0.0.1'], ['SIPVicious', 'REGISTER', 'sip:example.com'], ['sipcli/v1.8', 'INVITE', 'sip:001@reject.test']]) {
    ua.send(request(m!, ruri!, ua.addr, ua.port, { headers: [`User-Agent: ${agent}`] }))
  }
  t.equal(line(await ua.next(0, 800)), 'nothing', 'UDP: no answer to any of them')
  const c = await StreamClient.tcp(PORT)
  t.teardown(() => c.close())
  c.write(request('OPTIONS', 'sip:127.0.0.1', '127.0.0.1', 5060, { via: 'SIP/2.0/TCP 127.0.0.1:5060', headers: ['User-Agent: friendly-scanner'] }))
  c.write(request('OPTIONS', 'sip:127.0.0.1', '127.0.0.1', 5060, { via: 'SIP/2.0/TCP 127.0.0.1:5060', headers: ['User-Agent: sipsak 0.9.8'] }))
  const [r] = await c.waitFor(1)
  t.equal(r?.status, 200, 'TCP: the sipsak OPTIONS is answered')
  await sleep(200)
  t.equal(c.messages.length, 1, 'and only that one')
})

t.test('lookup-enumerates-users: an unknown and an unregistered user of our domain get the same 480', async t => {
  const ua = await new Ua('127.0.0.11').bind()
  t.teardown(() => ua.close())
  ua.send(request('INVITE', 'sip:alice@users.test', ua.addr, ua.port))
  const a = await ua.next(1)
  ua.send(request('INVITE', 'sip:nobody-here@users.test', ua.addr, ua.port))
  const b = await ua.next(3)
  t.equal(line(a), 'SIP/2.0 480 Temporarily Unavailable')
  t.equal(line(b), 'SIP/2.0 480 Temporarily Unavailable')
})

// ------------------------------------------------------------------------------ item 6

t.test('reflection-403-retransmitted: a spoofable UDP INVITE answered 403 costs at most 3x its bytes, through Timer H', async t => {
  const ua = await new Ua('127.0.0.12').bind()
  t.teardown(() => ua.close())
  const invite = request('INVITE', 'sip:0044123456@reject.test', ua.addr, ua.port)
  ua.send(invite) // and never ACKs, never retransmits: a forged source
  await sleep(64 * 100 + 800) // Timer H (64*T1 with T1 = 100 ms), and a margin
  const bytes = ua.got.reduce((a, m) => a + m.length, 0)
  const lines = ua.got.map(m => line(m.toString('latin1')))
  t.ok(lines.includes('SIP/2.0 403 Forbidden'), 'the 403 arrived')
  t.ok(bytes <= 3 * Buffer.byteLength(invite), `${bytes} bytes received for ${Buffer.byteLength(invite)} sent (${lines.length} messages)`)
})

// ------------------------------------------------------------------------------ item 5

t.test('auth-lockout-per-worker: new Call-IDs (other worker threads) do not reset the failure count', async t => {
  const ua = await new Ua('127.0.0.31').bind()
  t.teardown(() => ua.close())
  const got: string[] = []
  for (let i = 0; i < 6; i++) got.push(await attempt(ua, 'alice', 'wrong' + i))
  t.same(got.slice(0, 4), Array(4).fill('SIP/2.0 407 Proxy Authentication Required'), 're-challenged 4 times')
  t.same(got.slice(4), ['SIP/2.0 403 Forbidden (too many failed attempts)', 'SIP/2.0 403 Forbidden (too many failed attempts)'], 'then refused, whichever worker')
  t.equal(await attempt(ua, 'alice', 'secret01'), 'SIP/2.0 403 Forbidden (too many failed attempts)', 'also with the right password')
  const other = await new Ua('127.0.0.32').bind()
  t.teardown(() => other.close())
  t.equal(await attempt(other, 'alice', 'secret01'), 'SIP/2.0 200 OK', 'alice from elsewhere gets through (forwarded, the backend answers)')
})

t.test('auth-spray-across-users: a source failing against 5 users is banned on every worker', async t => {
  const ua = await new Ua('127.0.0.66').bind()
  t.teardown(() => ua.close())
  const got: string[] = []
  for (let i = 0; i < 10; i++) got.push(await attempt(ua, `user${i}`, 'guess'))
  t.same(got.slice(0, 5), Array(5).fill('SIP/2.0 407 Proxy Authentication Required'))
  t.same(got.slice(5), Array(5).fill('nothing'), 'then silence, whichever worker the Call-ID lands on')
  const fine = await new Ua('127.0.0.67').bind()
  t.teardown(() => fine.close())
  t.equal(await attempt(fine, 'bob', 'secret02'), 'SIP/2.0 200 OK', 'another source is not affected')
  const stats = await engine.query('all', 'stats', null) as Array<{ auth?: { bansReported: number; bannedDropped: number } }>
  t.equal(stats.reduce((a, s) => a + (s.auth?.bansReported ?? 0), 0), 1, 'one worker decided the ban')
  // the primary took the ban over (pike's ban table): it drops them before the workers
  const inPrimary = engine.pike.get('127.0.0.66')?.dropped ?? 0
  t.ok(stats.reduce((a, s) => a + (s.auth?.bannedDropped ?? 0), 0) + inPrimary >= 5, 'the dropped requests are counted')
  t.equal(engine.pike.get('127.0.0.66')?.reason, 'auth', 'a primary ban with its reason')
})
