// Dialog tracking and stickiness on real message bytes (injected send and clock): table entries,
// the signed Record-Route parameter after a loss of the table, forged parameters, counts for
// least-dialogs, BYE on timeout, the store mirror, queries and control messages.
import t from 'tap'
import { parseConfig, type FrozenConfig } from '@sipedge/config'
import type { Dialog, DialogStore } from '@sipedge/store'
import type { Destination, Proxy } from '@sipedge/proxy'
import { tokenOf, DialogTokens, type DialogModule } from '../dist/index.js'
import { proxyWith } from './fixtures/proxy.js'

process.env['SIPEDGE_TEST_HOOKS'] = '1' // dialog-admin clear

const YAML = `
workers: 1
listen: [udp:127.0.0.1:5060]
timers: { t1: 100ms, t2: 1s, t4: 1s }
dialog: { timeout: 1m, send_bye_on_timeout: true, secret: "0123456789abcdef-test", mirror: false }
dispatcher:
  sets:
    apps:
      algorithm: least-dialogs
      probe: false
      destinations: [sip:10.0.0.1:5070, sip:10.0.0.2:5070]
routes:
  - match: {}
    action: { dispatch: apps }
`
const config = parseConfig(YAML) as FrozenConfig
const CALLER = { transport: 'udp' as const, address: '192.0.2.7', port: 5062, socketId: 0, recvTime: 0 }

interface Sent { dest: Destination; text: string }
async function harness(t: Tap.Test, cfg = config): Promise<{ p: Proxy; d: DialogModule; sent: Sent[]; clock: { now: number } }> {
  const sent: Sent[] = []
  const clock = { now: 1_700_000_000_000 }
  const p = await proxyWith({
    config: cfg, workerIndex: 0, workers: 1, manualTimers: true,
    send: (dest, data) => sent.push({ dest, text: Buffer.concat(Array.isArray(data) ? data : [data]).toString() }),
    now: () => clock.now, log: { debug() {}, info() {}, warn() {}, error() {} },
  })
  const d = p.module<DialogModule>('dialog')!
  t.teardown(() => p.close(0))
  return { p, d, sent, clock }
}
declare namespace Tap { type Test = typeof t }

let branchSeq = 0
function request(o: { method: string; uri: string; callId: string; fromTag: string; toTag?: string; route?: string; cseq?: number; from?: string; to?: string; extra?: string[] }): Buffer {
  return Buffer.from([
    `${o.method} ${o.uri} SIP/2.0`,
    `Via: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK-u${++branchSeq};rport`,
    'Max-Forwards: 70',
    ...(o.route !== undefined ? [`Route: ${o.route}`] : []),
    `From: <sip:${o.from ?? 'alice'}@example.com>;tag=${o.fromTag}`,
    `To: <sip:${o.to ?? 'bob'}@example.com>${o.toTag !== undefined ? ';tag=' + o.toTag : ''}`,
    `Call-ID: ${o.callId}`,
    `CSeq: ${o.cseq ?? 1} ${o.method}`,
    'Contact: <sip:alice@192.0.2.7:5062>',
    ...(o.extra ?? []),
    'Content-Length: 0', '', ''].join('\r\n'))
}

/** A response of the backend to a forwarded request (all its Vias, Record-Routes copied). */
function answer(fwd: string, status: number, toTag: string, contact = 'sip:app@10.9.9.9:5070'): Buffer {
  const lines = fwd.split('\r\n')
  const keep = lines.filter(l => /^(Via|Record-Route|From|Call-ID|CSeq):/i.test(l))
  const to = lines.find(l => l.startsWith('To:'))!
  return Buffer.from([`SIP/2.0 ${status} X`, ...keep, to + ';tag=' + toTag, `Contact: <${contact}>`, 'Content-Length: 0', '', ''].join('\r\n'))
}

const isReq = (m: string) => (s: Sent) => s.text.startsWith(m + ' ')
const status = (s: Sent): number => Number(/^SIP\/2\.0 (\d{3})/.exec(s.text)?.[1] ?? 0)

