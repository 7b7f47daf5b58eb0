// Robustness regressions over real sockets against `sipedge` as a child process (ports
// 25330-25359), each named after the defect it guards against:
// - responses-missing-mandatory-headers: a response to a forwarded request that lacks To, From or
//   CSeq, or whose CSeq does not parse, is dropped and counted (messages_dropped{reason="sanity"});
//   it never matches a client transaction, so the good final response that follows still goes
//   through and no transaction is left open;
// - forking-leaves-no-transaction: an INVITE tried on three bindings in turn (503, silent, 200 or
//   CANCEL) leaves no server or client transaction; the caller who cancelled gets 487;
// - responses-without-a-via-below-ours: Vias are forwarded in one block; a final with only our Via
//   is not relayed (RFC 3261 §16.7 step 3), the caller gets 502 / 487 from the proxy and can ACK it;
// - list-header-amplification: a Route or Contact line of thousands of values gets 400 naming the
//   header after a bounded scan;
// - aor-too-long: an AOR over 1024 bytes gets 400 on REGISTER and 414 on a call (it was 503/500).
import t from 'tap'
import { randomBytes } from 'node:crypto'
import { tempDir, UdpClient, uniqueCallId, parseRequestCallId, waitUntil } from '@sipedge/tests'
import { SipPeer, type PeerMsg } from '../dist/sip-peer.js'
import { startSipedge, http, sampleValue } from '../dist/ops.js'
import { parseExposition } from '../../metrics/test/fixtures/expo-parser.js'

const SIP = 25330
const HTTP = 25331
const APP = 25340
const TOKEN = 'robustness-admin-token-0123456789'
const tmp = tempDir('sipedge-robustness-')
t.teardown(tmp.cleanup)

const edge = await startSipedge(tmp.dir, 'edge.yaml', `
workers: 2
listen: [udp:127.0.0.1:${SIP}, tcp:127.0.0.1:${SIP}]
domains: [example.com]
# Timer L/M (64 x T1, RFC 6026) keep the transactions of a 2xx for 3.2 s
timers: { t1: 50ms }
store: "lmdb:${tmp.dir}/store"
metrics: { listen: 127.0.0.1:${HTTP} }
admin: { token: ${TOKEN} }
routes:
  - { match: { domain: apps.test }, action: { forward: "sip:127.0.0.1:${APP};transport=tcp" } }
  - { match: { method: REGISTER }, action: register }
  - { match: { domain: example.com }, action: lookup }
`)
t.teardown(() => edge.stop())

async function metrics(): Promise<(family: string, labels?: Record<string, string>) => number> {
  const f = parseExposition((await http('GET', `http://127.0.0.1:${HTTP}/metrics`)).text)
  return (family, labels = {}) => sampleValue(f, family, family, labels)
}
/** Polls the metrics (gauges and drop counters are published once a second) until `ok`, bounded. */
async function metricsUntil(ok: (m: Awaited<ReturnType<typeof metrics>>) => boolean, ms = 6_000): Promise<Awaited<ReturnType<typeof metrics>>> {
  const deadline = Date.now() + ms
  let m = await metrics()
  while (!ok(m) && Date.now() < deadline) { await new Promise(r => setTimeout(r, 200)); m = await metrics() }
  return m
}
const KINDS = ['server_invite', 'server_non_invite', 'client_invite', 'client_non_invite']
const activeTx = (m: Awaited<ReturnType<typeof metrics>>): number => KINDS.reduce((n, kind) => n + m('sipedge_transactions_active', { kind }), 0)

// Stream peers: every transaction ends as soon as it has its final answer (no Timer D/J/K wait).
const app = await new SipPeer({ name: 'app', address: '127.0.0.1', port: APP, transport: 'tcp' }).start()
t.teardown(() => app.close())
const caller = await new SipPeer({ name: 'caller', address: '127.0.0.1', port: 25341, transport: 'tcp' }).start()
t.teardown(() => caller.close())
const EDGE = { host: '127.0.0.1', port: SIP, transport: 'tcp' as const }

