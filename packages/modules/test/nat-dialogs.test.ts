// NAT traversal for registrations and dialogs over real UDP sockets (127.0.0.x, ports 19630-19659).
// Phones "behind NAT" write an unused loopback address (127.0.200.x) in their Via and Contact and
// send from their real sockets without rport: NAT is detected by source != sent-by, and anything
// misrouted to the Via/Contact stays on loopback and is lost — so a message that arrives proves it
// went to the source. An application server on 127.0.0.2 is an ordinary, reachable UA.
import t from 'tap'
import { join } from 'node:path'
import { createSocket, type Socket } from 'node:dgram'
import { parseConfig, type FrozenConfig } from '@sipedge/config'
import { openStores } from '@sipedge/store'
import type { NatModule } from '../dist/index.js'
import { proxyWith } from './fixtures/proxy.js'

const PROXY_PORT = 19630
const log = { debug() {}, info() {}, warn() {}, error() {} }

/** A UA on a real socket: collects messages, builds requests and answers from what it received. */
class Ua {
  readonly sock: Socket
  readonly inbox: string[] = []
  private waiters: Array<() => void> = []
  /** host:port written in Via and Contact (the NAT-private one for phones). */
  constructor(readonly address: string, readonly port: number, readonly sentBy: string, readonly user: string) {
    this.sock = createSocket('udp4')
    this.sock.on('message', m => { this.inbox.push(m.toString('latin1')); const w = this.waiters; this.waiters = []; for (const f of w) f() })
  }
  get contact(): string { return `sip:${this.user}@${this.sentBy}` }
  bind(): Promise<void> { return new Promise(r => this.sock.bind(this.port, this.address, () => r())) }
  send(s: string): void { this.sock.send(Buffer.from(s, 'latin1'), PROXY_PORT, '127.0.0.1') }
  async next(re: RegExp, ms = 3000): Promise<string> {
    const deadline = Date.now() + ms
    for (;;) {
      const i = this.inbox.findIndex(m => re.test(m))
      if (i >= 0) return this.inbox.splice(i, 1)[0]!
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`${this.user}: timed out waiting for ${re} (inbox: ${this.inbox.map(m => m.split('\r\n')[0]).join(' | ')})`)
      await new Promise<void>(r => { this.waiters.push(r); setTimeout(r, Math.min(left, 100)).unref() })
    }
  }
  request(method: string, ruri: string, o: { callId: string; cseq?: number; from?: string; to?: string; routes?: string[]; headers?: string[] }): string {
    const s = [
      `${method} ${ruri} SIP/2.0`,
      `Via: SIP/2.0/UDP ${this.sentBy};branch=z9hG4bK${Math.random().toString(36).slice(2)}`,
      'Max-Forwards: 70',
      `From: ${o.from ?? `<sip:${this.user}@example.com>;tag=${this.user}-tag`}`,
      `To: ${o.to ?? `<${ruri}>`}`,
      `Call-ID: ${o.callId}`,
      `CSeq: ${o.cseq ?? 1} ${method}`,
      ...(o.routes ?? []).map(r => `Route: ${r}`),
      `Contact: <${this.contact}>`,
      ...(o.headers ?? []),
      'Content-Length: 0', '', '',
    ].join('\r\n')
    this.send(s)
    return s
  }
  /** Answers `req` (UAS): Via/From/To/Call-ID/CSeq and Record-Route copied, our To-tag and Contact. */
  answer(req: string, status: number, reason: string): void {
    const keep = req.split('\r\n').filter(l => /^(via|from|to|call-id|cseq|record-route):/i.test(l))
      .map(l => (/^to:/i.test(l) && !/tag=/.test(l) ? `${l};tag=${this.user}-tag` : l))
    this.send([`SIP/2.0 ${status} ${reason}`, ...keep, `Contact: <${this.contact}>`, 'Content-Length: 0', '', ''].join('\r\n'))
  }
  close(): void { try { this.sock.close() } catch { /* closed */ } }
}