/** INVITE -> forwarded -> 200: returns the Route value the caller would use and the destination. */
function call(p: Proxy, sent: Sent[], callId: string, fromTag = 'ft-' + callId.split('@')[0]): { route: string; dest: Destination; fwd: string } {
  sent.length = 0
  p.receive(request({ method: 'INVITE', uri: 'sip:bob@example.com', callId, fromTag }), CALLER)
  const fwd = sent.find(isReq('INVITE'))
  if (fwd === undefined) throw new Error('INVITE not forwarded: ' + JSON.stringify(sent.map(s => s.text.split('\r\n')[0])) + JSON.stringify(p.counters))
  const rr = /Record-Route: (<[^>]+>)/.exec(fwd.text)![1]!
  p.receive(answer(fwd.text, 200, 'tt-' + callId.split('@')[0]), { transport: 'udp', address: fwd.dest.address, port: fwd.dest.port, socketId: 0, recvTime: 0 })
  return { route: rr, dest: fwd.dest, fwd: fwd.text }
}

t.test('INVITE dialog: early -> confirmed, in-dialog requests sticky to the destination, BYE ends it', async t => {
  const { p, sent, d } = await harness(t)
  const c = call(p, sent, 'd1@test')
  t.ok(sent.some(s => status(s) === 200), '200 relayed to the caller')
  const tok = tokenOf(c.route.slice(1, -1))
  t.ok(tok, 'Record-Route carries the signed parameter')
  const dl = p.query('dialog', { callId: 'd1@test' }) as { state: string; destination: string; toTag: string; set: string }
  t.match(dl, { state: 'confirmed', destination: `sip:${c.dest.address}:5070`, toTag: 'tt-d1', set: 'apps' })
  const counts = p.query('dialogs', null) as { total: number; byState: { confirmed: number }; sets: Record<string, { total: number; destinations: Record<string, number> }> }
  t.equal(counts.total, 1)
  t.equal(counts.byState.confirmed, 1)
  t.equal(counts.sets['apps']!.destinations[`sip:${c.dest.address}:5070`], 1)
  const disp = p.query('dispatcher', null) as { sets: Array<{ destinations: Array<{ uri: string; dialogs: number }> }> }
  t.equal(disp.sets[0]!.destinations.find(d => d.uri === `sip:${c.dest.address}:5070`)!.dialogs, 1, 'per-destination count for least-dialogs')

  // ACK and re-INVITE from the caller: to the destination, although the R-URI (the backend's
  // Contact) names another host.
  for (const method of ['ACK', 'INFO']) {
    sent.length = 0
    p.receive(request({ method, uri: 'sip:app@10.9.9.9:5070', callId: 'd1@test', fromTag: 'ft-d1', toTag: 'tt-d1', route: c.route, cseq: 2 }), CALLER)
    const f = sent.find(isReq(method))
    t.ok(f, `${method} forwarded`)
    t.equal(f!.dest.address, c.dest.address, `${method} to the dialog's destination`)
    t.match(f!.text, new RegExp(`^${method} sip:app@10\\.9\\.9\\.9:5070 `), 'Request-URI kept')
    t.notMatch(f!.text, /\r\nRoute:/, 'our Route removed')
  }
  t.ok(d.counters.sticky >= 2)

  // A request from the backend towards the caller follows its Request-URI.
  sent.length = 0
  p.receive(request({ method: 'INFO', uri: 'sip:alice@192.0.2.7:5062', callId: 'd1@test', fromTag: 'tt-d1', toTag: 'ft-d1', route: c.route, from: 'bob', to: 'alice' }),
    { transport: 'udp', address: c.dest.address, port: 5070, socketId: 0, recvTime: 0 })
  const back = sent.find(isReq('INFO'))!
  t.equal(back.dest.address, '192.0.2.7', 'callee -> caller by Request-URI')

  sent.length = 0
  p.receive(request({ method: 'BYE', uri: 'sip:app@10.9.9.9:5070', callId: 'd1@test', fromTag: 'ft-d1', toTag: 'tt-d1', route: c.route, cseq: 3 }), CALLER)
  t.equal(sent.find(isReq('BYE'))!.dest.address, c.dest.address, 'BYE to the destination')
  t.equal((p.query('dialogs', null) as { total: number }).total, 0, 'BYE ended the dialog')
  t.equal(p.query('dialog', { callId: 'd1@test' }), null)
})

