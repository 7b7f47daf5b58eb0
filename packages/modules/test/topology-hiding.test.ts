// Topology hiding on real message bytes (injected send and clock): the sealed edge URI, masked
// Call-IDs that shard like the original, and whole dialogs through the core where each side must
// find nothing of the other (addresses, ports, host names, branches, Call-ID) in what it gets.
import t from 'tap'
import { parseConfig, type FrozenConfig } from '@sipedge/config'
import { callIdHashOf } from '@sipedge/sip'
import type { Destination, Proxy, Source } from '@sipedge/proxy'
import { CallIdMask, EdgeClaim, SealKeys, openClaim, parseToken, sealClaim, edgeUri, type TopologyModule } from '../dist/index.js'
import { proxyWith } from './fixtures/proxy.js'

process.env['SIPEDGE_TEST_HOOKS'] = '1' // dialog-admin clear

const SECRET = 'topology-unit-test-secret'
function yaml(top: string, routeExtra = ''): FrozenConfig {
  return parseConfig(`
workers: 1
listen: [udp:127.0.0.10:5060, tcp:127.0.0.11:5070]
domains: [example.com]
timers: { t1: 100ms, t2: 1s, t4: 1s }
dialog: { secret: "${SECRET}", mirror: false }
${top}
dispatcher:
  sets:
    apps: { probe: false, destinations: ["sip:127.0.0.31:5080;transport=tcp"] }
routes:
  - { name: plain, match: { domain: plain.example.com }, action: { dispatch: apps }, topology_hiding: false }
  - { name: apps, match: {}, action: { dispatch: apps }${routeExtra} }
`) as FrozenConfig
}

const UA: Source = { transport: 'udp', address: '127.0.0.21', port: 5062, socketId: 0, recvTime: 0 }
const APP: Source = { transport: 'tcp', address: '127.0.0.31', port: 40001, socketId: 1, connId: 9, recvTime: 0 }
/** What the application side must never see, and what the UA side must never see. */
const UA_SECRETS = ['127.0.0.21', '5062', 'alice-pc.lan', 'z9hG4bK-ua']
const APP_SECRETS = ['127.0.0.31', '5080', '40001', 'app1.internal', 'z9hG4bK-app', '127.0.0.11', '5070']

interface Sent { dest: Destination; text: string }
async function harness(t: Tap.Test, config: FrozenConfig): Promise<{ p: Proxy; topo: TopologyModule; sent: Sent[] }> {
  const sent: Sent[] = []
  const p = await proxyWith({
    config, workerIndex: 0, workers: 1, manualTimers: true, now: () => 1_700_000_000_000,
    send: (dest, data) => sent.push({ dest, text: Buffer.concat(Array.isArray(data) ? data : [data]).toString() }),
    log: { debug() {}, info() {}, warn() {}, error() {} },
  })
  t.teardown(() => p.close(0))
  return { p, topo: p.module<TopologyModule>('topology_hiding')!, sent }
}
declare namespace Tap { type Test = typeof t }

const headOf = (m: string): string => m.slice(0, m.indexOf('\r\n\r\n'))
const values = (m: string, name: string): string[] =>
  headOf(m).split('\r\n').slice(1).filter(l => l.toLowerCase().startsWith(name.toLowerCase() + ':')).map(l => l.slice(l.indexOf(':') + 1).trim())
const value = (m: string, name: string): string => values(m, name)[0] ?? ''
const status = (m: string): number => Number(/^SIP\/2\.0 (\d{3})/.exec(m)?.[1] ?? 0)
const uriIn = (v: string): string => /<([^>]+)>/.exec(v)?.[1] ?? v

function clean(t: Tap.Test, m: string, secrets: readonly string[], what: string): void {
  const h = headOf(m)
  const found = secrets.filter(s => h.includes(s))
  t.same(found, [], `${what}: nothing of the other side`, { message: h })
}

