// NAT traversal over TCP and TLS through the whole product (Engine with 2 workers, the proxy
// handler with its modules, built from the configuration like the command does), ports
// 19700-19729 on 127.0.0.x. Phones "behind NAT" write 127.0.200.x (an unused loopback address) in
// their Via and Contact: anything sent there is lost on loopback, and a new connection towards it
// would show in connection_events{opened}. The application server is a plain UDP socket on
// 127.0.0.2. Also the regression test of issue 16 item 4 (a TCP caller's in-dialog requests),
// and the primary's stream keep-alives end to end (a silent phone's connection closed and its
// binding removed).
import t from 'tap'
import { join } from 'node:path'
import { createSocket, type Socket as UdpSocket } from 'node:dgram'
import { connect as netConnect, createServer, type Socket } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { parseConfig, type FrozenConfig } from '@sipedge/config'
import { Engine, createLogger } from '@sipedge/transport'
import { engineOptionsFromConfig } from '@sipedge/cli'
import { openStores } from '@sipedge/store'
import { TestFramer, WsClient, tempDir, makeCert } from '@sipedge/tests'
import { randomBytes } from 'node:crypto'

const UDP_PORT = 19700
const TLS_PORT = 19701
const APP_PORT = 19710
const WS_PORT = 19702
const tmp = tempDir('sipedge-nat-streams-')
t.teardown(() => tmp.cleanup())
const cert = makeCert(tmp.dir, 'edge', 'edge.example.test')

const config = parseConfig(`
workers: 2
listen: [udp:127.0.0.1:${UDP_PORT}, tcp:127.0.0.1:${UDP_PORT}, tls:127.0.0.1:${TLS_PORT}, ws:127.0.0.1:${WS_PORT}]
tls: { certificates: [{ cert: ${cert.cert}, key: ${cert.key} }] }
domains: [example.com]
timers: { t1: 100ms, t2: 1s, t4: 1s }
store: "lmdb:${join(tmp.dir, 'store')}"
registrar: { min_expires: 1s }
nat:
  force_rport: true
  fix_contact: true
  keepalive: { enabled: true, interval: 5s, method: auto, failures_remove: 2 }
routes:
  - { match: { method: REGISTER }, action: register }
  - { match: { domain: apps.test }, action: { forward: "sip:127.0.0.2:${APP_PORT}" } }
  - { match: { domain: example.com }, action: lookup }
`) as FrozenConfig

const engine = new Engine({ ...engineOptionsFromConfig(config, createLogger({ level: 'silent' })), shutdownTimeoutMs: 2000 })
await engine.start()
t.teardown(() => engine.stop())
const stores = await openStores(config.registrar.store, { sweepIntervalMs: 0 })
t.teardown(() => stores.close())

/** Something that receives whole SIP messages, with a bounded wait for the next matching one. */
class Inbox {
  readonly messages: string[] = []
  private waiters: Array<() => void> = []
  push(m: string): void { this.messages.push(m); const w = this.waiters; this.waiters = []; for (const f of w) f() }
  async next(re: RegExp, who: string, ms = 4000): Promise<string> {
    const deadline = Date.now() + ms
    for (;;) {
      const i = this.messages.findIndex(m => re.test(m))
      if (i >= 0) return this.messages.splice(i, 1)[0]!
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`${who}: timed out waiting for ${re} (have: ${this.messages.map(m => m.split('\r\n')[0]).join(' | ')})`)
      await new Promise<void>(r => { this.waiters.push(r); setTimeout(r, Math.min(left, 100)).unref() })
    }
  }
}

