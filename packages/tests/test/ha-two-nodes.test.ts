// Two sipedge nodes on 127.0.0.11 and 127.0.0.12 (ports 27300-27399) sharing one redis-server,
// both advertising the service address 127.0.0.100 (the VIP of an HA pair; nothing listens
// there: the test sends to the node the VIP would point at). Issue 15's quick suite:
// - shared registrations: a phone registered through A is reached by a request entering B;
// - any node routes the other's dialogs: a call set up through A is ended (BYE from either side)
//   through B after A is SIGKILLed, B taking the advertised address in the Route as its own;
// - drain: new dialogs and registrations get 503 + Retry-After, the established dialog
//   finishes, GET /api/node reports the progress, and the process exits 0 once empty.
import t from 'tap'
import { tempDir, waitForExit, until } from '@sipedge/tests'
import { SipPeer, PeerDialog, type PeerMsg } from '../dist/sip-peer.js'
import { startRedis, redisInstalled, startHaNode, type HaNode, type HaNodeOptions } from '../dist/ha.js'
import { http, sampleValue } from '../dist/ops.js'
import { parseExposition } from '../../metrics/test/fixtures/expo-parser.js'

const SIP = 27300
const HTTP_A = 27301
const HTTP_B = 27302
const APP = 27310
const SERVICE = '127.0.0.100'
const A_ADDR = '127.0.0.11'
const B_ADDR = '127.0.0.12'
const APPS = [`sip:127.0.0.2:${APP}`, `sip:127.0.0.3:${APP}`]

