// Topology hiding over real sockets (ports 23600-23649): a UA on UDP (127.0.0.21) and an
// application server on TCP (127.0.0.31) through sipedge (UA side udp 127.0.0.10, application side
// tcp 127.0.0.11: one listener each, the RFC 5658 case). Both sides keep every message they get;
// after each flow, nothing of the other side may appear in any start line or header (address,
// port, host name, branch; with call_id the Call-ID too), every transaction must be answered,
// and the dialog must have ended with a 200 to BYE.
import t from 'tap'
import { startProxy } from '../dist/sipp.js'
import { SipPeer, PeerDialog, type PeerMsg } from '../dist/sip-peer.js'

process.env['SIPEDGE_TEST_HOOKS'] = '1' // dialog-admin clear

const EDGE_UA = { host: '127.0.0.10', port: 23600 }
const APP_PORT = 23610
const UA_PORT = 23620
const NAT_PORT = 23621

function config(th: string, workers: number): string {
  return `
workers: ${workers}
listen: [udp:${EDGE_UA.host}:${EDGE_UA.port}, tcp:127.0.0.11:23601]
domains: [example.com]
dialog: { secret: "topology-e2e-secret-0123456789", mirror: false }
topology_hiding: ${th}
dispatcher:
  sets:
    apps: { probe: false, destinations: ["sip:127.0.0.31:${APP_PORT};transport=tcp"] }
routes:
  - { match: { method: [INVITE, SUBSCRIBE] }, action: { dispatch: apps } }
`
}

type Engine = Awaited<ReturnType<typeof startProxy>>['engine']
let engine: Engine | null = null
async function run(th: string, workers = 2): Promise<Engine> {
  if (engine !== null) await engine.stop()
  engine = (await startProxy(config(th, workers))).engine
  return engine
}
t.teardown(async () => { await engine?.stop() })

const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
/** A token of the other side, found only as itself (a port inside a random token is no leak). */
function pattern(s: string): RegExp {
  return new RegExp('(?<![0-9A-Za-z_.-])' + esc(s) + '(?![0-9A-Za-z_-]|\\.[0-9])')
}

/** Nothing of `other` (addresses, ports, host names, branches, [Call-IDs]) in anything `peer` received. */
function assertHidden(t: Tap.Test, peer: SipPeer, other: SipPeer, extra: readonly string[], callIds: boolean, what: string): void {
  const secrets = [other.address, String(other.port), other.advertise, other.contactHost, ...other.branches, ...extra, ...(callIds ? other.callIds : [])]
  const res = [...new Set(secrets)].map(s => [s, pattern(s)] as const)
  const leaks: string[] = []
  for (const m of peer.received) {
    // Without call_id the Call-ID travels unchanged (whatever the UA wrote into it): out of scope.
    const head = callIds ? m.head : m.head.replace(/\r\n(?:Call-ID|i)[ \t]*:[^\r\n]*/gi, '')
    for (const [s, re] of res) if (re.test(head)) leaks.push(`${s} in ${m.start}`)
  }
  t.same(leaks, [], `${what}: ${peer.name} got ${peer.received.length} messages, nothing of ${other.name}`)
}

function assertAnswered(t: Tap.Test, peers: readonly SipPeer[]): void {
  for (const p of peers) t.same(p.unanswered(), [], `${p.name}: every transaction answered`)
}

/** The edge's app-facing listener is behind the edge too: the UA must never see it. */
const INSIDE = ['127.0.0.11', '23601']

async function peers(nat = false): Promise<{ ua: SipPeer; app: SipPeer }> {
  const ua = await new SipPeer({ name: 'alice', address: '127.0.0.21', port: nat ? NAT_PORT : UA_PORT, transport: 'udp', ...(nat ? { advertise: '127.0.200.21' } : { contactHost: 'alice-pc.lan' }) }).start()
  const app = await new SipPeer({ name: 'app', address: '127.0.0.31', port: APP_PORT, transport: 'tcp', contactHost: 'app1.internal' }).start()
  return { ua, app }
}

const EDGE = `sip:app@example.com`
const toEdge = { host: EDGE_UA.host, port: EDGE_UA.port, transport: 'udp' as const }

/** INVITE from the UA, answered 200 by the app, ACKed: both dialogs. */
async function call(ua: SipPeer, app: SipPeer, headers: string[] = []): Promise<{ dua: PeerDialog; dapp: PeerDialog; invite: PeerMsg }> {
  const inv = ua.sendRequest('INVITE', EDGE, { dest: toEdge, headers })
  const invite = await app.next(app.request('INVITE'), 'INVITE')
  const dapp = PeerDialog.asUas(app, invite, 'app-' + ua.received.length)
  app.respond(invite, 200, 'OK', { toTag: dapp.localTag, contact: true, rr: true })
  const ok = await ua.next(ua.response(200, 'INVITE'), '200 INVITE')
  const dua = PeerDialog.asUac(ua, inv, ok)
  dua.send('ACK', { cseq: dua.cseq })
  await app.next(app.request('ACK'), 'ACK')
  return { dua, dapp, invite }
}