/** A phone on one TCP or TLS connection; `sentBy` is what it writes in Via and Contact. */
class StreamPhone extends Inbox {
  raw = ''
  closed = false
  private readonly framer = new TestFramer()
  constructor(readonly sock: Socket, readonly proto: 'TCP' | 'TLS', readonly user: string, readonly sentBy: string) {
    super()
    sock.on('data', (c: Buffer) => { this.raw += c.toString('latin1'); for (const m of this.framer.push(c)) this.push(m) })
    sock.on('close', () => { this.closed = true })
    sock.on('error', () => {})
  }
  static async open(tt: Tap.Test, proto: 'TCP' | 'TLS', user: string, sentBy: string): Promise<StreamPhone> {
    const s = proto === 'TCP' ? netConnect({ port: UDP_PORT, host: '127.0.0.1' }) : tlsConnect({ port: TLS_PORT, host: '127.0.0.1', rejectUnauthorized: false })
    await new Promise<void>((resolve, reject) => { s.once(proto === 'TCP' ? 'connect' : 'secureConnect', () => resolve()); s.once('error', reject) })
    const p = new StreamPhone(s, proto, user, sentBy)
    tt.teardown(() => s.destroy())
    return p
  }
  get contact(): string { return `sip:${this.user}@${this.sentBy};transport=${this.proto.toLowerCase()}` }
  write(s: string): void { this.sock.write(Buffer.from(s, 'latin1')) }
  request(method: string, ruri: string, o: { callId: string; cseq?: number; from?: string; to?: string; routes?: string[]; headers?: string[] }): void {
    this.write(msg(`${method} ${ruri} SIP/2.0`, [
      `Via: SIP/2.0/${this.proto} ${this.sentBy};branch=z9hG4bK${Math.random().toString(36).slice(2)}`, 'Max-Forwards: 70',
      `From: ${o.from ?? `<sip:${this.user}@example.com>;tag=${this.user}-tag`}`, `To: ${o.to ?? `<${ruri}>`}`, `Call-ID: ${o.callId}`,
      `CSeq: ${o.cseq ?? 1} ${method}`, ...(o.routes ?? []).map(r => `Route: ${r}`), `Contact: <${this.contact}>`, ...(o.headers ?? []),
    ]))
  }
  answer(req: string, status: number, reason: string): void { this.write(answerTo(req, status, reason, this.user, this.contact)) }
  async register(aor: string): Promise<void> {
    this.request('REGISTER', 'sip:example.com', { callId: `reg-${this.user}-${Date.now()}`, from: `<${aor}>;tag=r`, to: `<${aor}>`, headers: ['Expires: 300'] })
    await this.next(/^SIP\/2\.0 200[^]*CSeq: 1 REGISTER/, this.user)
  }
}

/** The application server: a plain UDP UA on 127.0.0.2. */
class App extends Inbox {
  readonly sock: UdpSocket = createSocket('udp4')
  constructor() { super(); this.sock.on('message', m => this.push(m.toString('latin1'))) }
  async bind(): Promise<void> { await new Promise<void>(r => this.sock.bind(APP_PORT, '127.0.0.2', () => r())) }
  write(s: string): void { this.sock.send(Buffer.from(s, 'latin1'), UDP_PORT, '127.0.0.1') }
  request(method: string, ruri: string, o: { callId: string; cseq?: number; to?: string; from?: string; routes?: string[]; headers?: string[] }): void {
    this.write(msg(`${method} ${ruri} SIP/2.0`, [
      `Via: SIP/2.0/UDP 127.0.0.2:${APP_PORT};branch=z9hG4bK${Math.random().toString(36).slice(2)};rport`, 'Max-Forwards: 70',
      `From: ${o.from ?? '<sip:app@apps.test>;tag=app-tag'}`, `To: ${o.to ?? `<${ruri}>`}`, `Call-ID: ${o.callId}`, `CSeq: ${o.cseq ?? 1} ${method}`,
      ...(o.routes ?? []).map(r => `Route: ${r}`), `Contact: <sip:app@127.0.0.2:${APP_PORT}>`, ...(o.headers ?? []),
    ]))
  }
  answer(req: string, status: number, reason: string): void { this.write(answerTo(req, status, reason, 'app', `sip:app@127.0.0.2:${APP_PORT}`)) }
}

function msg(start: string, headers: string[]): string {
  return [start, ...headers, 'Content-Length: 0', '', ''].join('\r\n')
}
function answerTo(req: string, status: number, reason: string, user: string, contact: string): string {
  const keep = req.split('\r\n').filter(l => /^(via|from|to|call-id|cseq|record-route):/i.test(l))
    .map(l => (/^to:/i.test(l) && !/tag=/.test(l) ? `${l};tag=${user}-tag` : l))
  return msg(`SIP/2.0 ${status} ${reason}`, [...keep, `Contact: <${contact}>`])
}
const header = (m: string, name: string): string[] => m.split('\r\n').filter(l => l.toLowerCase().startsWith(name.toLowerCase() + ':')).map(l => l.slice(l.indexOf(':') + 1).trim())
const rrOf = (m: string): string[] => header(m, 'record-route').flatMap(v => v.split(/,\s*(?=<)/))
const opened = (): number => engine.counters.connOpened

const app = new App()
await app.bind()
t.teardown(() => app.sock.close())

