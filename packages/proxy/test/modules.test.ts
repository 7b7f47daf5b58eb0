// The core's module contract: declarations checked at load (errors name the modules involved),
// and every hook called where the core says it is, with a test module (the core never imports a
// real one).
import t from 'tap'
import { parseConfig, type FrozenConfig } from '@sipedge/config'
import { parseMessage } from '@sipedge/sip'
import {
  planModules, startProxy, ModuleError, Reply, TargetHop, DROP,
  type ModuleDeclaration, type ModuleInstance, type RequestView, type Destination, type Proxy, type NextHop,
} from '@sipedge/proxy'
import { SRC, log, proxyYaml, req, respond } from './fixtures/sip.js'

const YAML = proxyYaml(`  - { match: { method: REGISTER }, action: register }
  - { match: { method: MESSAGE }, action: { forward: "sip:127.0.0.9:5090" } }
  - { match: {}, action: lookup }
`)
const config = parseConfig(YAML) as FrozenConfig

function decl(name: string, o: Partial<ModuleDeclaration> = {}, create: ModuleDeclaration['create'] = () => ({})): ModuleDeclaration {
  return { name, configSection: null, requires: [], uses: [], actions: [], metrics: [], enabled: () => true, create, ...o }
}

t.test('declarations are checked at load, errors name both modules', async t => {
  const code = (f: () => unknown): string | undefined => { try { f() } catch (e) { return (e as ModuleError).code } return undefined }
  const ok = [decl('a', { actions: ['register', 'lookup'] })]
  t.equal(code(() => planModules(ok, config)), undefined)
  t.equal(code(() => planModules([...ok, decl('a')], config)), 'ERR_MODULE_DUPLICATE')
  t.equal(code(() => planModules([...ok, decl('b', { requires: ['nope'] })], config)), 'ERR_MODULE_UNKNOWN_DEPENDENCY')
  t.throws(() => planModules([...ok, decl('dialog', { requires: ['dispatcher'] }), decl('dispatcher', { enabled: () => false })], config),
    { code: 'ERR_MODULE_MISSING_DEPENDENCY', message: /"dialog" requires module "dispatcher"/ })
  t.equal(code(() => planModules([...ok, decl('x', { requires: ['y'] }), decl('y', { requires: ['x'] })], config)), 'ERR_MODULE_CYCLE')
  t.equal(code(() => planModules([...ok, decl('c', { actions: ['lookup'] })], config)), 'ERR_MODULE_ACTION_CONFLICT')
  t.equal(code(() => planModules([...ok, decl('c', { actions: ['forward'] })], config)), 'ERR_MODULE_ACTION_CONFLICT')
  t.throws(() => planModules([decl('a', { actions: ['register'] })], config), { code: 'ERR_MODULE_ACTION_MISSING', message: /"lookup", which no module implements/ })
  t.throws(() => planModules([decl('a', { actions: ['register'] }), decl('loc', { actions: ['lookup'], enabled: () => false })], config),
    { code: 'ERR_MODULE_ACTION_MISSING', message: /of module "loc", which this configuration does not enable/ })
  t.equal(code(() => planModules([...ok, decl('s', { configSection: 'no_such_section' })], config)), 'ERR_MODULE_CONFIG_SECTION')
  // Dependencies are created first, whatever the listed order.
  t.same(planModules([decl('late', { requires: ['early'] }), decl('early'), ...ok], config).map(d => d.name), ['early', 'late', 'a'])
  await t.rejects(startProxy({ config, workerIndex: 0, manualTimers: true, send() {}, now: () => 0, log },
    [decl('a', { actions: ['register', 'lookup'] }, () => ({ actions: {} }))]), { code: 'ERR_MODULE_ACTIONS_UNDECLARED' })
})

interface Sent { dest: Destination; text: string }

async function withModule(t: Tap.Test, instance: (slot: number) => ModuleInstance): Promise<{ p: Proxy; sent: Sent[] }> {
  const sent: Sent[] = []
  const p = await startProxy({
    config, workerIndex: 0, workers: 1, manualTimers: true, now: () => 0, log,
    send: (dest, data) => sent.push({ dest, text: Buffer.concat(Array.isArray(data) ? data : [data]).toString() }),
  }, [decl('test', { actions: ['register', 'lookup'] }, ctx => instance(ctx.slot))])
  t.teardown(() => p.close(0))
  return { p, sent }
}
declare namespace Tap { type Test = typeof t }