let seq = 0
function msg(lines: Array<string | null>): Buffer {
  return Buffer.from([...lines.filter((l): l is string => l !== null), 'Content-Length: 0', '', ''].join('\r\n'))
}
function uaRequest(method: string, uri: string, o: { callId: string; toTag?: string; route?: string; cseq?: number; contact?: boolean } ): Buffer {
  return msg([
    `${method} ${uri} SIP/2.0`,
    `Via: SIP/2.0/UDP 127.0.0.21:5062;branch=z9hG4bK-ua${++seq};rport`,
    'Max-Forwards: 70',
    o.route !== undefined ? `Route: ${o.route}` : null,
    'From: "Alice" <sip:alice@example.com>;tag=a1',
    `To: <sip:app@example.com>${o.toTag !== undefined ? ';tag=' + o.toTag : ''}`,
    `Call-ID: ${o.callId}`,
    `CSeq: ${o.cseq ?? 1} ${method}`,
    o.contact === false ? null : 'Contact: <sip:alice@alice-pc.lan:5062>;+sip.instance="<urn:uuid:1>"',
  ])
}
function appRequest(method: string, uri: string, o: { callId: string; route?: string; cseq?: number; contact?: string }): Buffer {
  return msg([
    `${method} ${uri} SIP/2.0`,
    `Via: SIP/2.0/TCP 127.0.0.31:5080;branch=z9hG4bK-app${++seq}`,
    'Max-Forwards: 70',
    o.route !== undefined ? `Route: ${o.route}` : null,
    'From: <sip:app@example.com>;tag=b1',
    'To: "Alice" <sip:alice@example.com>;tag=a1',
    `Call-ID: ${o.callId}`,
    `CSeq: ${o.cseq ?? 1} ${method}`,
    o.contact !== undefined ? `Contact: <${o.contact}>` : null,
  ])
}
/** A response to `req` as a UAS (or, with `rr`, after a proxy of its own side record-routed). */
function answer(req: string, code: number, o: { toTag?: string; contact?: string; rr?: string[] } = {}): Buffer {
  const to = value(req, 'To')
  return msg([
    `SIP/2.0 ${code} X`,
    ...values(req, 'Via').map(v => 'Via: ' + v),
    ...(o.rr ?? []).map(r => 'Record-Route: ' + r),
    ...values(req, 'Record-Route').map(v => 'Record-Route: ' + v),
    'From: ' + value(req, 'From'),
    'To: ' + (to.includes('tag=') || o.toTag === undefined ? to : to + ';tag=' + o.toTag),
    'Call-ID: ' + value(req, 'Call-ID'),
    'CSeq: ' + value(req, 'CSeq'),
    o.contact !== undefined ? `Contact: <${o.contact}>` : null,
  ])
}

t.test('edge URI tokens: sealed, bound to their dialog, opened only with our keys', async t => {
  const keys = new SealKeys(SECRET)
  const claim = new EdgeClaim('sip:alice@127.0.200.5:5062', ['<sip:192.0.2.9;lr>'], { transport: 'udp', address: '127.0.0.21', port: 5062, socketId: 0 }, [], false, false)
  const token = sealClaim(keys.current, 'call-1@x', claim)
  t.equal(sealClaim(keys.current, 'call-1@x', claim), token, 'deterministic: every message of a dialog shows the same URI')
  t.notMatch(Buffer.from(token, 'base64url').toString('latin1'), /127\.0|alice/, 'nothing readable inside')
  const opened = openClaim(keys.keys, parseToken(token)!, 'call-1@x')
  t.same(opened?.claim, claim)
  t.equal(openClaim(keys.keys, parseToken(token)!, 'call-2@x'), null, 'another dialog: does not open')
  const flip = token.slice(0, 20) + (token[20] === 'A' ? 'B' : 'A') + token.slice(21)
  t.equal(parseToken(flip) === null ? null : openClaim(keys.keys, parseToken(flip)!, 'call-1@x'), null, 'one character changed: does not open')
  t.equal(openClaim(new SealKeys('another-secret-0123456789').keys, parseToken(token)!, 'call-1@x'), null, 'another key: does not open')
  keys.rekey('a-new-secret-after-reload-0001')
  t.ok(openClaim(keys.keys, parseToken(token)!, 'call-1@x'), 'the previous key still opens after one reload')
  keys.rekey('a-new-secret-after-reload-0002')
  t.equal(openClaim(keys.keys, parseToken(token)!, 'call-1@x'), null, 'a key no longer configured opens nothing')
  const uri = edgeUri({ socketId: 0, transport: 'udp', host: '127.0.0.10', port: 5060, viaPrefix: '', recordRoute: '' }, token)
  t.ok(uri.length < 160, `a typical edge URI is short (${uri.length} bytes)`)
})

t.test('masked Call-IDs land on the worker of the original, for any usual worker count', async t => {
  const keys = new SealKeys(SECRET)
  for (const workers of [2, 16]) {
    const m = new CallIdMask(workers)
    for (let i = 0; i < 200; i++) {
      const id = `${i.toString(36)}-${(i * 7919).toString(16)}@host-${i % 5}.example`
      const masked = m.mask(keys.current, id)
      t.notOk(masked.includes('host-') || masked.includes('@'), 'nothing of the original shows')
      for (const n of [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, workers]) {
        if (callIdHashOf(masked) % n !== callIdHashOf(id) % n) t.fail(`${id}: worker differs for ${n} workers`)
      }
      t.equal(m.unmask(keys.keys, masked)?.callId, id)
      t.equal(m.unmask(keys.keys, masked.slice(0, 10) + (masked[10] === 'x' ? 'y' : 'x') + masked.slice(11)), null)
    }
  }
})