for (const proto of ['TCP', 'TLS'] as const) {
  t.test(`${proto}: requests to a NATed phone's AOR arrive on the registering connection; no connection is opened`, async t => {
    const user = `nat${proto.toLowerCase()}`
    const phone = await StreamPhone.open(t, proto, user, proto === 'TCP' ? '127.0.200.60:5062' : '127.0.200.61:5063')
    await phone.register(`sip:${user}@example.com`)
    const before = opened()

    app.request('NOTIFY', `sip:${user}@example.com`, { callId: `${user}-ntf`, headers: ['Event: message-summary', 'Subscription-State: active'] })
    const ntf = await phone.next(/^NOTIFY /, user)
    t.equal(ntf.split('\r\n')[0], `NOTIFY ${phone.contact} SIP/2.0`, 'NOTIFY on the connection, Request-URI the Contact')
    phone.answer(ntf, 200, 'OK')
    await app.next(new RegExp(`^SIP/2\\.0 200[^]*Call-ID: ${user}-ntf`), 'app')

    app.request('INVITE', `sip:${user}@example.com`, { callId: `${user}-call` })
    const inv = await phone.next(/^INVITE /, user)
    phone.answer(inv, 200, 'OK')
    const ok = await app.next(new RegExp(`^SIP/2\\.0 200[^]*Call-ID: ${user}-call`), 'app')
    const dlg = { callId: `${user}-call`, to: header(ok, 'to')[0]!, routes: rrOf(ok).reverse() }
    app.request('ACK', phone.contact, { ...dlg, cseq: 1 })
    await phone.next(/^ACK /, user)
    app.request('BYE', phone.contact, { ...dlg, cseq: 2 })
    const bye = await phone.next(/^BYE /, user)
    t.pass('ACK and BYE from the application server arrive on the same connection')
    phone.answer(bye, 200, 'OK')
    await app.next(new RegExp(`^SIP/2\\.0 200[^]*CSeq: 2 BYE`), 'app')
    t.equal(opened(), before, 'connection_events{opened} did not move')
  })
}

t.test('the connection of a NATed phone is gone: no new connection, 480 at once', async t => {
  const phone = await StreamPhone.open(t, 'TCP', 'natgone', '127.0.200.62:5062')
  await phone.register('sip:natgone@example.com')
  phone.sock.destroy()
  await new Promise(r => setTimeout(r, 200))
  const before = opened()
  const t0 = Date.now()
  app.request('INVITE', 'sip:natgone@example.com', { callId: 'gone-1' })
  const final = await app.next(/^SIP\/2\.0 [2-6]\d\d[^]*Call-ID: gone-1/, 'app')
  t.match(final.split('\r\n')[0], /^SIP\/2\.0 480/, '480 Temporarily Unavailable')
  t.ok(Date.now() - t0 < 2000, `at once (the primary reports the gone connection), ${Date.now() - t0} ms`)
  t.equal(opened(), before, 'no connection opened towards the NATed phone')
  app.write(msg('ACK sip:natgone@example.com SIP/2.0', [`Via: ${header(final, 'via')[0]}`, 'Max-Forwards: 70', `From: ${header(final, 'from')[0]}`, `To: ${header(final, 'to')[0]}`, 'Call-ID: gone-1', 'CSeq: 1 ACK']))
})

t.test('issue 16 item 4: in-dialog requests to a caller connected over TCP reuse its connection instead of opening one to its Contact', async t => {
  // The caller is not behind NAT (its Via names its own address) and listens on its Contact
  // port: a new connection there would be accepted — and counted.
  const accepted: Socket[] = []
  const listener = createServer(s => { accepted.push(s); s.on('error', () => {}) })
  await new Promise<void>(r => listener.listen(19720, '127.0.0.1', () => r()))
  t.teardown(() => { for (const s of accepted) s.destroy(); listener.close() })
  const caller = await StreamPhone.open(t, 'TCP', 'carol', '127.0.0.1:19720')
  const before = opened()
  caller.request('INVITE', 'sip:conf@apps.test', { callId: 'tcp-caller-1' })
  const inv = await app.next(/^INVITE [^]*Call-ID: tcp-caller-1/, 'app')
  app.answer(inv, 200, 'OK')
  const ok = await caller.next(/^SIP\/2\.0 200[^]*INVITE/, 'carol')
  caller.request('ACK', `sip:app@127.0.0.2:${APP_PORT}`, { callId: 'tcp-caller-1', to: header(ok, 'to')[0]!, routes: rrOf(ok).reverse() })
  await app.next(/^ACK /, 'app')
  const fromApp = { callId: 'tcp-caller-1', from: header(ok, 'to')[0]!, to: '<sip:carol@example.com>;tag=carol-tag', routes: rrOf(inv) }
  app.request('INFO', caller.contact, { ...fromApp, cseq: 1 })
  const info = await caller.next(/^INFO /, 'carol')
  caller.answer(info, 200, 'OK')
  await app.next(/^SIP\/2\.0 200[^]*CSeq: 1 INFO/, 'app')
  app.request('BYE', caller.contact, { ...fromApp, cseq: 2 })
  const bye = await caller.next(/^BYE /, 'carol')
  t.pass("the callee's INFO and BYE arrive on the caller's own connection")
  caller.answer(bye, 200, 'OK')
  await app.next(/^SIP\/2\.0 200[^]*CSeq: 2 BYE/, 'app')
  t.equal(opened(), before, 'connection_events{opened} did not move')
  t.equal(accepted.length, 0, "no connection to the caller's Contact")
})

