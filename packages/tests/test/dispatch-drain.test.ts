// Draining for maintenance with long calls (ports 20200-20299): the admin action
// `dispatcher-admin drain` (what POST /api/dispatcher/<set>/<uri>/drain sends) stops new calls to
// the backend while every call it already has ends with its BYE delivered there; then a config
// reload (SIGHUP path) with `state: draining` on the other backend: the file wins, the admin
// override ends.
import t from 'tap'
import { parseConfig, type FrozenConfig } from '@sipedge/config'
import { startProxy } from '../dist/sipp.js'
import { waitUntil } from '@sipedge/tests'
import { startBackends, stopBackends, startUac, runUac, untilSeen, type Backend } from '../dist/dispatch.js'

const PROXY = '127.0.0.1:20200'
const BP = 20210
const yaml = (stateA: string): string => `
workers: 2
listen: [udp:127.0.0.1:20200]
domains: [127.0.0.1]
dialog: { mirror: false }
dispatcher:
  sets:
    apps:
      algorithm: round-robin
      probe: false
      destinations: [{ uri: "sip:127.0.0.2:${BP}", state: ${stateA} }, "sip:127.0.0.3:${BP}"]
routes:
  - { match: { method: INVITE }, action: { dispatch: apps } }
`

const { engine } = await startProxy(yaml('active'))
t.teardown(() => engine.stop())
const backends: Backend[] = await startBackends(['127.0.0.2', '127.0.0.3'], BP)
t.teardown(() => stopBackends(backends))
const [a, b] = backends as [Backend, Backend]

/**
 * Resolves once every worker has handled the control messages sent before it: a query travels
 * the same MessagePort after them and is answered in order.
 */
async function appliedByWorkers(): Promise<void> {
  await engine.query('all', 'dispatcher')
}
/**
 * Requests the workers forwarded to `uri` so far (the dispatcher module's per-destination
 * counter: INVITEs and the in-dialog requests routed there, e.g. BYE; not ACK).
 */
async function sentTo(uri: string): Promise<number> {
  const all = await engine.query('all', 'stats') as Array<{ destinations?: Array<{ set: string; uri: string; sent: number }> }>
  return all.reduce((n, w) => n + (w.destinations ?? []).filter(d => d.set === 'apps' && d.uri === uri).reduce((m, d) => m + d.sent, 0), 0)
}

t.test('drain during a stream of long calls: no new calls, existing calls end there', async t => {
  const uac = startUac({ proxy: PROXY, port: 20220, calls: 40, rate: 10, limit: 100, holdMs: 3000, timeoutS: 40 })
  t.teardown(async () => { await uac.stop(); uac.cleanup() })
  // Drain once the backend has calls up (its log shows them), however slowly sipp got going.
  await waitUntil(() => b.seen().invites.length >= 4, '4 calls up at the backend to drain')
  engine.control({ type: 'dispatcher-admin', set: 'apps', uri: b.uri, action: 'drain' })
  // Once every worker has applied it, nothing new may be forwarded there. What was forwarded
  // before is counted by the workers themselves (requests sent to the destination: the INVITEs,
  // plus any in-dialog request already sent), so INVITEs still in flight to sipp are no guess.
  await appliedByWorkers()
  const atDrain = await sentTo(b.uri)
  const r = await uac.done
  t.equal(r.failed, 0, 'no failed call', { log: r.log })
  t.equal(r.successful, 40, 'all 40 calls completed')
  // every INVITE and BYE in the backends' logs (bounded wait for the files)
  await untilSeen(backends, ([x, y]) => x!.invites.length + y!.invites.length >= 40 &&
    [x!, y!].every(s => { const byes = new Set(s.byes); return s.invites.every(c => byes.has(c)) }))
  const sb = b.seen()
  const sa = a.seen()
  t.ok(sb.invites.length >= 4, `the drained backend had calls up (${sb.invites.length})`)
  t.ok(sb.invites.length <= atDrain, `no new calls after the drain (${sb.invites.length} calls there, ${atDrain} requests forwarded there before it took effect)`)
  t.equal(sa.invites.length + sb.invites.length, 40)
  const byesB = new Set(sb.byes)
  t.ok(sb.invites.every(c => byesB.has(c)), 'every call of the drained backend got its BYE there')
  const byesA = new Set(sa.byes)
  t.ok(sa.invites.every(c => byesA.has(c)), 'and the other backend too')
})

t.test('reload: the file state wins, the admin override ends', async t => {
  engine.updateConfig(parseConfig(yaml('draining')) as FrozenConfig)
  await appliedByWorkers()
  const a0 = a.seen().invites.length
  const b0 = b.seen().invites.length
  const r = await runUac({ proxy: PROXY, port: 20221, calls: 20, rate: 40 })
  t.equal(r.successful, 20, 'all calls', { log: r.log })
  await untilSeen(backends, ([x, y]) => x!.invites.length - a0 + y!.invites.length - b0 >= 20)
  t.equal(a.seen().invites.length - a0, 0, 'draining in the file: no new calls')
  t.equal(b.seen().invites.length - b0, 20, 'the previously drained backend is active again')
})