/** `req` answered by the app with `status`, one header dropped or replaced. */
function answerBroken(req: PeerMsg, status: number, reason: string, breakIt: 'to' | 'from' | 'cseq' | 'badcseq'): void {
  const lines = [
    `SIP/2.0 ${status} ${reason}`,
    ...req.all('via').map(v => 'Via: ' + v),
    ...(breakIt === 'from' ? [] : ['From: ' + req.get('from')]),
    ...(breakIt === 'to' ? [] : [`To: ${req.get('to')};tag=app-broken`]),
    'Call-ID: ' + req.get('call-id'),
    ...(breakIt === 'cseq' ? [] : breakIt === 'badcseq' ? ['CSeq: one INVITE'] : ['CSeq: ' + req.get('cseq')]),
    `Contact: <${app.contact}>`,
    'Content-Length: 0',
  ]
  app.send(lines.join('\r\n') + '\r\n\r\n', req.from.address, req.from.port, 'tcp', req.conn)
}

for (const [breakIt, final] of [['to', 200], ['from', 486], ['cseq', 486], ['badcseq', 200]] as const) {
  t.test(`responses-missing-mandatory-headers: a ${final} with ${breakIt === 'badcseq' ? 'an unparseable CSeq' : `no ${breakIt === 'cseq' ? 'CSeq' : breakIt === 'to' ? 'To' : 'From'}`} is dropped; the good one goes through, no transaction stays open`, async t => {
    const dropped0 = (await metrics())('sipedge_messages_dropped_total', { reason: 'sanity' })
    const callId = `broken-${breakIt}-${Date.now()}`
    const branch = `z9hG4bK-caller-${breakIt}-${Date.now()}`
    caller.sendRequest('INVITE', 'sip:conf@apps.test', { callId, fromTag: 'c1', branch, dest: EDGE })
    const inv = await app.next(m => m.method === 'INVITE' && m.get('call-id') === callId, 'INVITE at the app')
    app.respond(inv, 180, 'Ringing', { toTag: 'app1' })
    answerBroken(inv, final, final === 200 ? 'OK' : 'Busy Here', breakIt)
    const m1 = await metricsUntil(m => m('sipedge_messages_dropped_total', { reason: 'sanity' }) > dropped0)
    t.equal(m1('sipedge_messages_dropped_total', { reason: 'sanity' }) - dropped0, 1, 'counted in messages_dropped{reason="sanity"}')
    await caller.next(m => m.status === 180 && m.get('call-id') === callId, '180 at the caller')
    t.ok(caller.none(m => m.status >= 200 && m.get('call-id') === callId), 'the broken final response was not relayed')
    // the good final response: the client transaction was not advanced by the broken one
    app.respond(inv, final, final === 200 ? 'OK' : 'Busy Here', { toTag: 'app1', contact: final === 200, rr: true })
    const got = await caller.next(m => m.status === final && m.get('call-id') === callId, `${final} at the caller`)
    t.match(got.get('to'), /tag=app1/, 'the good final response reached the caller')
    if (final === 200) {
      // the ACK for the 2xx: end to end, along the Record-Route (RFC 3261 §13.2.2.4)
      const rr = got.all('record-route').reverse()
      caller.sendRequest('ACK', app.contact, { callId, fromTag: 'c1', toTag: 'app1', cseq: 1, route: rr, contact: false, dest: EDGE })
      await app.next(m => m.method === 'ACK' && m.get('call-id') === callId, 'ACK at the app')
    } else {
      // the ACK for a non-2xx final: hop by hop, same branch as the INVITE (RFC 3261 §17.1.1.3)
      caller.sendRequest('ACK', 'sip:conf@apps.test', { callId, fromTag: 'c1', toTag: 'app1', cseq: 1, branch, contact: false, dest: EDGE })
      await app.next(m => m.method === 'ACK' && m.get('call-id') === callId, 'the proxy\'s ACK for the non-2xx at the app')
    }
    // every transaction ends: at once over TCP, after Timer L/M for a 2xx (3.2 s here)
    const m2 = await metricsUntil(m => activeTx(m) === 0, 15_000)
    t.same(KINDS.map(kind => m2('sipedge_transactions_active', { kind })), [0, 0, 0, 0], 'no server or client transaction left open')
  })
}