t.test('hooks: on request refuses before routing; takeover gets the transaction; targets plan the hops', async t => {
  const calls: string[] = []
  const hop = new TargetHop('sip:127.0.0.8:5080', { transport: 'udp', host: '127.0.0.8', port: 5080 })
  const { p, sent } = await withModule(t, slot => ({
    actions: {
      register: { kind: 'takeover', run: (_m, tx) => { calls.push('takeover'); tx.respond(299, 'Taken') } },
      lookup: { kind: 'targets', run: m => (m.method === 'INFO' ? new Reply(404, 'Nobody') : Promise.resolve({ hops: [hop], failover: null })) },
    },
    onRequest: m => (m.method === 'SUBSCRIBE' ? new Reply(488, 'Refused By Module', [['X-Why', 'test']]) : null),
    onForward: (v: RequestView) => { v.setState(slot, 'mine'); v.rrParams += ';x=1'; calls.push('forward ' + v.currentHop?.uri) },
    onResponse: (r, v, h, current) => calls.push(`response ${r.status} ${String(v.getState(slot))} ${h?.uri} ${current}`),
    onReply: (ed, r) => { ed.addHeader('X-Reply', String(r.status)) },
    onFinished: (_v, status) => calls.push('finished ' + status),
  }))
  p.receive(req('SUBSCRIBE'), SRC)
  t.match(sent.pop()!.text, /^SIP\/2\.0 488 Refused By Module[\s\S]*X-Why: test/)
  p.receive(req('REGISTER', { uri: 'sip:example.com' }), SRC)
  t.match(sent.pop()!.text, /^SIP\/2\.0 299 Taken/)
  p.receive(req('INFO'), SRC)
  t.match(sent.pop()!.text, /^SIP\/2\.0 404 Nobody/)
  p.receive(req('INVITE'), SRC)
  await new Promise(r => setImmediate(r))
  const fwd = sent.find(s => s.text.startsWith('INVITE'))!
  t.equal(fwd.dest.address, '127.0.0.8')
  t.match(fwd.text, /Record-Route: <sip:127\.0\.0\.1:5060;lr;x=1>/, 'modules add Record-Route parameters')
  p.receive(respond(fwd.text, 200), { ...SRC, address: '127.0.0.8', port: 5080 })
  const up = sent.find(s => s.text.startsWith('SIP/2.0 200'))!
  t.match(up.text, /X-Reply: 200/, 'on reply edits the response to the UA')
  t.same(calls, ['finished 488', 'takeover', 'finished 404', 'forward sip:127.0.0.8:5080', 'response 200 mine sip:127.0.0.8:5080 true', 'finished 200'])
})

t.test('hooks: in-dialog requests through our Route go where a module says, or are refused', async t => {
  const sticky: NextHop = new TargetHop('sip:127.0.0.6:5070', { transport: 'udp', host: '127.0.0.6', port: 5070 })
  const { p, sent } = await withModule(t, () => ({
    actions: { register: { kind: 'takeover', run() {} }, lookup: { kind: 'targets', run: () => new Reply(404, 'x') } },
    onDialogRequest: (m, info) => {
      t.equal(info.ours, 1)
      return m.method === 'BYE' ? new Reply(403, 'Forged') : m.method === 'INFO' ? sticky : null
    },
  }))
  const route = '<sip:127.0.0.1:5060;lr>'
  p.receive(req('BYE', { toTag: 'x', route, uri: 'sip:bob@127.0.0.5:5000' }), SRC)
  t.match(sent.pop()!.text, /^SIP\/2\.0 403 Forged/)
  p.receive(req('INFO', { toTag: 'x', route, uri: 'sip:bob@127.0.0.5:5000' }), SRC)
  t.equal(sent.pop()!.dest.address, '127.0.0.6', 'the module named the hop')
  p.receive(req('UPDATE', { toTag: 'x', route, uri: 'sip:bob@127.0.0.5:5000' }), SRC)
  const u = sent.pop()!
  t.equal(u.dest.address, '127.0.0.5', 'no decision: the Request-URI')
  t.notMatch(u.text, /^Route:/m, 'our Route removed')
  p.receive(req('ACK', { toTag: 'x', route, uri: 'sip:bob@127.0.0.5:5000' }), SRC)
  const ack = sent.pop()!
  t.equal(ack.dest.address, '127.0.0.5', 'an ACK (for a 2xx: stateless) the modules leave alone follows the Request-URI')
  t.match(ack.text, /^ACK sip:bob@127\.0\.0\.5:5000 /)
})