/** One INVITE dialog through the core: returns what each side last received, for the flow tests. */
async function inviteDialog(t: Tap.Test, config: FrozenConfig, callId: string): Promise<{ p: Proxy; topo: TopologyModule; sent: Sent[]; fwd: string; ok: string; appCallId: string }> {
  const { p, topo, sent } = await harness(t, config)
  p.receive(uaRequest('INVITE', 'sip:app@example.com', { callId }), UA)
  t.equal(status(sent[0]!.text), 100, '100 Trying to the UA')
  const fwd = sent[1]!.text
  t.same(sent[1]!.dest, { transport: 'tcp', address: '127.0.0.31', port: 5080, socketId: 1 })
  clean(t, fwd, UA_SECRETS, 'INVITE at the app')
  t.equal(values(fwd, 'Via').length, 1, 'one Via: ours')
  t.match(value(fwd, 'Via'), /^SIP\/2\.0\/TCP 127\.0\.0\.11:5070;/)
  t.same(values(fwd, 'Record-Route').length, 1, 'one Record-Route entry, facing the app (no RFC 5658 pair)')
  t.match(value(fwd, 'Record-Route'), /^<sip:127\.0\.0\.11:5070;transport=tcp;lr;sed=/)
  t.match(value(fwd, 'Contact'), /^<sip:th\.[A-Za-z0-9_-]+@127\.0\.0\.11:5070;transport=tcp>;\+sip\.instance=/)
  const appCallId = value(fwd, 'Call-ID')
  sent.length = 0
  p.receive(answer(fwd, 180, { toTag: 'b1', contact: 'sip:app@app1.internal:5080;transport=tcp' }), APP)
  p.receive(answer(fwd, 200, { toTag: 'b1', contact: 'sip:app@app1.internal:5080;transport=tcp', rr: ['<sip:127.0.0.41:5090;lr>'] }), APP)
  t.same(sent.map(s => status(s.text)), [180, 200])
  for (const s of sent) {
    clean(t, s.text, APP_SECRETS, `${status(s.text)} at the UA`)
    t.same(s.dest, UA)
    t.match(value(s.text, 'Via'), /^SIP\/2\.0\/UDP 127\.0\.0\.21:5062;branch=z9hG4bK-ua\d+;received=127\.0\.0\.21;rport=5062$/, 'the UA\'s own Via back')
    t.equal(value(s.text, 'Call-ID'), callId, 'the UA\'s own Call-ID')
  }
  const ok = sent[1]!.text
  t.match(value(ok, 'Record-Route'), /^<sip:127\.0\.0\.10:5060;lr;th=[A-Za-z0-9_-]+>$/,
    'Record-Route: the edge facing the UA only, the signed dialog parameter (it names the destination) sealed')
  return { p, topo, sent, fwd, ok, appCallId }
}