// responses-without-a-via-below-ours: the forwarded INVITE keeps its Vias in one block, our
// Record-Route above them (it sat between our Via and the caller's: sipp's uas-cancel, which copies
// "the Via lines" as a block, then answered 487 with our Via only). A final that comes back with our
// Via only is not relayed (RFC 3261 §16.7 step 3: "meant for this element"): the caller gets 502 (or
// 487 after its CANCEL) from the proxy with its own Via, its ACK ends the server transaction (the
// relayed Via-less 487 could not be ACKed and was resent until Timer H), counted as sanity.
const ucaller = await new SipPeer({ name: 'ucaller', address: '127.0.0.1', port: 25348, transport: 'udp' }).start()
t.teardown(() => ucaller.close())
const EDGE_UDP = { host: '127.0.0.1', port: SIP, transport: 'udp' as const }

for (const end of ['486', 'CANCEL'] as const) {
  t.test(`responses-without-a-via-below-ours: Vias forwarded in one block; a ${end === '486' ? '486' : '487 after CANCEL'} with only our Via is answered by the proxy (${end === '486' ? '502' : '487'}), ACKed, not resent`, async t => {
    const dropped0 = (await metrics())('sipedge_messages_dropped_total', { reason: 'sanity' })
    const callId = `vialess-${end}-${Date.now()}`
    const branch = `z9hG4bK-vialess-${end}-${Date.now()}`
    ucaller.sendRequest('INVITE', 'sip:conf@apps.test', { callId, fromTag: 'v1', branch, dest: EDGE_UDP })
    const inv = await app.next(m => m.method === 'INVITE' && m.get('call-id') === callId, 'INVITE at the app')
    const names = inv.head.split('\r\n').slice(1).map(l => l.slice(0, l.indexOf(':')).toLowerCase())
    const vias = names.flatMap((n, i) => n === 'via' || n === 'v' ? [i] : [])
    t.equal(vias.length, 2, 'two Via lines: ours and the caller\'s')
    t.equal(vias[1]! - vias[0]!, 1, `the Via lines are adjacent (${names.join(', ')})`)
    t.ok(names.indexOf('record-route') >= 0 && names.indexOf('record-route') < vias[0]!, 'our Record-Route is above the Vias')
    const ourViaOnly = (req: typeof inv, status: number, reason: string): void => {
      app.send([`SIP/2.0 ${status} ${reason}`, 'Via: ' + req.all('via')[0]!, 'From: ' + req.get('from'), `To: ${req.get('to')};tag=app-v`,
        'Call-ID: ' + callId, 'CSeq: ' + req.get('cseq'), 'Content-Length: 0', '', ''].join('\r\n'), req.from.address, req.from.port, 'tcp', req.conn)
    }
    let final = 502
    if (end === '486') {
      ourViaOnly(inv, 486, 'Busy Here')
    } else {
      final = 487
      app.respond(inv, 180, 'Ringing', { toTag: 'app-v' })
      await ucaller.next(m => m.status === 180 && m.get('call-id') === callId, '180 at the caller')
      ucaller.send([`CANCEL sip:conf@apps.test SIP/2.0`, `Via: SIP/2.0/UDP 127.0.0.1:${ucaller.port};branch=${branch};rport`, 'Max-Forwards: 70',
        'From: <sip:ucaller@example.com>;tag=v1', 'To: <sip:conf@apps.test>', `Call-ID: ${callId}`, 'CSeq: 1 CANCEL', 'Content-Length: 0', '', ''].join('\r\n'),
      EDGE_UDP.host, EDGE_UDP.port, 'udp')
      await ucaller.next(m => m.status === 200 && m.cseq.method === 'CANCEL' && m.get('call-id') === callId, '200 for the CANCEL')
      const c = await app.next(m => m.method === 'CANCEL' && m.get('call-id') === callId, 'CANCEL at the app')
      app.respond(c, 200, 'OK')
      ourViaOnly(inv, 487, 'Request Terminated')
    }
    const got = await ucaller.next(m => m.status >= 200 && m.cseq.method === 'INVITE' && m.get('call-id') === callId, 'the final at the caller')
    t.equal(got.status, final, `the caller got ${final} (${got.start})`)
    t.match(got.get('via'), branch, 'with its own Via')
    ucaller.sendRequest('ACK', 'sip:conf@apps.test', { callId, fromTag: 'v1', toTag: /tag=([^;>\s]+)/.exec(got.get('to'))?.[1] ?? '', cseq: 1, branch, contact: false, dest: EDGE_UDP })
    const m1 = await metricsUntil(m => m('sipedge_messages_dropped_total', { reason: 'sanity' }) > dropped0)
    t.equal(m1('sipedge_messages_dropped_total', { reason: 'sanity' }) - dropped0, 1, 'counted in messages_dropped{reason="sanity"}')
    // T1 = 50 ms: an unACKed final would be resent at 100, 200, 400, 800 ms and on
    await new Promise(r => setTimeout(r, 1_500))
    const finals = ucaller.received.filter(m => m.status >= 200 && m.cseq.method === 'INVITE' && m.get('call-id') === callId)
    t.equal(finals.length, 1, 'the final was sent once: the ACK ended its retransmissions')
  })
}