async function bye(from: PeerDialog, to: SipPeer): Promise<void> {
  from.send('BYE')
  const b = await to.next(to.request('BYE'), 'BYE')
  to.respond(b, 200, 'OK')
  await from.peer.next(from.peer.response(200, 'BYE'), '200 BYE')
}

// workers: 0 too (the handler on the primary thread, no ring between a message and its sends):
// there the next INVITE to the app came right after the previous app's FIN, on that dead connection.
for (const [th, masked, workers] of [['true', false, 2], ['{ call_id: true }', true, 2], ['true', false, 0]] as const) {
  t.test(`topology_hiding: ${th}${workers === 0 ? ', workers: 0' : ''}`, async t => {
    await run(th, workers)

    t.test('INVITE dialog: 100rel PRACK, early UPDATE, re-INVITE, INFO, REFER + NOTIFY, BYE from the app, BYE again after the end', async t => {
      const { ua, app } = await peers()
      t.teardown(() => { ua.close(); app.close() })
      const inv = ua.sendRequest('INVITE', EDGE, { dest: toEdge, headers: ['Supported: 100rel'] })
      const invite = await app.next(app.request('INVITE'), 'INVITE')
      t.equal(invite.all('via').length, 1, 'the app sees one Via')
      t.equal(invite.all('record-route').length, 1, 'and one Record-Route entry')
      t.match(invite.get('record-route'), /^<sip:127\.0\.0\.11:23601;transport=tcp;lr/, 'the edge facing the app')
      if (masked) t.not(invite.get('call-id'), ua.callIds[0], 'the Call-ID is masked')
      else t.equal(invite.get('call-id'), ua.callIds[0])
      const dapp = PeerDialog.asUas(app, invite, 'app1tag')
      app.respond(invite, 183, 'Session Progress', { toTag: 'app1tag', contact: true, rr: true, headers: ['Require: 100rel', 'RSeq: 1'] })
      const early = await ua.next(ua.response(183, 'INVITE'), '183')
      t.equal(early.all('via').length, 1, 'the UA sees its own Via only')
      t.equal(early.all('record-route').length, 1)
      t.match(early.get('record-route'), /^<sip:127\.0\.0\.10:23600;lr;th=/)
      const dua = PeerDialog.asUac(ua, inv, early)
      dua.send('PRACK', { headers: ['RAck: 1 1 INVITE'] })
      const prack = await app.next(app.request('PRACK'), 'PRACK')
      t.match(prack.uri, /^sip:app@app1\.internal:23610;transport=tcp$/, 'with the app\'s own Contact as Request-URI')
      app.respond(prack, 200, 'OK')
      await ua.next(ua.response(200, 'PRACK'), '200 PRACK')
      dua.send('UPDATE')
      const upd = await app.next(app.request('UPDATE'), 'UPDATE')
      dapp.refresh(upd)
      app.respond(upd, 200, 'OK', { contact: true })
      dua.refresh(await ua.next(ua.response(200, 'UPDATE'), '200 UPDATE'))
      app.respond(invite, 200, 'OK', { toTag: 'app1tag', contact: true, rr: true })
      const ok = await ua.next(ua.response(200, 'INVITE'), '200 INVITE')
      dua.refresh(ok)
      dua.send('ACK', { cseq: 1 })
      await app.next(app.request('ACK'), 'ACK')
      // re-INVITE from the app
      dapp.send('INVITE')
      const reinv = await ua.next(ua.request('INVITE'), 're-INVITE')
      t.match(reinv.uri, /^sip:alice@alice-pc\.lan:23620$/, 'the UA gets its own Contact as Request-URI')
      dua.refresh(reinv)
      ua.respond(reinv, 200, 'OK', { contact: true })
      const ok2 = await app.next(app.response(200, 'INVITE'), '200 re-INVITE')
      dapp.refresh(ok2)
      dapp.send('ACK', { cseq: dapp.cseq })
      await ua.next(ua.request('ACK'), 'ACK re-INVITE')
      // INFO and REFER from the UA; the app's NOTIFY for the REFER
      dua.send('INFO')
      app.respond(await app.next(app.request('INFO'), 'INFO'), 200, 'OK')
      await ua.next(ua.response(200, 'INFO'), '200 INFO')
      dua.send('REFER', { headers: ['Refer-To: <sip:carol@example.com>'] })
      app.respond(await app.next(app.request('REFER'), 'REFER'), 202, 'Accepted', { contact: true })
      await ua.next(ua.response(202, 'REFER'), '202 REFER')
      dapp.send('NOTIFY', { headers: ['Event: refer', 'Subscription-State: terminated;reason=noresource', 'Content-Type: message/sipfrag'] })
      ua.respond(await ua.next(ua.request('NOTIFY'), 'NOTIFY'), 200, 'OK')
      await app.next(app.response(200, 'NOTIFY'), '200 NOTIFY')
      // BYE from the app; then the same BYE once more, and a new one after the dialog ended
      const byeText = dapp.send('BYE')
      const b = await ua.next(ua.request('BYE'), 'BYE')
      t.equal(b.get('call-id'), ua.callIds[0], 'the BYE reaches the UA with its own Call-ID')
      ua.respond(b, 200, 'OK')
      await app.next(app.response(200, 'BYE'), '200 BYE')
      // Over TCP the server transaction ended with the 200 (Timer J = 0): the copy is a new request.
      app.send(byeText, '127.0.0.11', 23601, 'tcp')
      ua.respond(await ua.next(ua.request('BYE'), 'the BYE again'), 481, 'Call/Transaction Does Not Exist')
      await app.next(app.response(481, 'BYE'), '481 to the BYE again')
      dapp.send('BYE')
      ua.respond(await ua.next(ua.request('BYE'), 'BYE after the end'), 481, 'Call/Transaction Does Not Exist')
      await app.next(app.response(481, 'BYE'), '481 BYE after the end')
      assertHidden(t, app, ua, [], masked, 'app side')
      assertHidden(t, ua, app, [...INSIDE, ...(masked ? app.received.map(m => m.get('call-id')) : [])], masked, 'UA side')
      assertAnswered(t, [ua, app])
    })

    t.test('CANCEL of a ringing call', async t => {
      const { ua, app } = await peers()
      t.teardown(() => { ua.close(); app.close() })
      const inv = ua.sendRequest('INVITE', EDGE, { dest: toEdge })
      const invite = await app.next(app.request('INVITE'), 'INVITE')
      app.respond(invite, 180, 'Ringing', { toTag: 'r1', contact: true, rr: true })
      await ua.next(ua.response(180, 'INVITE'), '180')
      const m = /;branch=([^;\r\n]+)/.exec(inv)![1]!
      const fromTag = /From: <[^>]+>;tag=(\w+)/.exec(inv)![1]!
      ua.sendRequest('CANCEL', EDGE, { dest: toEdge, callId: ua.callIds[0]!, fromTag, to: EDGE, cseq: 1, branch: m, contact: false })
      await ua.next(ua.response(200, 'CANCEL'), '200 CANCEL')
      const cancel = await app.next(app.request('CANCEL'), 'CANCEL')
      app.respond(cancel, 200, 'OK')
      app.respond(invite, 487, 'Request Terminated', { toTag: 'r1' })
      const term = await ua.next(ua.response(487, 'INVITE'), '487')
      ua.sendRequest('ACK', EDGE, { dest: toEdge, callId: ua.callIds[0]!, fromTag, to: EDGE, toTag: /;tag=(\w+)/.exec(term.get('to'))![1]!, cseq: 1, branch: m, contact: false })
      await app.next(app.request('ACK'), 'ACK for 487 (hop by hop from the edge)')
      assertHidden(t, app, ua, [], masked, 'app side')
      assertHidden(t, ua, app, INSIDE, masked, 'UA side')
      assertAnswered(t, [ua, app])
    })

    t.test('SUBSCRIBE dialog: NOTIFY before the 200, re-SUBSCRIBE, unsubscribe', async t => {
      const { ua, app } = await peers()
      t.teardown(() => { ua.close(); app.close() })
      const sub = ua.sendRequest('SUBSCRIBE', 'sip:bob@example.com', { dest: toEdge, headers: ['Event: presence', 'Expires: 600'] })
      const s = await app.next(app.request('SUBSCRIBE'), 'SUBSCRIBE')
      const dapp = PeerDialog.asUas(app, s, 'n1')
      dapp.send('NOTIFY', { headers: ['Event: presence', 'Subscription-State: active;expires=600'] })
      const n = await ua.next(ua.request('NOTIFY'), 'NOTIFY before the 200')
      // RFC 6665 §4.1.2.4: the NOTIFY creates the subscriber's dialog (route set from its Record-Route).
      const dua = PeerDialog.asUas(ua, n, /;tag=(\w+)/.exec(sub)![1]!)
      dua.cseq = 1
      ua.respond(n, 200, 'OK')
      await app.next(app.response(200, 'NOTIFY'), '200 NOTIFY')
      app.respond(s, 200, 'OK', { toTag: 'n1', contact: true, rr: true, headers: ['Expires: 600'] })
      await ua.next(ua.response(200, 'SUBSCRIBE'), '200 SUBSCRIBE')
      dua.send('SUBSCRIBE', { headers: ['Event: presence', 'Expires: 600'] })
      const re = await app.next(app.request('SUBSCRIBE'), 're-SUBSCRIBE')
      t.match(re.uri, /^sip:app@app1\.internal:23610;transport=tcp$/)
      app.respond(re, 200, 'OK', { contact: true, headers: ['Expires: 600'] })
      await ua.next(ua.response(200, 'SUBSCRIBE'), '200 re-SUBSCRIBE')
      dua.send('SUBSCRIBE', { headers: ['Event: presence', 'Expires: 0'] })
      app.respond(await app.next(app.request('SUBSCRIBE'), 'unsubscribe'), 200, 'OK', { contact: true, headers: ['Expires: 0'] })
      await ua.next(ua.response(200, 'SUBSCRIBE'), '200 unsubscribe')
      dapp.send('NOTIFY', { headers: ['Event: presence', 'Subscription-State: terminated;reason=timeout'] })
      ua.respond(await ua.next(ua.request('NOTIFY'), 'final NOTIFY'), 200, 'OK')
      await app.next(app.response(200, 'NOTIFY'), '200 final NOTIFY')
      assertHidden(t, app, ua, [], masked, 'app side')
      assertHidden(t, ua, app, [...INSIDE, ...(masked ? app.received.map(m => m.get('call-id')) : [])], masked, 'UA side')
      assertAnswered(t, [ua, app])
    })
  })
}