t.test('least-dialogs spreads new calls by open dialogs; a failed INVITE opens none', async t => {
  const { p, sent, d } = await harness(t)
  const a = call(p, sent, 'l1@test')
  const b = call(p, sent, 'l2@test')
  t.not(a.dest.address, b.dest.address, 'second call to the other destination')
  // A 486 for the third: no dialog is left behind.
  sent.length = 0
  p.receive(request({ method: 'INVITE', uri: 'sip:bob@example.com', callId: 'l3@test', fromTag: 'f3' }), CALLER)
  const fwd = sent.find(isReq('INVITE'))!
  p.receive(answer(fwd.text, 486, 'tt3'), { transport: 'udp', address: fwd.dest.address, port: 5070, socketId: 0, recvTime: 0 })
  const counts = p.query('dialogs', null) as { total: number; counters: { failed: number } }
  t.equal(counts.total, 2)
  t.equal(counts.counters.failed, 1)
})

t.test('table lost: the signed Record-Route parameter still routes; forged ones get 403', async t => {
  const { p, sent, d } = await harness(t)
  const c = call(p, sent, 'r1@test')
  p.onControl({ type: 'dialog-admin', action: 'clear' })
  t.equal((p.query('dialogs', null) as { total: number }).total, 0, 'table cleared')
  sent.length = 0
  p.receive(request({ method: 'INFO', uri: 'sip:app@10.9.9.9:5070', callId: 'r1@test', fromTag: 'ft-r1', toTag: 'tt-r1', route: c.route, cseq: 2 }), CALLER)
  const f = sent.find(isReq('INFO'))!
  t.equal(f.dest.address, c.dest.address, 'routed by the parameter')
  t.equal(d.counters.byToken, 1)
  t.match(p.query('dialog', { callId: 'r1@test' }), { recovered: true, state: 'confirmed', destination: `sip:${c.dest.address}:5070` }, 'record rebuilt')

  // From the callee side too (the caller's tag is then the To-tag): verified, routed by R-URI.
  sent.length = 0
  p.onControl({ type: 'dialog-admin', action: 'clear' })
  p.receive(request({ method: 'INFO', uri: 'sip:alice@192.0.2.7:5062', callId: 'r1@test', fromTag: 'tt-r1', toTag: 'ft-r1', route: c.route, from: 'bob', to: 'alice' }),
    { transport: 'udp', address: c.dest.address, port: 5070, socketId: 0, recvTime: 0 })
  t.equal(sent.find(isReq('INFO'))!.dest.address, '192.0.2.7')

  const forge = (route: string, callId = 'r1@test'): number => {
    sent.length = 0
    p.receive(request({ method: 'INFO', uri: 'sip:app@10.9.9.9:5070', callId, fromTag: 'ft-r1', toTag: 'tt-r1', route }), CALLER)
    t.notOk(sent.some(isReq('INFO')), 'not forwarded')
    return status(sent[0]!)
  }
  const tok = tokenOf(c.route.slice(1, -1))!
  const [dest, mac] = tok.split('.') as [string, string]
  const other = Buffer.from('apps sip:10.66.66.66:5070').toString('base64url')
  t.equal(forge(c.route.replace(dest, other)), 403, 'another destination with the old MAC')
  t.equal(forge(c.route.replace(mac, mac.slice(0, -2) + (mac.endsWith('AA') ? 'BB' : 'AA'))), 403, 'altered MAC')
  t.equal(forge(c.route, 'other-call@test'), 403, 'MAC of another dialog')
  t.equal(forge(c.route.replace(tok, 'garbage')), 403, 'malformed')
  const attacker = new DialogTokens('attacker-chosen-secret-123').sign('apps', 'sip:10.66.66.66:5070', 'r1@test', 'ft-r1')
  t.equal(forge(c.route.replace(tok, attacker)), 403, 'signed with another key')
  t.equal(d.counters.tokenInvalid, 5)
  // A forged ACK is dropped (no response to an ACK).
  sent.length = 0
  p.receive(request({ method: 'ACK', uri: 'sip:app@10.9.9.9:5070', callId: 'r1@test', fromTag: 'ft-r1', toTag: 'tt-r1', route: c.route.replace(tok, 'garbage') }), CALLER)
  t.equal(sent.length, 0)
  t.equal(d.counters.tokenInvalid, 6)
})