// responses-without-a-via-below-ours, the other side: a downstream may send the Vias as one
// comma-separated line (RFC 3261 §7.3.1), even one longer than the parser's list cap; the Via
// below ours is then found in that line and the response is relayed, not taken for Via-less.
t.test('responses-without-a-via-below-ours: a final with all its Vias in one line (here over 256 of them) is relayed', async t => {
  const dropped0 = (await metrics())('sipedge_messages_dropped_total', { reason: 'sanity' })
  const callId = `vialine-${Date.now()}`
  const branch = `z9hG4bK-vialine-${Date.now()}`
  ucaller.sendRequest('INVITE', 'sip:conf@apps.test', { callId, fromTag: 'l1', branch, dest: EDGE_UDP })
  const inv = await app.next(m => m.method === 'INVITE' && m.get('call-id') === callId, 'INVITE at the app')
  const filler = Array.from({ length: 300 }, (_, i) => `SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-fill${i}`)
  app.send([`SIP/2.0 486 Busy Here`, 'Via: ' + [...inv.all('via'), ...filler].join(', '), 'From: ' + inv.get('from'), `To: ${inv.get('to')};tag=app-l`,
    'Call-ID: ' + callId, 'CSeq: ' + inv.get('cseq'), 'Content-Length: 0', '', ''].join('\r\n'), inv.from.address, inv.from.port, 'tcp', inv.conn)
  const got = await ucaller.next(m => m.status >= 200 && m.cseq.method === 'INVITE' && m.get('call-id') === callId, 'the final at the caller')
  t.equal(got.status, 486, `the caller got the app's 486 (${got.start})`)
  t.match(got.get('via'), branch, 'with its own Via first')
  ucaller.sendRequest('ACK', 'sip:conf@apps.test', { callId, fromTag: 'l1', toTag: 'app-l', cseq: 1, branch, contact: false, dest: EDGE_UDP })
  const m1 = await metrics()
  t.equal(m1('sipedge_messages_dropped_total', { reason: 'sanity' }), dropped0, 'not counted as a sanity drop')
})

// forking-leaves-no-transaction: one AOR with three bindings (q 1.0, 0.9, 0.8) over TCP; the lookup
// tries them in turn: the first answers 503, the second never answers (Timer B, 64 x T1 = 3.2 s),
// the third rings and answers 200 — or is cancelled. After the final answer and the ACK, every
// server and client transaction of the call is gone from the table.
const bindings = await Promise.all(['fork503', 'forksilent', 'forkok'].map((name, i) =>
  new SipPeer({ name, address: '127.0.0.1', port: 25342 + i, transport: 'tcp' }).start()))
