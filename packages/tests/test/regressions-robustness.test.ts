// Robustness regressions over real sockets against `sipedge` as a child process (ports
// 25330-25359), each named after the defect it guards against:
// - responses-missing-mandatory-headers: a response to a forwarded request that lacks To, From or
//   CSeq, or whose CSeq does not parse, is dropped and counted (messages_dropped{reason="sanity"});
//   it never matches a client transaction, so the good final response that follows still goes
//   through and no transaction is left open.
import t from 'tap'
import { tempDir } from '@sipedge/tests'
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