if (!redisInstalled()) {
  t.skip('two-node suite: redis-server is not installed')
} else {
  const tmp = tempDir()
  t.teardown(tmp.cleanup)
  const redis = await startRedis(t, { ports: [27380, 27399] })
  const opts = (address: string, httpPort: number): HaNodeOptions => ({
    address, sipPort: SIP, service: SERVICE, httpPort, storeUrl: redis.url(0), apps: APPS,
  })
  const nodes: HaNode[] = []
  t.teardown(async () => { for (const n of nodes) await n.proc.stop().catch(() => undefined) })
  const start = async (name: string, address: string, httpPort: number, extra?: string): Promise<HaNode> => {
    const n = await startHaNode(tmp.dir, name, { ...opts(address, httpPort), extra })
    nodes.push(n)
    return n
  }
  let a = await start('a', A_ADDR, HTTP_A)
  const b = await start('b', B_ADDR, HTTP_B)

  const app1 = await new SipPeer({ name: 'app1', address: '127.0.0.2', port: APP, transport: 'udp' }).start()
  const app2 = await new SipPeer({ name: 'app2', address: '127.0.0.3', port: APP, transport: 'udp' }).start()
  const apps = [app1, app2]
  t.teardown(() => { for (const p of apps) p.close() })
  const to = (n: HaNode) => ({ host: n.address, port: SIP, transport: 'udp' as const })

  /** The INVITE (or other request) that reached one of the apps, and which app. */
  async function atApp(pred: (m: PeerMsg) => boolean, what: string): Promise<{ app: SipPeer; msg: PeerMsg }> {
    const deadline = Date.now() + 10_000
    for (;;) {
      for (const p of apps) {
        try { return { app: p, msg: await p.next(pred, what, 100) } } catch { /* the other one */ }
      }
      if (Date.now() > deadline) throw new Error(`no ${what} at either app`)
    }
  }

  /** alice calls through `via`; the app answers 200 with Record-Route; alice ACKs through `via`. */
  async function call(alice: SipPeer, via: HaNode): Promise<{ dua: PeerDialog; dapp: PeerDialog; app: SipPeer; ok: PeerMsg }> {
    const inv = alice.sendRequest('INVITE', 'sip:app@example.com', { dest: to(via) })
    const { app, msg } = await atApp(m => m.method === 'INVITE' && m.get('call-id') === new PeerMsgText(inv).callId, 'INVITE')
    const tag = 'app' + Math.random().toString(16).slice(2, 8)
    app.respond(msg, 200, 'OK', { toTag: tag, contact: true, rr: true })
    const ok = await alice.next(alice.response(200, 'INVITE'), '200 INVITE')
    const dua = PeerDialog.asUac(alice, inv, ok)
    const dapp = PeerDialog.asUas(app, msg, tag)
    return { dua, dapp, app, ok }
  }

  /** An in-dialog request of `d`, sent to `via` whatever its Route says (the VIP moved there). */
  function inDialog(d: PeerDialog, method: string, via: HaNode): string {
    const cseq = method === 'ACK' ? d.cseq : ++d.cseq
    return d.peer.sendRequest(method, d.remoteTarget, {
      callId: d.callId, from: d.localUri, fromTag: d.localTag, to: d.remoteUri, toTag: d.remoteTag, cseq,
      route: d.routeSet, contact: false, dest: to(via),
    })
  }

  t.test('the advertised address goes into Record-Route and Via', async t => {
    const alice = await new SipPeer({ name: 'alice0', address: '127.0.0.21', port: 27320, transport: 'udp' }).start()
    t.teardown(() => alice.close())
    const { dua, dapp, ok } = await call(alice, a)
    t.match(ok.get('record-route'), new RegExp(`^<sip:${SERVICE.replace(/\./g, '\\.')}:${SIP};lr`), 'Record-Route names the service address')
    const inv = dapp.peer.received.find(m => m.method === 'INVITE' && m.get('call-id') === dua.callId)!
    t.match(inv.get('via'), new RegExp(`SIP/2\\.0/UDP ${SERVICE.replace(/\./g, '\\.')}:${SIP};`), 'our Via names the service address')
    inDialog(dua, 'ACK', a)
    inDialog(dua, 'BYE', a)
    const bye = await dapp.peer.next(m => m.method === 'BYE' && m.get('call-id') === dua.callId, 'BYE')
    dapp.peer.respond(bye, 200, 'OK')
    await alice.next(alice.response(200, 'BYE'), '200 BYE')
  })

  t.test('shared registrations: REGISTER through A, INVITE from the app through B reaches the phone', async t => {
    const bob = await new SipPeer({ name: 'bob', address: '127.0.0.22', port: 27321, transport: 'udp' }).start()
    t.teardown(() => bob.close())
    bob.sendRequest('REGISTER', 'sip:example.com', { to: 'sip:bob@example.com', from: 'sip:bob@example.com', headers: ['Expires: 300'], dest: to(a) })
    const reg = await bob.next(bob.response(200, 'REGISTER'), '200 REGISTER')
    t.match(reg.get('contact'), /bob@127\.0\.0\.22:27321/, 'registered through A')
    app1.sendRequest('INVITE', 'sip:bob@example.com', { dest: to(b), from: 'sip:app1@example.com' })
    const inv = await bob.next(bob.request('INVITE'), 'INVITE at bob (through B)')
    t.match(inv.get('via'), new RegExp(`${SERVICE.replace(/\./g, '\\.')}:${SIP}`), 'B forwarded it')
    bob.respond(inv, 486, 'Busy Here', { toTag: 'bobtag' })
    const busy = await app1.next(app1.response(486, 'INVITE'), '486 at the app')
    t.equal(busy.status, 486, 'the answer came back through B')

    // a forged relay parameter does not turn a caller's INVITE into a lookup: the rules decide
    // (this one is dispatched to the apps, bob never sees it)
    const mallory = await new SipPeer({ name: 'mallory', address: '127.0.0.27', port: 27330, transport: 'udp' }).start()
    t.teardown(() => mallory.close())
    const forged = mallory.sendRequest('INVITE', 'sip:bob@example.com;sipedge-relay=AAAAAAAAAAAAAAAAAAAAAA', { dest: to(a) })
    const id = new PeerMsgText(forged).callId
    const got = await atApp(m => m.method === 'INVITE' && m.get('call-id') === id, 'the forged INVITE at an app')
    got.app.respond(got.msg, 486, 'Busy Here', { toTag: 'x' })
    await mallory.next(m => m.status >= 200 && m.get('call-id') === id, 'final answer')
    t.ok(bob.none(m => m.method === 'INVITE' && m.get('call-id') === id), 'bob did not get it')
  })

  t.test('any node routes the other\'s dialogs: BYE through B after A is SIGKILLed', async t => {
    const alice = await new SipPeer({ name: 'alice1', address: '127.0.0.21', port: 27322, transport: 'udp' }).start()
    const carol = await new SipPeer({ name: 'carol', address: '127.0.0.23', port: 27323, transport: 'udp' }).start()
    t.teardown(() => { alice.close(); carol.close() })
    const c1 = await call(alice, a)
    inDialog(c1.dua, 'ACK', a)
    await c1.app.next(m => m.method === 'ACK' && m.get('call-id') === c1.dua.callId, 'ACK of call 1')
    const c2 = await call(carol, a)
    inDialog(c2.dua, 'ACK', a)
    await c2.app.next(m => m.method === 'ACK' && m.get('call-id') === c2.dua.callId, 'ACK of call 2')

    a.proc.child.kill('SIGKILL')
    await waitForExit(a.proc.child)

    // The caller hangs up call 1, through B (the VIP moved there).
    inDialog(c1.dua, 'BYE', b)
    const bye1 = await c1.app.next(m => m.method === 'BYE' && m.get('call-id') === c1.dua.callId, 'BYE of call 1 through B')
    t.match(bye1.get('via'), new RegExp(`${SERVICE.replace(/\./g, '\\.')}:${SIP}`), 'B relayed the BYE')
    t.equal(bye1.from.address, B_ADDR, 'it came from B')
    c1.app.respond(bye1, 200, 'OK')
    const ok1 = await alice.next(alice.response(200, 'BYE'), '200 BYE through B')
    t.equal(ok1.from.address, B_ADDR, '200 BYE from B')

    // The application hangs up call 2, through B.
    inDialog(c2.dapp, 'BYE', b)
    const bye2 = await carol.next(carol.request('BYE'), 'BYE of call 2 at carol')
    t.equal(bye2.from.address, B_ADDR, 'B relayed the app\'s BYE')
    carol.respond(bye2, 200, 'OK')
    await c2.app.next(c2.app.response(200, 'BYE'), '200 BYE at the app')
  })

  const nodeId = (address: string): RegExp => new RegExp(`:${address.replace(/\./g, '\\.')}:${SIP}$`)
  const liveOn = async (n: HaNode): Promise<string[]> => ((await n.get('/api/node')).json as { live?: string[] }).live ?? []
  const destState = async (n: HaNode, uri: string): Promise<string | undefined> => {
    const sets = ((await n.get('/api/dispatcher')).json as { sets: Array<{ name: string; destinations: Array<{ uri: string; state: string }> }> }).sets
    return sets.find(x => x.name === 'apps')?.destinations.find(d => d.uri === uri)?.state
  }

  t.test('connection-bound bindings: relayed to the owning node while it lives, unreachable at once when it dies', async t => {
    a = await start('a1', A_ADDR, HTTP_A)
    t.ok(await until(async () => (await liveOn(b)).some(id => nodeId(A_ADDR).test(id)), 15_000, 200), 'B sees A alive')
    // a phone behind NAT (writes 127.0.200.24) registered over TCP through A: only A's connection reaches it
    const dave = await new SipPeer({ name: 'dave', address: '127.0.0.24', port: 27325, transport: 'tcp', advertise: '127.0.200.24' }).start()
    t.teardown(() => dave.close())
    const reg = (n: HaNode): void => { dave.sendRequest('REGISTER', 'sip:example.com', { to: 'sip:dave@example.com', from: 'sip:dave@example.com', headers: ['Expires: 300'], dest: { host: n.address, port: SIP, transport: 'tcp' } }) }
    reg(a)
    t.equal((await dave.next(dave.response(st => st >= 200, 'REGISTER'), 'answer to REGISTER')).status, 200, 'registered over TCP through A')

    let callId = new PeerMsgText(app1.sendRequest('INVITE', 'sip:dave@example.com', { dest: to(b), from: 'sip:app1@example.com' })).callId
    const final = (id: string) => app1.next(m => m.status >= 200 && m.cseq.method === 'INVITE' && m.get('call-id') === id, `final answer to ${id} at the app`)
    const inv = await dave.next(dave.request('INVITE'), 'INVITE at dave')
    t.equal(inv.conn?.remoteAddress, A_ADDR, 'B relayed it to A, which sent it over dave\'s connection')
    t.notMatch(inv.uri, /sipedge-relay/, 'the phone sees its own Contact as Request-URI')
    dave.respond(inv, 486, 'Busy Here', { toTag: 'davetag' })
    t.equal((await final(callId)).status, 486, 'the answer came back through A and B')

    // shared dispatcher operator state: disabled through B, applied on A
    const d1 = APPS[0]!
    t.equal((await b.post(`/api/dispatcher/apps/${encodeURIComponent(d1)}/disable`)).status, 200, 'disable through B')
    t.ok(await until(async () => (await destState(a, d1)) === 'disabled', 15_000, 200), 'A applies the state B stored')

    a.proc.child.kill('SIGKILL')
    await waitForExit(a.proc.child)
    t.ok(await until(async () => !(await liveOn(b)).some(id => nodeId(A_ADDR).test(id)), 15_000, 200), 'B sees A gone once its liveness key expired')
    callId = new PeerMsgText(app1.sendRequest('INVITE', 'sip:dave@example.com', { dest: to(b), from: 'sip:app1@example.com' })).callId
    t.equal((await final(callId)).status, 480, 'the binding only A reached is unreachable: 480, not a timeout')

    // flow recovery: dave registers again, through B
    dave.close()
    const dave2 = await new SipPeer({ name: 'dave', address: '127.0.0.24', port: 27326, transport: 'tcp', advertise: '127.0.200.24' }).start()
    t.teardown(() => dave2.close())
    dave2.sendRequest('REGISTER', 'sip:example.com', { to: 'sip:dave@example.com', from: 'sip:dave@example.com', headers: ['Expires: 300'], dest: { host: B_ADDR, port: SIP, transport: 'tcp' } })
    t.equal((await dave2.next(dave2.response(st => st >= 200, 'REGISTER'), 'answer to REGISTER')).status, 200, 're-registered through B')
    callId = new PeerMsgText(app1.sendRequest('INVITE', 'sip:dave@example.com', { dest: to(b), from: 'sip:app1@example.com' })).callId
    const inv2 = await dave2.next(dave2.request('INVITE'), 'INVITE at dave through B')
    t.equal(inv2.conn?.remoteAddress, B_ADDR, 'reached through B')
    dave2.respond(inv2, 486, 'Busy Here', { toTag: 'davetag2' })
    t.equal((await final(callId)).status, 486, '486 at the app')
  })

  t.test('drain: 503 for new dialogs and registrations, the established call finishes, exit 0', async t => {
    a = await start('a2', A_ADDR, HTTP_A)
    // the operator state stored in Redis survives A's restart; enabled again through the new A
    const d1 = APPS[0]!
    t.ok(await until(async () => (await destState(a, d1)) === 'disabled', 15_000, 200), 'a restarted node starts with the stored state')
    t.equal((await a.post(`/api/dispatcher/apps/${encodeURIComponent(d1)}/enable`)).status, 200, 'enable')
    t.ok(await until(async () => (await destState(b, d1)) === 'active', 15_000, 200), 'B follows')
    const alice = await new SipPeer({ name: 'alice2', address: '127.0.0.21', port: 27324, transport: 'udp' }).start()
    t.teardown(() => alice.close())
    const c = await call(alice, a)
    inDialog(c.dua, 'ACK', a)
    await c.app.next(m => m.method === 'ACK' && m.get('call-id') === c.dua.callId, 'ACK')

    // metrics of the restarted node: it sees both nodes, owns bob's binding (registered through
    // the first A, same node.id), and its workers have talked to Redis
    const metric = async (n: HaNode, name: string, family = name): Promise<number> =>
      sampleValue(parseExposition((await http('GET', `${n.api}/metrics`)).text), family, name)
    t.ok(await until(async () => (await metric(a, 'sipedge_node_live_nodes')) === 2, 15_000, 250), 'sipedge_node_live_nodes 2')
    t.ok(await until(async () => (await metric(a, 'sipedge_node_bindings_owned')) >= 1, 15_000, 250), 'sipedge_node_bindings_owned counts bob')
    t.ok((await metric(a, 'sipedge_store_redis_rtt_seconds_count', 'sipedge_store_redis_rtt_seconds')) > 0, 'Redis round trips observed')
    t.ok(await until(async () => (await metric(a, 'sipedge_node_dialogs')) === 1, 15_000, 250), 'sipedge_node_dialogs: the call')

    const before = await a.get('/api/node')
    t.equal(before.status, 200)
    t.match(before.json, { state: 'serving' }, 'serving before the drain')
    const d = await a.post('/api/node/drain')
    t.equal(d.status, 200, 'drain accepted')
    t.match(d.json, { state: 'draining' })

    const inv = alice.sendRequest('INVITE', 'sip:app@example.com', { dest: to(a) })
    const r = await alice.next(m => m.status >= 200 && m.get('call-id') === new PeerMsgText(inv).callId, 'answer to a new INVITE')
    t.equal(r.status, 503, 'a new dialog is refused')
    t.match(r.get('retry-after'), /^\d+/, 'with Retry-After')
    alice.sendRequest('ACK', 'sip:app@example.com', { callId: new PeerMsgText(inv).callId, dest: to(a) })
    alice.sendRequest('REGISTER', 'sip:example.com', { to: 'sip:alice@example.com', from: 'sip:alice@example.com', headers: ['Expires: 300'], dest: to(a) })
    const rr = await alice.next(alice.response(st => st >= 200, 'REGISTER'), 'answer to REGISTER')
    t.equal(rr.status, 503, 'a registration is refused')
    t.match(rr.get('retry-after'), /^\d+/, 'with Retry-After')

    const progress = await a.get('/api/node')
    t.match(progress.json, { state: 'draining', dialogs: 1 }, 'one dialog left')
    t.type((progress.json as { deadline?: unknown }).deadline, 'string', 'a deadline')

    // the established call goes on: a re-INVITE-free BYE through the draining node
    inDialog(c.dua, 'BYE', a)
    const bye = await c.app.next(m => m.method === 'BYE' && m.get('call-id') === c.dua.callId, 'BYE through the draining node')
    c.app.respond(bye, 200, 'OK')
    await alice.next(alice.response(200, 'BYE'), '200 BYE')
    const exit = await waitForExit(a.proc.child, 20_000)
    t.same(exit, { code: 0, signal: null }, 'the node exited 0 once empty')
  })

  t.test('Redis outage: 503 with Retry-After for what needs the store, the rest works, all resumes on return', async t => {
    const erin = await new SipPeer({ name: 'erin', address: '127.0.0.25', port: 27327, transport: 'udp' }).start()
    t.teardown(() => erin.close())
    const register = async (): Promise<PeerMsg> => {
      const id = new PeerMsgText(erin.sendRequest('REGISTER', 'sip:example.com', { to: 'sip:erin@example.com', from: 'sip:erin@example.com', headers: ['Expires: 300'], dest: to(b) })).callId
      return erin.next(m => m.status >= 200 && m.get('call-id') === id, 'answer to REGISTER', 10_000)
    }
    const invite = async (): Promise<PeerMsg> => {
      const id = new PeerMsgText(app1.sendRequest('INVITE', 'sip:erin@example.com', { dest: to(b), from: 'sip:app1@example.com' })).callId
      return app1.next(m => m.status >= 200 && m.cseq.method === 'INVITE' && m.get('call-id') === id, 'final answer at the app', 10_000)
    }
    t.equal((await register()).status, 200, 'registered before the outage')

    await redis.kill()
    const r = await register()
    t.equal(r.status, 503, 'REGISTER during the outage: 503')
    t.match(r.get('retry-after'), /^\d+/, 'with Retry-After')
    const l = await invite()
    t.equal(l.status, 503, 'a request that needs the location store: 503')
    t.match(l.get('retry-after'), /^\d+/, 'with Retry-After')
    // a dispatched call needs no store
    const caller = await new SipPeer({ name: 'frank', address: '127.0.0.26', port: 27328, transport: 'udp' }).start()
    t.teardown(() => caller.close())
    const inv = caller.sendRequest('INVITE', 'sip:app@example.com', { dest: to(b) })
    const got = await atApp(m => m.method === 'INVITE' && m.get('call-id') === new PeerMsgText(inv).callId, 'dispatched INVITE during the outage')
    got.app.respond(got.msg, 486, 'Busy Here', { toTag: 'busy' })
    t.equal((await caller.next(m => m.status >= 200, 'final answer')).status, 486, 'a dispatched call goes on during the outage')

    t.ok((sampleValue(parseExposition((await http('GET', `${b.api}/metrics`)).text), 'sipedge_store_redis_errors_total', 'sipedge_store_redis_errors_total')) > 0, 'sipedge_store_redis_errors_total counts the failures')
    // back: no restart of the node. The server restarted empty (no persistence), so erin registers again.
    await redis.restart()
    t.ok(await until(async () => { try { return (await register()).status === 200 } catch { return false } }, 30_000, 250), 'REGISTER succeeds again once Redis is back')
    const inv2 = invite()
    const at = await erin.next(erin.request('INVITE'), 'INVITE at erin after the outage')
    erin.respond(at, 486, 'Busy Here', { toTag: 'erintag' })
    t.equal((await inv2).status, 486, 'lookups work again')
  })

  t.test('drain deadline: a call still up at node.drain_timeout does not keep the node', async t => {
    const d = await startHaNode(tmp.dir, 'd', { ...opts('127.0.0.14', 27304), extra: 'node: { drain_timeout: 2s, drain_retry_after: 7s }' })
    nodes.push(d)
    const gina = await new SipPeer({ name: 'gina', address: '127.0.0.21', port: 27329, transport: 'udp' }).start()
    t.teardown(() => gina.close())
    const c = await call(gina, d)
    inDialog(c.dua, 'ACK', d)
    await c.app.next(m => m.method === 'ACK' && m.get('call-id') === c.dua.callId, 'ACK')
    const r = await d.post('/api/node/drain')
    t.match(r.json, { state: 'draining', dialogs: 1 }, 'draining with the call up')
    const inv = gina.sendRequest('INVITE', 'sip:app@example.com', { dest: to(d) })
    const refused = await gina.next(m => m.status >= 200 && m.get('call-id') === new PeerMsgText(inv).callId, 'answer to a new INVITE')
    t.equal(refused.get('retry-after'), '7', 'Retry-After is node.drain_retry_after')
    const exit = await waitForExit(d.proc.child, 20_000)
    t.same(exit, { code: 0, signal: null }, 'exit 0 at the deadline')
    t.match(d.proc.output(), /"reason":"deadline"[^\n]*"dialogs":1/, 'the log says the deadline ended it, with the call still up')
    // the call goes on through the other node
    inDialog(c.dua, 'BYE', b)
    const bye = await c.app.next(m => m.method === 'BYE' && m.get('call-id') === c.dua.callId, 'BYE through B')
    c.app.respond(bye, 200, 'OK')
    await gina.next(gina.response(200, 'BYE'), '200 BYE')
  })

  t.test('SIGUSR2 drains too; an idle node exits 0', async t => {
    const c = await start('c', '127.0.0.13', 27303)
    t.ok(await until(async () => (await c.get('/api/node')).status === 200), 'node API up')
    c.proc.child.kill('SIGUSR2')
    const exit = await waitForExit(c.proc.child, 20_000)
    t.same(exit, { code: 0, signal: null }, 'exited 0')
    t.match(c.proc.output(), /"msg":"drain/, 'the drain was logged')
  })

  t.test('a binding of a node that started after the last poll is relayed, not taken for gone', async t => {
    // e's workers read the live view once a minute: without the fresh read a lookup makes for an
    // owner it does not know, a binding f took right after it started looks gone on e (480)
    const e = await start('e', '127.0.0.15', 27305, 'node: { heartbeat_interval: 60s, liveness_timeout: 180s }\n')
    const f = await start('f', '127.0.0.16', 27306)
    const hal = await new SipPeer({ name: 'hal', address: '127.0.0.26', port: 27327, transport: 'tcp', advertise: '127.0.200.26' }).start()
    t.teardown(() => hal.close())
    hal.sendRequest('REGISTER', 'sip:example.com', { to: 'sip:hal@example.com', from: 'sip:hal@example.com', headers: ['Expires: 300'], dest: { host: f.address, port: SIP, transport: 'tcp' } })
    t.equal((await hal.next(hal.response(st => st >= 200, 'REGISTER'), 'answer to REGISTER')).status, 200, 'registered over TCP through f')
    for (let i = 0; i < 4; i++) {
      // several Call-IDs, so both of e's workers take one
      const callId = new PeerMsgText(app1.sendRequest('INVITE', 'sip:hal@example.com', { dest: to(e), from: 'sip:app1@example.com' })).callId
      const inv = await hal.next(hal.request('INVITE'), `INVITE ${i} at hal`)
      t.equal(inv.conn?.remoteAddress, f.address, `INVITE ${i}: e relayed it to f, which sent it over hal's connection`)
      hal.respond(inv, 486, 'Busy Here', { toTag: `hal${i}` })
      const final = await app1.next(m => m.status >= 200 && m.cseq.method === 'INVITE' && m.get('call-id') === callId, `final answer ${i} at the app`)
      t.equal(final.status, 486, `INVITE ${i}: 486 back at the app`)
    }
    await e.proc.stop()
    await f.proc.stop()
  })
}

/** The Call-ID of a request text we built. */
class PeerMsgText {
  readonly callId: string
  constructor(text: string) { this.callId = /\r\nCall-ID: ([^\r\n]+)/.exec(text)![1]! }
}