t.test('dialog timeout: BYE to both sides when send_bye_on_timeout', async t => {
  const { p, sent, clock, d } = await harness(t)
  const c = call(p, sent, 'to1@test')
  sent.length = 0
  clock.now += 30_000
  d.tracker.tick(clock.now)
  t.equal(sent.length, 0, 'not yet')
  // activity moves the expiry
  p.receive(request({ method: 'INFO', uri: 'sip:app@10.9.9.9:5070', callId: 'to1@test', fromTag: 'ft-to1', toTag: 'tt-to1', route: c.route, cseq: 5 }), CALLER)
  clock.now += 45_000
  d.tracker.tick(clock.now)
  t.notOk(sent.some(isReq('BYE')), 'touched dialog lives on')
  sent.length = 0
  clock.now += 20_000
  d.tracker.tick(clock.now)
  const byes = sent.filter(isReq('BYE'))
  t.equal(byes.length, 2, 'two BYEs')
  const toCallee = byes.find(b => b.dest.address === c.dest.address)!
  const toCaller = byes.find(b => b.dest.address === '192.0.2.7')!
  t.match(toCallee.text, /^BYE sip:app@10\.9\.9\.9:5070 SIP\/2\.0/)
  t.match(toCallee.text, /From: <sip:alice@example.com>;tag=ft-to1/)
  t.match(toCallee.text, /To: <sip:bob@example.com>;tag=tt-to1/)
  t.match(toCallee.text, /CSeq: 6 BYE/, 'caller CSeq + 1')
  t.match(toCaller.text, /^BYE sip:alice@192\.0\.2\.7:5062 SIP\/2\.0/)
  t.match(toCaller.text, /From: <sip:bob@example.com>;tag=tt-to1/)
  t.match(toCaller.text, /Reason: SIP;cause=408/)
  t.equal(toCaller.dest.port, 5062)
  t.equal((p.query('dialogs', null) as { total: number; counters: { timedOut: number } }).counters.timedOut, 1)
  t.equal(d.counters.byeOnTimeout, 2)
})

t.test('subscription dialogs: SUBSCRIBE 202 confirms, NOTIFY terminated ends', async t => {
  const { p, sent, d } = await harness(t)
  sent.length = 0
  p.receive(request({ method: 'SUBSCRIBE', uri: 'sip:bob@example.com', callId: 's1@test', fromTag: 'fs', extra: ['Event: presence', 'Expires: 600'] }), CALLER)
  const fwd = sent.find(isReq('SUBSCRIBE'))!
  const rr = /Record-Route: (<[^>]+>)/.exec(fwd.text)![1]!
  p.receive(answer(fwd.text, 202, 'ts'), { transport: 'udp', address: fwd.dest.address, port: 5070, socketId: 0, recvTime: 0 })
  t.match(p.query('dialog', { callId: 's1@test' }), { kind: 'subscribe', state: 'confirmed' })
  p.receive(request({ method: 'NOTIFY', uri: 'sip:alice@192.0.2.7:5062', callId: 's1@test', fromTag: 'ts', toTag: 'fs', route: rr, from: 'bob', to: 'alice', extra: ['Event: presence', 'Subscription-State: active;expires=600'] }),
    { transport: 'udp', address: fwd.dest.address, port: 5070, socketId: 0, recvTime: 0 })
  t.equal((p.query('dialogs', null) as { total: number }).total, 1)
  p.receive(request({ method: 'NOTIFY', uri: 'sip:alice@192.0.2.7:5062', callId: 's1@test', fromTag: 'ts', toTag: 'fs', route: rr, from: 'bob', to: 'alice', cseq: 2, extra: ['Event: presence', 'Subscription-State: terminated;reason=timeout'] }),
    { transport: 'udp', address: fwd.dest.address, port: 5070, socketId: 0, recvTime: 0 })
  t.equal((p.query('dialogs', null) as { total: number }).total, 0, 'terminated')
})