t.test('INVITE dialog: each side sees the edge as the only hop; in-dialog requests both ways', async t => {
  const { p, topo, sent, fwd, ok, appCallId } = await inviteDialog(t, yaml('topology_hiding: true'), 'ua-call-1@alice')
  t.equal(appCallId, 'ua-call-1@alice', 'Call-ID kept without call_id')
  const eB = uriIn(value(ok, 'Contact'))
  const eA = uriIn(value(fwd, 'Contact'))
  const routeA = value(ok, 'Record-Route')
  const routeB = value(fwd, 'Record-Route')
  // ACK (stateless) from the UA to the edge URI: the app gets its own Contact as Request-URI.
  sent.length = 0
  p.receive(uaRequest('ACK', eB, { callId: 'ua-call-1@alice', toTag: 'b1', route: routeA, contact: false }), UA)
  t.equal(sent.length, 1)
  t.match(sent[0]!.text, /^ACK sip:app@app1\.internal:5080;transport=tcp SIP\/2\.0\r\n/)
  t.equal(value(sent[0]!.text, 'Route'), '<sip:127.0.0.41:5090;lr>', 'the app side\'s own proxy stays in the Route set')
  t.equal(values(sent[0]!.text, 'Via').length, 1)
  clean(t, sent[0]!.text, UA_SECRETS, 'ACK at the app')
  // re-INVITE from the app with a new Contact: the UA gets its own Contact back as Request-URI.
  sent.length = 0
  p.receive(appRequest('INVITE', eA, { callId: appCallId, route: routeB, cseq: 2, contact: 'sip:app@app2.internal:5081;transport=tcp' }), APP)
  const reinv = sent.find(s => s.text.startsWith('INVITE'))!.text
  t.match(reinv, /^INVITE sip:alice@alice-pc\.lan:5062 SIP\/2\.0/)
  t.same(sent.find(s => s.text.startsWith('INVITE'))!.dest, { transport: 'udp', address: '127.0.0.21', port: 5062, socketId: 0 },
    'sent where the UA sent from (its Contact host is not its address: NAT)')
  clean(t, reinv, [...APP_SECRETS, 'app2.internal', '5081'], 're-INVITE at the UA')
  t.equal(value(reinv, 'Route'), '', 'no Route: the UA side had no proxy')
  const eB2 = uriIn(value(reinv, 'Contact'))
  t.not(eB2, eB, 'target refresh: a new edge URI for the new Contact')
  sent.length = 0
  p.receive(answer(reinv, 200, { contact: 'sip:alice@alice-pc.lan:5062' }), UA)
  const ok2 = sent.find(s => status(s.text) === 200)!.text
  clean(t, ok2, UA_SECRETS, '200 to the re-INVITE at the app')
  t.match(value(ok2, 'Via'), /^SIP\/2\.0\/TCP 127\.0\.0\.31:5080;branch=z9hG4bK-app/, 'the app\'s own Via back')
  // BYE from the UA to the refreshed target.
  sent.length = 0
  p.receive(uaRequest('BYE', eB2, { callId: 'ua-call-1@alice', toTag: 'b1', route: routeA, cseq: 3, contact: false }), UA)
  const bye = sent.find(s => s.text.startsWith('BYE'))!.text
  t.match(bye, /^BYE sip:app@app2\.internal:5081;transport=tcp SIP\/2\.0/)
  t.match(value(bye, 'Route'), /127\.0\.0\.41:5090/, 'the app side proxy from the dialog\'s first edge URI')
  clean(t, bye, UA_SECRETS, 'BYE at the app')
  sent.length = 0
  p.receive(answer(bye, 200), APP)
  t.same(sent.map(s => status(s.text)), [200])
  clean(t, sent[0]!.text, APP_SECRETS, '200 to BYE at the UA')
  t.equal(topo.counters.forged, 0)
  t.ok(topo.counters.restored >= 3)
})

t.test('call_id: the app never sees the UA\'s Call-ID, the UA never sees the masked one', async t => {
  const callId = 'ua-call-2@127.0.0.21'
  const { p, sent, fwd, ok, appCallId } = await inviteDialog(t, yaml('topology_hiding: { call_id: true }'), callId)
  t.not(appCallId, callId)
  t.notMatch(appCallId, /ua-call|127\.0/)
  sent.length = 0
  p.receive(uaRequest('ACK', uriIn(value(ok, 'Contact')), { callId, toTag: 'b1', route: value(ok, 'Record-Route'), contact: false }), UA)
  t.equal(value(sent[0]!.text, 'Call-ID'), appCallId, 'the ACK carries the masked Call-ID')
  sent.length = 0
  p.receive(appRequest('BYE', uriIn(value(fwd, 'Contact')), { callId: appCallId, route: value(fwd, 'Record-Route'), cseq: 2 }), APP)
  const bye = sent.find(s => s.text.startsWith('BYE'))!.text
  t.equal(value(bye, 'Call-ID'), callId, 'the BYE from the app reaches the UA with its own Call-ID')
  sent.length = 0
  p.receive(answer(bye, 200), UA)
  t.equal(value(sent[0]!.text, 'Call-ID'), appCallId, 'and the 200 goes back to the app with the masked one')
})