t.test('hooks: on restore rebuilds in-dialog requests and ACKs to a user URI of ours; forward and ACK edits', async t => {
  const seen: string[] = []
  const restore = (m: Parameters<NonNullable<ModuleInstance['onRestore']>>[0], edge: { user?: string | undefined }, info: { routes: readonly { uri: string; raw: string }[]; ours: number }): ReturnType<NonNullable<ModuleInstance['onRestore']>> => {
    if (edge.user === 'forged') return new Reply(403, 'Bad Edge')
    if (edge.user !== 'edge') return null
    const text = m.buf.subarray(m.startLineStart, m.end).toString('latin1').replace(/^(\w+) \S+/, '$1 sip:bob@127.0.0.5:5000').replace(/\r\nRoute: [^\r]*/, '')
    return {
      req: parseMessage(Buffer.from(text, 'latin1')),
      target: new TargetHop('sip:bob@127.0.0.5:5000', { transport: 'udp', host: '127.0.0.5', port: 5000 }),
      routes: info.routes.map((r, i) => (i < info.ours ? { uri: r.uri + ';p=1', raw: r.raw } : r)),
    }
  }
  const { p, sent } = await withModule(t, () => ({
    actions: { register: { kind: 'takeover', run() {} }, lookup: { kind: 'targets', run: () => new Reply(404, 'x') } },
    onRestore: restore,
    onDialogRequest: (m, info) => { seen.push(`dialog ${m.uri} ${info.routes[0]?.uri}`); return null },
    onForward: (_v, ed) => { ed.addHeader('X-Fwd', '1') },
    onForwardAck: (ed, ack) => { ed.addHeader('X-Ack', ack.uri) },
  }))
  const route = '<sip:127.0.0.1:5060;lr>'
  p.receive(req('BYE', { toTag: 'x', route, uri: 'sip:edge@127.0.0.1:5060' }), SRC)
  const bye = sent.pop()!
  t.equal(bye.dest.address, '127.0.0.5', 'the restored target')
  t.match(bye.text, /^BYE sip:bob@127\.0\.0\.5:5000 SIP\/2\.0/, 'the restored request is forwarded')
  t.match(bye.text, /X-Fwd: 1/, 'on forward edits the forwarded copy')
  t.same(seen, ['dialog sip:bob@127.0.0.5:5000 sip:127.0.0.1:5060;lr;p=1'], 'dialog hooks see the restored request and the module\'s Route values')
  p.receive(req('INFO', { toTag: 'x', uri: 'sip:edge@127.0.0.1:5060' }), SRC)
  t.equal(sent.pop()!.dest.address, '127.0.0.5', 'no Route of ours: the edge URI alone routes')
  t.equal(seen.length, 1, 'and the dialog hooks are not asked')
  p.receive(req('UPDATE', { toTag: 'x', route, uri: 'sip:forged@127.0.0.1:5060' }), SRC)
  t.match(sent.pop()!.text, /^SIP\/2\.0 403 Bad Edge/)
  p.receive(req('ACK', { toTag: 'x', uri: 'sip:edge@127.0.0.1:5060' }), SRC)
  const ack = sent.pop()!
  t.equal(ack.dest.address, '127.0.0.5')
  t.match(ack.text, /^ACK sip:bob@127\.0\.0\.5:5000 [\s\S]*X-Ack: sip:bob@127\.0\.0\.5:5000/, 'the ACK is restored, on forward ACK edits it')
  const before = p.counters.moduleRefused
  p.receive(req('ACK', { toTag: 'x', route, uri: 'sip:forged@127.0.0.1:5060' }), SRC)
  t.equal(sent.length, 0, 'a refused ACK is dropped')
  t.equal(p.counters.moduleRefused, before + 1)
})

