// The registrar inside the proxy core over real UDP sockets (127.0.0.x, ports 19300-19319):
// a phone registers from behind "NAT" (its Via and Contact name 127.0.200.20:5060, an unused
// loopback address, while it sends from its real socket), an application server on 127.0.0.2
// sends INVITE and NOTIFY to the AOR, the phone gets them at its source with the Request-URI
// rewritten to its contact. Nothing is ever sent to a private or public address.
import t from 'tap'
import { join } from 'node:path'
import { createSocket, type Socket } from 'node:dgram'
import { parseConfig, type FrozenConfig } from '@sipedge/config'
import { openStores } from '@sipedge/store'
import { proxyWith } from './fixtures/proxy.js'

const PROXY_PORT = 19300
const log = { debug() {}, info() {}, warn() {}, error() {} }

class Peer {
  readonly sock: Socket
  readonly inbox: string[] = []
  private waiters: Array<() => void> = []
  constructor(readonly address: string, readonly port: number) {
    this.sock = createSocket('udp4')
    this.sock.on('message', m => { this.inbox.push(m.toString('latin1')); const w = this.waiters; this.waiters = []; for (const f of w) f() })
  }
  bind(): Promise<void> { return new Promise(r => this.sock.bind(this.port, this.address, () => r())) }
  send(s: string): void { this.sock.send(Buffer.from(s, 'latin1'), PROXY_PORT, '127.0.0.1') }
  async next(re: RegExp, ms = 15_000): Promise<string> {
    const deadline = Date.now() + ms
    for (;;) {
      const i = this.inbox.findIndex(m => re.test(m))
      if (i >= 0) return this.inbox.splice(i, 1)[0]!
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out waiting for ${re} (inbox: ${this.inbox.map(m => m.split('\r\n')[0]).join(' | ')})`)
      await new Promise<void>(r => { this.waiters.push(r); setTimeout(r, Math.min(left, 100)).unref() })
    }
  }
  close(): void { try { this.sock.close() } catch { /* closed */ } }
}

function request(method: string, ruri: string, from: Peer, o: { callId: string; cseq?: number; to?: string; headers?: string[]; fromUri?: string; via?: string }): string {
  return [
    `${method} ${ruri} SIP/2.0`,
    `Via: SIP/2.0/UDP ${o.via ?? `${from.address}:${from.port}`};branch=z9hG4bK${Math.random().toString(36).slice(2)}${o.via === undefined ? ';rport' : ''}`,
    'Max-Forwards: 70',
    `From: <${o.fromUri ?? 'sip:app@' + from.address}>;tag=t${Math.random().toString(36).slice(2, 8)}`,
    `To: <${o.to ?? ruri}>`,
    `Call-ID: ${o.callId}`,
    `CSeq: ${o.cseq ?? 1} ${method}`,
    ...(o.headers ?? []),
    'Content-Length: 0', '', '',
  ].join('\r\n')
}
function reply(req: string, status: number, reason: string): string {
  const lines = req.split('\r\n')
  const keep = lines.filter(l => /^(via|from|to|call-id|cseq):/i.test(l)).map(l => (/^to:/i.test(l) && !/tag=/.test(l) ? l + ';tag=ph' : l))
  return [`SIP/2.0 ${status} ${reason}`, ...keep, 'Content-Length: 0', '', ''].join('\r\n')
}

t.test('register, then INVITE/NOTIFY from the application server reach the phone; unknown -> 480', async t => {
  const dir = t.testdir({})
  const config = parseConfig(`
workers: 1
listen: [udp:127.0.0.1:${PROXY_PORT}]
domains: [example.com]
timers: { t1: 100ms, t2: 1s, t4: 1s }
registrar: { store: "lmdb:${join(dir, 'loc')}", min_expires: 1s }
dispatcher: { sets: { apps: { probe: false, destinations: [sip:127.0.0.2:19310] } } }
routes:
  - { match: { method: REGISTER }, action: register }
  - { match: { domain: example.com }, action: lookup }
`) as FrozenConfig
  const stores = await openStores(config.registrar.store, { sweepIntervalMs: 0 })
  const sock = createSocket('udp4')
  await new Promise<void>(r => sock.bind(PROXY_PORT, '127.0.0.1', () => r()))
  const proxy = await proxyWith({
    config, workerIndex: 0, workers: 1, log,
    now: () => performance.timeOrigin + performance.now(),
    send: (dest, data) => sock.send(Array.isArray(data) ? Buffer.concat(data) : data, dest.port, dest.address),
  }, stores)
  sock.on('message', (m, ri) => proxy.receive(m, { transport: 'udp', address: ri.address, port: ri.port, socketId: 0, connId: 0, recvTime: performance.timeOrigin + performance.now() }))
  const phone = new Peer('127.0.0.1', 19301)
  const app = new Peer('127.0.0.2', 19310)
  await phone.bind()
  await app.bind()
  t.teardown(async () => { phone.close(); app.close(); await proxy.close(100); sock.close(); await stores.close() })

  // The phone's Via and Contact name an address it cannot be reached at (no rport): behind NAT,
  // so the source address and port are what count (and force_rport answers there).
  const NATED = '127.0.200.20:5060'
  phone.send(request('REGISTER', 'sip:example.com', phone, { via: NATED, callId: 'reg-1', to: 'sip:alice@example.com', fromUri: 'sip:alice@example.com', headers: [`Contact: <sip:alice@${NATED}>`, 'Expires: 60'] }))
  const ok = await phone.next(/^SIP\/2\.0 200/)
  t.match(ok, /Contact: <sip:alice@127\.0\.200\.20:5060>;expires=60/)
  t.match(ok, /Via: SIP\/2\.0\/UDP 127\.0\.200\.20:5060;branch=\S+;received=127\.0\.0\.1/, 'received filled in')

  for (const method of ['INVITE', 'NOTIFY']) {
    app.send(request(method, 'sip:alice@example.com', app, { callId: `${method}-1`, headers: method === 'NOTIFY' ? ['Event: message-summary', 'Subscription-State: active'] : [] }))
    const got = await phone.next(new RegExp(`^${method} `))
    t.match(got, new RegExp(`^${method} sip:alice@127\\.0\\.200\\.20:5060 SIP/2\\.0`), `${method}: Request-URI rewritten to the contact, sent to the source`)
    phone.sock.send(Buffer.from(reply(got, method === 'INVITE' ? 486 : 200, method === 'INVITE' ? 'Busy Here' : 'OK'), 'latin1'), PROXY_PORT, '127.0.0.1')
    // by Call-ID: the proxy retransmits a non-2xx final until it is ACKed (Timer G), so the
    // application server's inbox may hold copies of earlier answers on a slow run
    const final = await app.next(new RegExp(`^SIP/2\\.0 ${method === 'INVITE' ? 486 : 200}[\\s\\S]*\\r\\nCall-ID: ${method}-1\\r\\n`))
    t.match(final, new RegExp(`CSeq: 1 ${method}`), `${method}: the phone's answer reaches the application server`)
  }
  app.send(request('INVITE', 'sip:nobody@example.com', app, { callId: 'inv-404' }))
  t.match(await app.next(/^SIP\/2\.0 480[\s\S]*\r\nCall-ID: inv-404\r\n/), /Call-ID: inv-404/, 'unknown user: 480, as for any user without a binding')

  // Unregister: then 480
  phone.send(request('REGISTER', 'sip:example.com', phone, { via: NATED, callId: 'reg-1', cseq: 2, to: 'sip:alice@example.com', fromUri: 'sip:alice@example.com', headers: ['Contact: *', 'Expires: 0'] }))
  t.notMatch(await phone.next(/^SIP\/2\.0 200/), /Contact:/)
  app.send(request('INVITE', 'sip:alice@example.com', app, { callId: 'inv-after' }))
  t.match(await app.next(/^SIP\/2\.0 480[\s\S]*\r\nCall-ID: inv-after\r\n/), /Call-ID: inv-after/)
})