const header = (m: string, name: string): string[] => m.split('\r\n').filter(l => l.toLowerCase().startsWith(name.toLowerCase() + ':')).map(l => l.slice(l.indexOf(':') + 1).trim())
/** The dialog's route set from a Record-Route list (a UAC reverses it, a UAS keeps it, §12.1). */
const rrOf = (m: string): string[] => header(m, 'record-route').flatMap(v => v.split(/,\s*(?=<)/))
const startLine = (m: string): string => m.split('\r\n')[0]!

async function setup(t: Tap.Test, extra = ''): Promise<{ proxy: Awaited<ReturnType<typeof proxyWith>>; app: Ua; stores: Awaited<ReturnType<typeof openStores>> }> {
  const dir = t.testdir({})
  const config = parseConfig(`
workers: 1
listen: [udp:127.0.0.1:${PROXY_PORT}]
domains: [example.com]
timers: { t1: 100ms, t2: 1s, t4: 1s }
registrar: { store: "lmdb:${join(dir, 'loc')}", min_expires: 1s }
dialog: { secret: "nat-dialogs-test-secret" }
${extra}
routes:
  - { match: { method: REGISTER }, action: register }
  - { match: { domain: apps.test }, action: { forward: "sip:127.0.0.2:19640" } }
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
  const app = new Ua('127.0.0.2', 19640, '127.0.0.2:19640', 'app')
  await app.bind()
  t.teardown(async () => { app.close(); await proxy.close(100); sock.close(); await stores.close() })
  return { proxy, app, stores }
}

t.test('a NATed phone registered over UDP: INVITE and NOTIFY reach its source; BYE both ways', async t => {
  const { proxy, app } = await setup(t)
  const phone = new Ua('127.0.0.1', 19650, '127.0.200.50:5062', 'alice')
  await phone.bind()
  t.teardown(() => phone.close())
  phone.request('REGISTER', 'sip:example.com', { callId: 'reg-a', from: '<sip:alice@example.com>;tag=r', to: '<sip:alice@example.com>', headers: ['Expires: 60'] })
  t.match(startLine(await phone.next(/^SIP\/2\.0 /)), /^SIP\/2\.0 200/, 'the 200 reaches the source although the Via names 127.0.200.50:5062 without rport (force_rport)')

  // Out-of-dialog NOTIFY from the application server.
  app.request('NOTIFY', 'sip:alice@example.com', { callId: 'ntf-1', headers: ['Event: message-summary', 'Subscription-State: active'] })
  const ntf = await phone.next(/^NOTIFY /)
  t.equal(startLine(ntf), 'NOTIFY sip:alice@127.0.200.50:5062 SIP/2.0', 'NOTIFY at the source, Request-URI the Contact')
  phone.answer(ntf, 200, 'OK')
  await app.next(/^SIP\/2\.0 200[^]*CSeq: 1 NOTIFY/)

  // INVITE from the application server; the phone answers from behind NAT.
  app.request('INVITE', 'sip:alice@example.com', { callId: 'call-1' })
  const inv = await phone.next(/^INVITE /)
  phone.answer(inv, 200, 'OK')
  const ok = await app.next(/^SIP\/2\.0 200[^]*CSeq: 1 INVITE/)
  const routes = rrOf(ok).reverse()
  t.match(routes[0], /;sef=/, 'our Record-Route carries the flow parameter')
  t.match(header(ok, 'contact')[0], /127\.0\.200\.50:5062/, 'the phone\'s Contact is not changed')
  const to = header(ok, 'to')[0]!
  const dlg = { callId: 'call-1', from: '<sip:app@example.com>;tag=app-tag', to, routes }
  app.request('ACK', 'sip:alice@127.0.200.50:5062', { ...dlg, cseq: 1 })
  t.equal(startLine(await phone.next(/^ACK /)), 'ACK sip:alice@127.0.200.50:5062 SIP/2.0', 'ACK for the 2xx at the source')
  app.request('BYE', 'sip:alice@127.0.200.50:5062', { ...dlg, cseq: 2 })
  const bye = await phone.next(/^BYE /)
  t.pass('the application server\'s BYE reaches the phone at its source')
  phone.answer(bye, 200, 'OK')
  await app.next(/^SIP\/2\.0 200[^]*CSeq: 2 BYE/)

  // A second call that the phone ends: its BYE follows its route set to the application server.
  app.request('INVITE', 'sip:alice@example.com', { callId: 'call-2' })
  const inv2 = await phone.next(/^INVITE /)
  phone.answer(inv2, 200, 'OK')
  const ok2 = await app.next(/^SIP\/2\.0 200[^]*Call-ID: call-2/)
  app.request('ACK', 'sip:alice@127.0.200.50:5062', { callId: 'call-2', from: '<sip:app@example.com>;tag=app-tag', to: header(ok2, 'to')[0]!, routes: rrOf(ok2).reverse() })
  await phone.next(/^ACK /)
  phone.request('BYE', 'sip:app@127.0.0.2:19640', {
    callId: 'call-2', cseq: 1, from: header(ok2, 'to')[0]!, to: '<sip:app@example.com>;tag=app-tag', routes: rrOf(inv2),
  })
  const bye2 = await app.next(/^BYE /)
  t.equal(startLine(bye2), 'BYE sip:app@127.0.0.2:19640 SIP/2.0', 'the phone\'s BYE reaches the application server')
  app.answer(bye2, 200, 'OK')
  await phone.next(/^SIP\/2\.0 200[^]*BYE/)
  t.ok(proxy.module<NatModule>('nat')!.counters.flowsUsed >= 2, 'in-dialog requests went over the recorded flow')
})

t.test('a NATed caller (private Contact) gets the callee\'s BYE at its source; a forged flow parameter is refused', async t => {
  const { app } = await setup(t)
  const phone = new Ua('127.0.0.1', 19651, '127.0.200.51:5064', 'bob')
  await phone.bind()
  t.teardown(() => phone.close())
  phone.request('INVITE', 'sip:conf@apps.test', { callId: 'out-1' })
  const inv = await app.next(/^INVITE /)
  t.match(header(inv, 'via')[1], /127\.0\.200\.51:5064;branch=\S+;received=127\.0\.0\.1;rport=19651/, 'force_rport: received and rport filled in')
  app.answer(inv, 200, 'OK')
  const ok = await phone.next(/^SIP\/2\.0 200[^]*INVITE/)
  const fromPhone = { callId: 'out-1', from: '<sip:bob@example.com>;tag=bob-tag', to: header(ok, 'to')[0]!, routes: rrOf(ok).reverse() }
  phone.request('ACK', 'sip:app@127.0.0.2:19640', { ...fromPhone, cseq: 1 })
  await app.next(/^ACK /)

  const fromApp = { callId: 'out-1', from: header(ok, 'to')[0]!, to: '<sip:bob@example.com>;tag=bob-tag', routes: rrOf(inv) }
  t.match(fromApp.routes[0], /;sef=/, 'the caller\'s flow is in our Record-Route')
  // Forged: the flow parameter rewritten to point elsewhere, MAC kept.
  const forged = fromApp.routes[0]!.replace(/;sef=([A-Za-z0-9_-]+)\./, `;sef=${Buffer.from('udp,127.0.0.9,5999,0,0|', 'utf8').toString('base64url')}.`)
  app.request('BYE', 'sip:bob@127.0.200.51:5064', { ...fromApp, cseq: 1, routes: [forged] })
  t.match(startLine(await app.next(/^SIP\/2\.0 4\d\d[^]*CSeq: 1 BYE/)), /^SIP\/2\.0 403/, 'forged flow parameter: 403')

  app.request('BYE', 'sip:bob@127.0.200.51:5064', { ...fromApp, cseq: 2 })
  const bye = await phone.next(/^BYE /)
  t.equal(startLine(bye), 'BYE sip:bob@127.0.200.51:5064 SIP/2.0', 'the callee\'s BYE reaches the NATed caller at its source')
  phone.answer(bye, 200, 'OK')
  await app.next(/^SIP\/2\.0 200[^]*CSeq: 2 BYE/)
})
