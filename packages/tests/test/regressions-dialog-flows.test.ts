// Regression tests for in-dialog requests towards peers on connections (issue #16 defect 4), over
// real sockets against `sipedge` as a child process (ports 25300-25329):
// - a WebSocket UA (Contact on a *.invalid host, RFC 7118) called by a UDP phone gets the ACK and
//   BYE over its own connection and its 200 for the BYE reaches the phone (the WS flow in our
//   Record-Route has port 0: uWebSockets.js gives no remote port; it was refused as forged, 403);
// - a WebSocket caller gets the callee's BYE over its connection;
// - a TCP caller gets the callee's BYE over the connection its INVITE came on, no connection is
//   opened to its Contact (connection_events{opened} does not move);
// - an in-dialog request towards a WebSocket UA whose connection is gone is answered 480 at once
//   (no WebSocket connection can be opened towards a browser), not left to Timer F (32 s).
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { tempDir, WsClient, type SipResponse } from '@sipedge/tests'
import { SipPeer, PeerDialog, type PeerMsg } from '../dist/sip-peer.js'
import { startSipedge, http, sampleValue } from '../dist/ops.js'
import { parseExposition } from '../../metrics/test/fixtures/expo-parser.js'

const SIP = 25300
const WS = 25301
const HTTP = 25302
const TOKEN = 'dialog-flows-admin-token-012345'
const tmp = tempDir('sipedge-dialog-flows-')
t.teardown(tmp.cleanup)

const edge = await startSipedge(tmp.dir, 'edge.yaml', `
workers: 2
listen: [udp:127.0.0.1:${SIP}, tcp:127.0.0.1:${SIP}, ws:127.0.0.1:${WS}]
domains: [example.com]
store: "lmdb:${tmp.dir}/store"
metrics: { listen: 127.0.0.1:${HTTP} }
admin: { token: ${TOKEN} }
routes:
  - { match: { method: REGISTER }, action: register }
  - { match: { domain: example.com }, action: lookup }
`)
t.teardown(() => edge.stop())

async function metric(family: string, labels: Record<string, string> = {}): Promise<number> {
  const r = await http('GET', `http://127.0.0.1:${HTTP}/metrics`)
  return sampleValue(parseExposition(r.text), family, family, labels)
}
const opened = (): Promise<number> => metric('sipedge_connection_events_total', { event: 'opened' })

// The UDP phone: registered as phone@example.com, answers and sends what each test tells it.
const phone = await new SipPeer({ name: 'phone', address: '127.0.0.1', port: 25310, transport: 'udp' }).start()
t.teardown(() => phone.close())
const EDGE_ROUTE = [`<sip:127.0.0.1:${SIP};lr>`]

async function registerPeer(p: SipPeer, user: string): Promise<void> {
  p.sendRequest('REGISTER', 'sip:example.com', { from: `sip:${user}@example.com`, to: `sip:${user}@example.com`, headers: ['Expires: 300'], route: EDGE_ROUTE })
  await p.next(p.response(200, 'REGISTER'), `${user} registered`)
}
await registerPeer(phone, 'phone')

/** Header values of a raw message (list headers split at commas between name-addrs). */
function values(raw: string, name: string): string[] {
  const head = raw.slice(0, raw.indexOf('\r\n\r\n'))
  return head.split('\r\n').slice(1)
    .filter(l => l.slice(0, l.indexOf(':')).trim().toLowerCase() === name)
    .flatMap(l => l.slice(l.indexOf(':') + 1).split(/,\s*(?=<)/).map(v => v.trim()))
}
const startLine = (m: SipResponse): string => m.raw.slice(0, m.raw.indexOf('\r\n'))