t.test('hooks: singleRecordRoute keeps only the entry facing the next hop', async t => {
  const two = parseConfig(YAML.replace('listen: [udp:127.0.0.1:5060]', 'listen: [udp:127.0.0.1:5060, tcp:127.0.0.2:5070]')) as FrozenConfig
  const sent: Sent[] = []
  const hop = new TargetHop('sip:127.0.0.8:5080;transport=tcp', { transport: 'tcp', host: '127.0.0.8', port: 5080 })
  const mk = (single: boolean): Promise<Proxy> => startProxy({
    config: two, workerIndex: 0, workers: 1, manualTimers: true, now: () => 0, log,
    send: (dest, data) => sent.push({ dest, text: Buffer.concat(Array.isArray(data) ? data : [data]).toString() }),
  }, [decl('test', { actions: ['register', 'lookup'] }, () => ({
    actions: { register: { kind: 'takeover', run() {} }, lookup: { kind: 'targets', run: () => ({ hops: [hop], failover: null }) } },
    onForward: (v: RequestView) => { t.equal(v.outListener?.transport, 'tcp'); t.equal(v.inListener?.transport, 'udp'); if (single) v.singleRecordRoute = true },
  }))])
  for (const single of [false, true]) {
    const p = await mk(single)
    t.teardown(() => p.close(0))
    p.receive(req('INVITE'), SRC)
    const rr = sent.find(s => s.text.startsWith('INVITE'))!.text.split('\r\n').filter(l => l.startsWith('Record-Route:'))
    t.same(rr, single ? ['Record-Route: <sip:127.0.0.2:5070;transport=tcp;lr>'] : ['Record-Route: <sip:127.0.0.2:5070;transport=tcp;lr>', 'Record-Route: <sip:127.0.0.1:5060;lr>'])
    sent.length = 0
  }
})

t.test('control, query, config and close reach the modules', async t => {
  const seen: string[] = []
  const { p } = await withModule(t, () => ({
    actions: { register: { kind: 'takeover', run() {} }, lookup: { kind: 'targets', run: () => new Reply(404, 'x') } },
    onControl: m => { seen.push('control ' + m.type) },
    onQuery: w => (w === 'mine' ? { answer: 42 } : undefined),
    applyConfig: () => { seen.push('config') },
    stats: () => ({ test: { n: 1 } }),
    close: () => { seen.push('close') },
  }))
  p.onControl({ type: 'ping' })
  p.onControl({ type: 'config', config })
  t.same(p.query('mine', null), { answer: 42 })
  t.equal(p.query('other', null), undefined)
  t.same(p.stats()['test'], { n: 1 })
  await p.close(0)
  t.same(seen, ['control ping', 'config', 'close'])
})

t.test('on arrival: DROP is silent, a Reply is stateless, both before any transaction', async t => {
  const { p, sent } = await withModule(t, () => ({
    actions: { register: { kind: 'takeover', run() {} }, lookup: { kind: 'targets', run: () => new Reply(404, 'x') } },
    onArrival: m => (m.method === 'OPTIONS' ? DROP : m.method === 'INFO' ? Promise.resolve(new Reply(407, 'Challenge')) : null),
  }))
  p.receive(req('OPTIONS', { uri: 'sip:127.0.0.1:5060' }), SRC)
  t.equal(sent.length, 0, 'dropped')
  p.receive(req('INFO'), SRC)
  await new Promise(r => setImmediate(r))
  t.match(sent.pop()!.text, /^SIP\/2\.0 407 Challenge/)
  t.equal(p.layer.stats().active.total, 0, 'no server transaction for either')
  t.equal(p.counters.arrivalDropped, 1)
  t.equal(p.counters.arrivalReplies, 1)
})

t.test('monotonicNow: the transaction timers sleep until due (60 s cap), else they check every second', async t => {
  const mk = (monotonicNow?: boolean): Promise<Proxy> => startProxy({
    config, workerIndex: 0, workers: 1, now: () => performance.timeOrigin + performance.now(), log, send() {},
    ...(monotonicNow !== undefined ? { monotonicNow } : {}),
  }, [decl('test', { actions: ['register', 'lookup'] }, () => ({
    actions: { register: { kind: 'takeover', run() {} }, lookup: { kind: 'targets', run: () => ({ hops: [], failover: null }) } },
  }))])
  const mono = await mk(true)
  const other = await mk()
  t.teardown(async () => { await mono.close(0); await other.close(0) })
  t.equal(mono.layer.maxSleepMs, 60_000)
  t.equal(other.layer.maxSleepMs, 1_000)
})