t.teardown(() => { for (const b of bindings) b.close() })
const AOR = 'sip:multi@example.com'
for (const [i, b] of bindings.entries()) {
  b.sendRequest('REGISTER', 'sip:example.com', {
    from: AOR, to: AOR, contact: false, dest: EDGE, callId: `fork-reg-${i}-${Date.now()}`,
    headers: [`Contact: <${b.contact}>;q=${(1 - i / 10).toFixed(1)}`, 'Expires: 300'],
  })
  await b.next(b.response(200, 'REGISTER'), `${b.name} registered`)
}

for (const end of ['200', 'CANCEL'] as const) {
  t.test(`forking-leaves-no-transaction: three bindings tried in turn (503, no answer, ${end === '200' ? '200' : 'ringing, then CANCEL'}); no transaction left`, async t => {
    const [b503, silent, ok] = bindings as [SipPeer, SipPeer, SipPeer]
    const callId = `fork-${end}-${Date.now()}`
    const branch = `z9hG4bK-fork-${end}-${Date.now()}`
    const inv = caller.sendRequest('INVITE', AOR, { callId, fromTag: 'f1', branch, dest: EDGE })
    const i1 = await b503.next(m => m.method === 'INVITE' && m.get('call-id') === callId, 'INVITE at the first binding')
    b503.respond(i1, 503, 'Service Unavailable', { toTag: 'b1' })
    await silent.next(m => m.method === 'INVITE' && m.get('call-id') === callId, 'INVITE at the second binding')
    // it never answers: Timer B (3.2 s) moves the proxy on
    const i3 = await ok.next(m => m.method === 'INVITE' && m.get('call-id') === callId, 'INVITE at the third binding', 10_000)
    ok.respond(i3, 180, 'Ringing', { toTag: 'b3' })
    await caller.next(m => m.status === 180 && m.get('call-id') === callId, '180 at the caller')
    if (end === '200') {
      ok.respond(i3, 200, 'OK', { toTag: 'b3', contact: true, rr: true })
      const r = await caller.next(m => m.status === 200 && m.get('call-id') === callId, '200 at the caller')
      caller.sendRequest('ACK', ok.contact, { callId, fromTag: 'f1', toTag: 'b3', cseq: 1, route: r.all('record-route').reverse(), contact: false, dest: EDGE })
      await ok.next(m => m.method === 'ACK' && m.get('call-id') === callId, 'ACK at the third binding')
      t.pass('200 and ACK through')
    } else {
      const cancel = [`CANCEL ${AOR} SIP/2.0`, `Via: SIP/2.0/TCP 127.0.0.1:${caller.port};branch=${branch};rport`, 'Max-Forwards: 70',
        'From: <sip:caller@example.com>;tag=f1', `To: <${AOR}>`, `Call-ID: ${callId}`, 'CSeq: 1 CANCEL', 'Content-Length: 0', '', ''].join('\r\n')
      caller.send(cancel, EDGE.host, EDGE.port, 'tcp')
      const c = await ok.next(m => m.method === 'CANCEL' && m.get('call-id') === callId, 'CANCEL at the third binding')
      ok.respond(c, 200, 'OK')
      ok.respond(i3, 487, 'Request Terminated', { toTag: 'b3' })
      await caller.next(m => m.status === 487 && m.get('call-id') === callId, '487 at the caller')
      caller.sendRequest('ACK', AOR, { callId, fromTag: 'f1', toTag: 'b3', cseq: 1, branch, contact: false, dest: EDGE })
      t.pass('CANCEL, 487 and ACK through')
    }
    void inv
    const m = await metricsUntil(x => activeTx(x) === 0, 15_000)
    t.same(KINDS.map(kind => m('sipedge_transactions_active', { kind })), [0, 0, 0, 0], 'no server or client transaction left (the silent binding\'s included)')
  })
}