t.test('stream keep-alives: the primary pings; a phone that answers stays, a silent one is closed and its binding removed', async t => {
  const good = await StreamPhone.open(t, 'TCP', 'kagood', '127.0.200.70:5062')
  const silent = await StreamPhone.open(t, 'TLS', 'kasilent', '127.0.200.71:5062')
  await good.register('sip:kagood@example.com')
  await silent.register('sip:kasilent@example.com')
  // The good phone answers every RFC 5626 ping with a pong.
  let pongs = 0
  good.sock.on('data', (c: Buffer) => { if (c.toString('latin1').includes('\r\n\r\n') && c.length === 4) { pongs++; good.write('\r\n') } })
  const deadline = Date.now() + 20_000
  while (!silent.closed && Date.now() < deadline) await new Promise(r => setTimeout(r, 100))
  t.ok(silent.closed, 'the silent phone\'s connection was closed after 2 unanswered pings')
  t.ok(silent.raw.includes('\r\n\r\n'), 'it had been pinged (double CRLF)')
  t.ok(pongs >= 2, `the good phone was pinged and answered (${pongs})`)
  t.notOk(good.closed, 'the good phone\'s connection stays')
  const gone = Date.now() + 5000
  while ((await stores.location.get('sip:kasilent@example.com')).length > 0 && Date.now() < gone) await new Promise(r => setTimeout(r, 50))
  t.equal((await stores.location.get('sip:kasilent@example.com')).length, 0, 'the silent phone\'s binding was removed')
  t.equal((await stores.location.get('sip:kagood@example.com')).length, 1, 'the good phone keeps its binding')
  const ka = engine.keepaliveStats()
  t.ok(ka.sent[1]! >= 2 && ka.answered[1]! >= 2, `tcp pings sent and answered (${ka.sent[1]}, ${ka.answered[1]})`)
  t.ok(ka.failed[2]! >= 2 && ka.sent[2]! >= 2, `tls pings failed (${ka.failed[2]})`)
  t.equal(ka.closed, 1)
  const removed = (await engine.query('all', 'nat') as Array<{ bindingsRemoved: number }>).reduce((n, w) => n + w.bindingsRemoved, 0)
  t.equal(removed, 1, 'counted once, by the worker that registered it')
})

t.test('WebSocket: a browser phone gets its INVITE over its connection and is kept alive with ping frames', async t => {
  const ws = await WsClient.connect(WS_PORT, false)
  t.teardown(() => ws.close())
  // Answer RFC 6455 ping frames (opcode 9) with a masked pong (opcode 10) carrying the same data.
  let pings = 0
  ws.sock.on('data', (c: Buffer) => {
    if (c.length >= 2 && c[0] === 0x89) {
      pings++
      const len = c[1]! & 0x7f
      const data = c.subarray(2, 2 + len)
      const mask = randomBytes(4)
      ws.sock.write(Buffer.concat([Buffer.from([0x8a, 0x80 | len]), mask, Buffer.from(data.map((b, i) => b ^ mask[i & 3]!))]))
    }
  })
  const sentBy = 'df7jal23ls0d.invalid'
  const aor = 'sip:wsu@example.com'
  ws.send(msg('REGISTER sip:example.com SIP/2.0', [
    `Via: SIP/2.0/WS ${sentBy};branch=z9hG4bKws${Date.now()}`, 'Max-Forwards: 70', `From: <${aor}>;tag=w`, `To: <${aor}>`,
    'Call-ID: ws-reg', 'CSeq: 1 REGISTER', `Contact: <sip:wsu@${sentBy};transport=ws>`, 'Expires: 300']))
  await ws.waitFor(1)
  t.equal(ws.messages[0]!.status, 200, 'registered over WS')
  const before = opened()
  app.request('INVITE', aor, { callId: 'ws-call' })
  await ws.waitFor(2)
  t.match(ws.messages[1]!.raw, /^INVITE sip:wsu@df7jal23ls0d\.invalid;transport=ws SIP\/2\.0/, 'INVITE over the WebSocket connection')
  t.equal(opened(), before)
  const deadline = Date.now() + 12_000
  while (engine.keepaliveStats().answered[3]! < 1 && Date.now() < deadline) await new Promise(r => setTimeout(r, 100))
  t.ok(pings >= 1, `ping frames received (${pings})`)
  t.ok(engine.keepaliveStats().answered[3]! >= 1, 'the pong counts as answered (ws)')
  t.notOk(ws.closed, 'the connection stays')
})