t.test('with topology_hiding: true', async t => {
  const e = await run('true')

  t.test('a UA behind NAT (Via and Contact name 127.0.200.21): the app\'s BYE reaches it where it sends from', async t => {
    const { ua, app } = await peers(true)
    t.teardown(() => { ua.close(); app.close() })
    const { dapp } = await call(ua, app)
    await bye(dapp, ua)
    assertHidden(t, app, ua, [], false, 'app side')
    assertHidden(t, ua, app, INSIDE, false, 'UA side')
    assertAnswered(t, [ua, app])
  })

  t.test('the dialog table cleared between INVITE and BYE', async t => {
    const { ua, app } = await peers()
    t.teardown(() => { ua.close(); app.close() })
    const one = await call(ua, app)
    const two = await call(ua, app)
    e.control({ type: 'dialog-admin', action: 'clear' })
    await new Promise(r => setTimeout(r, 200)) // the control message reaches both workers
    const byeText = one.dua.send('BYE')
    app.respond(await app.next(app.request('BYE'), 'BYE'), 200, 'OK')
    await ua.next(ua.response(200, 'BYE'), '200 BYE')
    // The same BYE again over UDP: the edge's transaction answers it (the app sees it once).
    ua.send(byeText, EDGE_UA.host, EDGE_UA.port)
    await ua.next(ua.response(200, 'BYE'), '200 to the retransmitted BYE')
    t.equal(app.received.filter(m => m.method === 'BYE').length, 1)
    await bye(two.dapp, ua)
    assertHidden(t, app, ua, [], false, 'app side')
    assertHidden(t, ua, app, INSIDE, false, 'UA side')
    assertAnswered(t, [ua, app])
  })

  t.test('a forged or altered edge URI is refused with 403 and counted', async t => {
    const { ua, app } = await peers()
    t.teardown(() => { ua.close(); app.close() })
    const { dua } = await call(ua, app)
    const target = dua.remoteTarget
    const user = /sip:th\.([^@]+)@/.exec(target)![1]!
    dua.remoteTarget = target.replace(user, user.slice(0, 12) + (user[12] === 'A' ? 'B' : 'A') + user.slice(13))
    dua.send('BYE')
    const r = await ua.next(ua.response(() => true, 'BYE'), 'answer to the forged BYE')
    t.equal(r.status, 403)
    t.match(r.start, /403 Invalid Edge URI/)
    dua.remoteTarget = target
    await bye(dua, app)
    const stats = (await e.query('all', 'stats')) as Array<{ topology?: { forged: number } }>
    t.ok(stats.reduce((n, s) => n + (s.topology?.forged ?? 0), 0) >= 1, 'counted')
    t.equal(app.received.filter(m => m.method === 'BYE').length, 1, 'the forged BYE never reached the app')
    assertAnswered(t, [ua, app])
  })
})

t.test('a restart between INVITE and BYE', async t => {
  await run('true')
  const { ua, app } = await peers()
  t.teardown(() => { ua.close(); app.close() })
  const one = await call(ua, app)
  const two = await call(ua, app)
  await run('true')
  await bye(one.dapp, ua)
  await bye(two.dua, app)
  assertHidden(t, app, ua, [], false, 'app side')
  assertHidden(t, ua, app, INSIDE, false, 'UA side')
  assertAnswered(t, [ua, app])
})

declare namespace Tap { type Test = typeof t }