t.test('a forged or altered edge URI is refused (403, counted); an ACK with one is dropped', async t => {
  const { p, topo, sent, ok } = await inviteDialog(t, yaml('topology_hiding: true'), 'ua-call-3@alice')
  const eB = uriIn(value(ok, 'Contact'))
  const user = /sip:th\.([^@]+)@/.exec(eB)![1]!
  const altered = eB.replace(user, user.slice(0, 30) + (user[30] === 'Q' ? 'R' : 'Q') + user.slice(31))
  for (const [what, uri, callId] of [
    ['altered', altered, 'ua-call-3@alice'],
    ['garbage', 'sip:th.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA@127.0.0.10:5060', 'ua-call-3@alice'],
    ['another dialog', eB, 'another-call@alice'],
  ] as const) {
    sent.length = 0
    p.receive(uaRequest('BYE', uri, { callId, toTag: 'b1', route: value(ok, 'Record-Route'), cseq: 5, contact: false }), UA)
    t.same(sent.map(s => status(s.text)), [403], `${what}: 403`)
    t.match(sent[0]!.text, /^SIP\/2\.0 403 Invalid Edge URI/)
  }
  sent.length = 0
  p.receive(uaRequest('ACK', altered, { callId: 'ua-call-3@alice', toTag: 'b1', route: value(ok, 'Record-Route'), contact: false }), UA)
  t.equal(sent.length, 0, 'the ACK is dropped')
  const rr = value(ok, 'Record-Route')
  const th = /;th=([^>;]+)/.exec(rr)![1]!
  sent.length = 0
  p.receive(uaRequest('BYE', eB, { callId: 'ua-call-3@alice', toTag: 'b1', route: rr.replace(th, th.slice(0, 10) + (th[10] === 'Q' ? 'R' : 'Q') + th.slice(11)), cseq: 6, contact: false }), UA)
  t.same(sent.map(s => status(s.text)), [403], 'an altered Record-Route parameter of ours: 403')
  t.equal(topo.counters.forged, 5)
})

t.test('per route: `topology_hiding: false` on a rule, or on for one rule with the global key off', async t => {
  const off = await harness(t, yaml('topology_hiding: true'))
  off.p.receive(uaRequest('INVITE', 'sip:app@plain.example.com', { callId: 'plain-1@x' }), UA)
  const fwd = off.sent.find(s => s.text.startsWith('INVITE'))!.text
  t.equal(values(fwd, 'Via').length, 2, 'the rule says false: both Vias')
  t.match(value(fwd, 'Contact'), /alice-pc\.lan/)
  const on = await harness(t, yaml('topology_hiding: false', ', topology_hiding: true'))
  on.p.receive(uaRequest('INVITE', 'sip:app@example.com', { callId: 'on-1@x' }), UA)
  const fwd2 = on.sent.find(s => s.text.startsWith('INVITE'))!.text
  t.equal(values(fwd2, 'Via').length, 1, 'the rule says true: hidden')
  clean(t, fwd2, UA_SECRETS, 'INVITE at the app')
})

t.test('dialog table lost: in-dialog requests still verified and routed by the edge URI and the sealed parameter', async t => {
  const { p, sent, ok } = await inviteDialog(t, yaml('topology_hiding: true'), 'ua-call-4@alice')
  p.onControl({ type: 'dialog-admin', action: 'clear' })
  sent.length = 0
  p.receive(uaRequest('BYE', uriIn(value(ok, 'Contact')), { callId: 'ua-call-4@alice', toTag: 'b1', route: value(ok, 'Record-Route'), cseq: 2, contact: false }), UA)
  const bye = sent.find(s => s.text.startsWith('BYE'))
  t.ok(bye, 'the BYE is forwarded, not refused by the dialog guard')
  t.same(bye?.dest, { transport: 'tcp', address: '127.0.0.31', port: 5080, socketId: 1 }, 'to the destination that took the call')
})

t.test('without Record-Route the edge URI alone routes in-dialog requests', async t => {
  const { p, sent } = await harness(t, yaml('topology_hiding: true\nproxy: { record_route: false }'))
  p.receive(uaRequest('INVITE', 'sip:app@example.com', { callId: 'norr-1@x' }), UA)
  const fwd = sent.find(s => s.text.startsWith('INVITE'))!.text
  t.equal(value(fwd, 'Record-Route'), '')
  sent.length = 0
  p.receive(answer(fwd, 200, { toTag: 'b1', contact: 'sip:app@app1.internal:5080;transport=tcp' }), APP)
  const ok = sent[0]!.text
  sent.length = 0
  p.receive(uaRequest('ACK', uriIn(value(ok, 'Contact')), { callId: 'norr-1@x', toTag: 'b1', contact: false }), UA)
  t.match(sent[0]?.text ?? '', /^ACK sip:app@app1\.internal:5080;transport=tcp /, 'ACK to the app')
  sent.length = 0
  p.receive(appRequest('BYE', uriIn(value(fwd, 'Contact')), { callId: 'norr-1@x' }), APP)
  const bye = sent.find(s => s.text.startsWith('BYE'))!
  t.match(bye.text, /^BYE sip:alice@alice-pc\.lan:5062 /)
  t.same(bye.dest, { transport: 'udp', address: '127.0.0.21', port: 5062, socketId: 0 })
})