/** A browser-like UA on one WebSocket: Via and Contact on a *.invalid host (RFC 7118 §5). */
class WsPhone {
  readonly host = `${randomBytes(5).toString('hex')}.invalid`
  readonly tag = randomBytes(4).toString('hex')
  private seen = 0
  constructor(readonly ws: WsClient, readonly user: string) {}
  get contact(): string { return `sip:${this.user}@${this.host};transport=ws` }
  send(lines: string[], body = ''): void {
    this.ws.send([...lines, `Content-Length: ${Buffer.byteLength(body)}`, '', body].join('\r\n'))
  }
  via(): string { return `Via: SIP/2.0/WS ${this.host};branch=z9hG4bK${randomBytes(6).toString('hex')}` }
  /** The next message not yet taken that matches, bounded. */
  async next(pred: (m: SipResponse) => boolean, what: string, ms = 5_000): Promise<SipResponse> {
    const deadline = Date.now() + ms
    for (;;) {
      for (let i = this.seen; i < this.ws.messages.length; i++) {
        const m = this.ws.messages[i]!
        if (pred(m)) { this.seen = i + 1; return m }
      }
      if (Date.now() > deadline || this.ws.closed) throw new Error(`${this.user}: no ${what} within ${ms} ms (have ${this.ws.messages.map(startLine).join(' | ')})`)
      await new Promise(r => setTimeout(r, 10))
    }
  }
  async register(): Promise<void> {
    const aor = `sip:${this.user}@example.com`
    this.send(['REGISTER sip:example.com SIP/2.0', this.via(), 'Max-Forwards: 70', `From: <${aor}>;tag=${this.tag}`, `To: <${aor}>`,
      `Call-ID: reg-${this.tag}`, 'CSeq: 1 REGISTER', `Contact: <${this.contact}>`, 'Expires: 300'])
    await this.next(m => m.status === 200 && /CSeq: 1 REGISTER/.test(m.raw), 'REGISTER 200')
  }
  /** Answers a request: its Vias, Record-Route, From, To (our tag added), Call-ID, CSeq. */
  answer(req: SipResponse, status: number, reason: string): void {
    const to = values(req.raw, 'to')[0]!
    this.send([`SIP/2.0 ${status} ${reason}`, ...values(req.raw, 'via').map(v => `Via: ${v}`), ...values(req.raw, 'record-route').map(v => `Record-Route: ${v}`),
      `From: ${values(req.raw, 'from')[0]}`, `To: ${/;tag=/.test(to) ? to : `${to};tag=${this.tag}`}`, `Call-ID: ${req.callId}`,
      `CSeq: ${values(req.raw, 'cseq')[0]}`, `Contact: <${this.contact}>`])
  }
}

async function wsPhone(tt: Tap.Test, user: string): Promise<WsPhone> {
  const ws = await WsClient.connect(WS, false)
  tt.teardown(() => ws.close())
  const p = new WsPhone(ws, user)
  await p.register()
  return p
}

/** The UDP phone calls a WS UA: INVITE, 200 from the browser, ACK. Returns the phone's dialog. */
async function callWs(w: WsPhone, callId: string): Promise<PeerDialog> {
  const inv = phone.sendRequest('INVITE', `sip:${w.user}@example.com`, { callId, route: EDGE_ROUTE })
  const got = await w.next(m => startLine(m).startsWith('INVITE '), 'INVITE')
  w.answer(got, 200, 'OK')
  const ok = await phone.next(m => m.status === 200 && m.cseq.method === 'INVITE' && m.get('call-id') === callId, '200 for the INVITE')
  const d = PeerDialog.asUac(phone, inv, ok)
  d.send('ACK', { cseq: 1 })
  return d
}

t.test('a UDP phone calls a WebSocket UA: ACK and BYE reach it over its connection, its 200 for the BYE reaches the phone', async t => {
  const w = await wsPhone(t, 'wsb')
  const before = await opened()
  const d = await callWs(w, 'ws-callee-1')
  const ack = await w.next(m => startLine(m).startsWith('ACK '), 'ACK')
  t.match(startLine(ack), new RegExp(`^ACK sip:wsb@${w.host};transport=ws SIP/2\\.0`), 'ACK over the WebSocket, to the Contact')
  d.send('BYE')
  const bye = await w.next(m => startLine(m).startsWith('BYE '), 'BYE')
  t.pass('BYE over the WebSocket')
  w.answer(bye, 200, 'OK')
  const ok = await phone.next(phone.response(200, 'BYE'), '200 for the BYE')
  t.equal(ok.get('call-id'), 'ws-callee-1', "the browser's 200 for the BYE reached the phone")
  t.equal(await opened(), before, 'no connection opened')
})