// list-header-amplification: a request whose Route or Contact line lists thousands of values is
// answered 400 naming the header after a bounded scan (MAX_LIST_ELEMENTS = 256 per line), and the
// node goes on answering.
t.test('list-header-amplification: thousands of Route or Contact values on one line get 400 naming the header', async t => {
  const ua = new UdpClient()
  const port = await ua.bind()
  t.teardown(() => ua.close())
  const req = (method: string, extra: string): string => [
    `${method} sip:someone@example.com SIP/2.0`, `Via: SIP/2.0/UDP 127.0.0.1:${port};branch=z9hG4bK${randomBytes(6).toString('hex')};rport`,
    'Max-Forwards: 70', `From: <sip:ua@example.com>;tag=${randomBytes(4).toString('hex')}`, 'To: <sip:someone@example.com>',
    `Call-ID: ${uniqueCallId('list')}`, `CSeq: 1 ${method}`, extra, 'Content-Length: 0', '', ''].join('\r\n')
  // 2,000 values in about 30 kB: one datagram, within limits.max_message_size
  const routes = Array.from({ length: 2000 }, (_, i) => `<sip:h${i}.x;lr>`).join(',')
  const r1 = await ua.request(req('INVITE', `Contact: <sip:ua@127.0.0.1:${port}>\r\nRoute: ${routes}`), SIP)
  t.equal(`${r1.status} ${r1.reason}`, '400 Too Many Route Values', `a ${routes.length}-byte Route line`)
  const r2 = await ua.request(req('REGISTER', 'Contact: ' + ','.repeat(20_000)), SIP)
  t.equal(`${r2.status} ${r2.reason}`, '400 Too Many Contact Values', '20,000 commas in Contact')
  const r3 = await ua.request(req('OPTIONS', 'Accept: application/sdp'), SIP)
  t.ok(r3.status >= 200, `the node still answers (${r3.status} ${r3.reason})`)
})

// aor-too-long: the location store keys a record by its AOR and takes at most 1024 bytes; a longer
// AOR is the client's error (400 on REGISTER, 414 on a lookup), not a store failure (it was 503).
t.test('aor-too-long: a REGISTER for an AOR over 1024 bytes gets 400, a call to one 414; 1024 bytes still register', async t => {
  const ua = new UdpClient()
  const port = await ua.bind()
  t.teardown(() => ua.close())
  const reg = (user: string): string => [
    'REGISTER sip:example.com SIP/2.0', `Via: SIP/2.0/UDP 127.0.0.1:${port};branch=z9hG4bK${randomBytes(6).toString('hex')};rport`,
    'Max-Forwards: 70', `From: <sip:${user}@example.com>;tag=${randomBytes(4).toString('hex')}`, `To: <sip:${user}@example.com>`,
    `Call-ID: ${uniqueCallId('aor')}`, 'CSeq: 1 REGISTER', `Contact: <sip:u@127.0.0.1:${port}>`, 'Expires: 60', 'Content-Length: 0', '', ''].join('\r\n')
  // 'sip:' + user + '@example.com' = 16 bytes around the user part
  const atLimit = 'a'.repeat(1024 - 16)
  const over = 'b'.repeat(1100)
  const r1 = await ua.request(reg(over), SIP)
  t.equal(r1.status, 400, `over 1024 bytes: ${r1.status} ${r1.reason}`)
  t.match(r1.reason, /Address of Record Too Long/)
  const r2 = await ua.request(reg(atLimit), SIP)
  t.equal(r2.status, 200, `exactly 1024 bytes: ${r2.status} ${r2.reason}`)
  const inv = [
    `INVITE sip:${over}@example.com SIP/2.0`, `Via: SIP/2.0/UDP 127.0.0.1:${port};branch=z9hG4bK${randomBytes(6).toString('hex')};rport`,
    'Max-Forwards: 70', `From: <sip:ua@example.com>;tag=${randomBytes(4).toString('hex')}`, `To: <sip:${over}@example.com>`,
    `Call-ID: ${uniqueCallId('aor-inv')}`, 'CSeq: 1 INVITE', `Contact: <sip:u@127.0.0.1:${port}>`, 'Content-Length: 0', '', ''].join('\r\n')
  await ua.request(inv, SIP) // 100 Trying first
  const callId = parseRequestCallId(inv)
  await waitUntil(() => (ua.responses.get(callId) ?? []).some(r => r.status >= 200), 'the final answer to the INVITE', 5_000)
  const r3 = ua.responses.get(callId)!.find(r => r.status >= 200)!
  t.equal(`${r3.status} ${r3.reason}`, '414 Request-URI Too Long', 'lookup of an AOR no binding can have')
})