t.test('store mirror: put on confirm, remove at the end, never awaited; recovery reads it', async t => {
  const { p, sent, d } = await harness(t)
  const ops: string[] = []
  const data = new Map<string, Dialog>()
  const store: DialogStore = {
    async get(id) { ops.push('get'); return data.get(id) ?? null },
    async put(d) { ops.push('put ' + d.state); data.set(d.id, d) },
    async remove(id) { ops.push('remove'); return data.delete(id) },
    async touch() { ops.push('touch'); return true },
    async countBySet() { return 0 }, async countByDestination() { return 0 }, async count() { return data.size },
    async sweepExpired() { return 0 }, onExpired() { return () => {} },
  }
  d.tracker.attachStore(store)
  const c = call(p, sent, 'm1@test')
  t.same(ops, ['put confirmed'])
  const stored = [...data.values()][0]!
  t.match(stored, { setName: 'apps', destination: `sip:${c.dest.address}:5070`, state: 'confirmed' })
  p.onControl({ type: 'dialog-admin', action: 'clear' })
  p.receive(request({ method: 'INFO', uri: 'sip:app@10.9.9.9:5070', callId: 'm1@test', fromTag: 'ft-m1', toTag: 'tt-m1', route: c.route, cseq: 2 }), CALLER)
  await new Promise(r => setImmediate(r))
  t.same(ops, ['put confirmed', 'get'])
  t.equal((p.query('dialogs', null) as { counters: { restored: number } }).counters.restored, 1, 'creation time restored from the store')
  p.receive(request({ method: 'BYE', uri: 'sip:app@10.9.9.9:5070', callId: 'm1@test', fromTag: 'ft-m1', toTag: 'tt-m1', route: c.route, cseq: 3 }), CALLER)
  await new Promise(r => setImmediate(r))
  t.same(ops, ['put confirmed', 'get', 'remove'])
  t.equal(data.size, 0)
})

t.test('control: dispatcher-admin drain keeps dialogs, no new ones; reload resets to the file', async t => {
  const { p, sent, d } = await harness(t)
  const c = call(p, sent, 'a1@test')
  const uri = `sip:${c.dest.address}:5070`
  p.onControl({ type: 'dispatcher-admin', set: 'apps', uri, action: 'drain' })
  for (let i = 0; i < 4; i++) t.not(call(p, sent, `a-new${i}@test`).dest.address, c.dest.address, 'no new call to the draining one')
  sent.length = 0
  p.receive(request({ method: 'BYE', uri: 'sip:app@10.9.9.9:5070', callId: 'a1@test', fromTag: 'ft-a1', toTag: 'tt-a1', route: c.route, cseq: 2 }), CALLER)
  t.equal(sent.find(isReq('BYE'))!.dest.address, c.dest.address, 'existing dialog continues on the draining destination')
  const snap = p.query('dispatcher', null) as { sets: Array<{ destinations: Array<{ uri: string; state: string; adminState: string | null; dialogs: number }> }> }
  t.match(snap.sets[0]!.destinations.find(d => d.uri === uri), { state: 'draining', adminState: 'draining', dialogs: 0 })
  p.applyConfig(config)
  const after = p.query('dispatcher', null) as typeof snap
  t.match(after.sets[0]!.destinations.find(d => d.uri === uri), { state: 'active', adminState: null }, 'file wins on reload')
  const other = after.sets[0]!.destinations.find(d => d.uri !== uri)!
  t.equal(other.dialogs, 4, 'dialog counts carried over to the new dispatcher')
  t.throws(() => p.query('dialog', {}), { code: 'ERR_QUERY_BAD_ARGS' })
  t.equal(p.query('nope', null), undefined)
})

t.test('dialog.enabled false: no table, still sticky by the parameter', async t => {
  const cfg = parseConfig(YAML.replace('mirror: false', 'mirror: false, enabled: false')) as FrozenConfig
  const { p, sent, d } = await harness(t, cfg)
  const c = call(p, sent, 'n1@test')
  t.equal((p.query('dialogs', null) as { total: number }).total, 0)
  sent.length = 0
  p.receive(request({ method: 'INFO', uri: 'sip:app@10.9.9.9:5070', callId: 'n1@test', fromTag: 'ft-n1', toTag: 'tt-n1', route: c.route, cseq: 2 }), CALLER)
  t.equal(sent.find(isReq('INFO'))!.dest.address, c.dest.address)
  t.equal((p.query('dialogs', null) as { total: number }).total, 0, 'nothing inserted')
})