t.test('a WebSocket UA calls the UDP phone; the phone hangs up: the BYE goes over the WebSocket', async t => {
  const w = await wsPhone(t, 'wsa')
  const before = await opened()
  const callId = 'ws-caller-1'
  w.send([`INVITE sip:phone@example.com SIP/2.0`, w.via(), 'Max-Forwards: 70', `From: <sip:wsa@example.com>;tag=${w.tag}`, 'To: <sip:phone@example.com>',
    `Call-ID: ${callId}`, 'CSeq: 1 INVITE', `Contact: <${w.contact}>`])
  const inv = await phone.next(phone.request('INVITE'), 'INVITE from the WS UA')
  phone.respond(inv, 200, 'OK', { toTag: 'ph1', contact: true, rr: true })
  const ok = await w.next(m => m.status === 200 && /CSeq: 1 INVITE/.test(m.raw), '200 for the INVITE')
  const routes = values(ok.raw, 'record-route').reverse()
  w.send([`ACK ${/<([^>]+)>/.exec(values(ok.raw, 'contact')[0]!)![1]} SIP/2.0`, w.via(), 'Max-Forwards: 70', ...routes.map(r => `Route: ${r}`),
    `From: <sip:wsa@example.com>;tag=${w.tag}`, `To: ${values(ok.raw, 'to')[0]}`, `Call-ID: ${callId}`, 'CSeq: 1 ACK'])
  await phone.next(phone.request('ACK'), 'ACK')
  const d = PeerDialog.asUas(phone, inv, 'ph1')
  d.send('BYE')
  const bye = await w.next(m => startLine(m).startsWith('BYE '), 'BYE from the phone')
  t.match(startLine(bye), new RegExp(`^BYE sip:wsa@${w.host};transport=ws SIP/2\\.0`), 'BYE over the WebSocket')
  w.answer(bye, 200, 'OK')
  await phone.next(phone.response(200, 'BYE'), '200 for the BYE')
  t.equal(await opened(), before, 'no connection opened')
})

t.test('a TCP caller: the callee\'s BYE goes over the connection the INVITE came on, none is opened to its Contact', async t => {
  // The caller listens on its Contact port: a new connection there would be accepted (and the BYE
  // would come over it) and counted.
  const caller = await new SipPeer({ name: 'tcpcaller', address: '127.0.0.1', port: 25311, transport: 'tcp' }).start()
  t.teardown(() => caller.close())
  const before = await opened()
  const inv = caller.sendRequest('INVITE', 'sip:phone@example.com', { callId: 'tcp-caller-1', route: [`<sip:127.0.0.1:${SIP};transport=tcp;lr>`] })
  const got = await phone.next(phone.request('INVITE'), 'INVITE from the TCP caller')
  phone.respond(got, 200, 'OK', { toTag: 'ph2', contact: true, rr: true })
  const ok = await caller.next(caller.response(200, 'INVITE'), '200 for the INVITE')
  const ours = ok.conn
  PeerDialog.asUac(caller, inv, ok).send('ACK', { cseq: 1 })
  await phone.next(phone.request('ACK'), 'ACK')
  PeerDialog.asUas(phone, got, 'ph2').send('BYE')
  const bye = await caller.next(caller.request('BYE'), 'BYE from the callee')
  t.ok(bye.conn !== null && bye.conn === ours, 'the BYE came over the connection the caller opened')
  caller.respond(bye, 200, 'OK')
  await phone.next(phone.response(200, 'BYE'), '200 for the BYE')
  t.equal(await opened(), before, 'connection_events{opened} did not move')
})

t.test('the WebSocket UA is gone: an in-dialog request towards it gets 480 at once, not a timeout', async t => {
  const w = await wsPhone(t, 'wsgone')
  const d = await callWs(w, 'ws-gone-1')
  await w.next(m => startLine(m).startsWith('ACK '), 'ACK')
  const wsBefore = await metric('sipedge_connections', { transport: 'ws' })
  w.ws.close()
  // bounded wait until sipedge has seen the connection close
  for (let i = 0; i < 100 && (await metric('sipedge_connections', { transport: 'ws' })) >= wsBefore; i++) await new Promise(r => setTimeout(r, 50))
  const before = await opened()
  d.send('BYE')
  // Timer F would answer 408 after 32 s: a 5 s bound proves the answer did not wait for it
  const r = await phone.next(m => m.status >= 200 && m.cseq.method === 'BYE', 'final answer to the BYE', 5_000)
  t.equal(r.status, 480, `480 Temporarily Unavailable: ${r.start}`)
  t.equal(await opened(), before, 'no connection opened towards the browser')
})
