// OPTIONS probing and failover with sipp backends (ports 20100-20199): a stopped backend is
// marked down by the probes (interval 1 s, 2 failures) and calls go to the other one with no
// failed call, also while the outage is still being detected (Timer B / passive suspicion);
// when it is back, probes re-activate it and it gets calls again.
import t from 'tap'
import { startProxy } from '../dist/sipp.js'
import { until } from '@sipedge/tests'
import { startBackends, stopBackends, runUac, untilSeen, type Backend } from '../dist/dispatch.js'

const PROXY = '127.0.0.1:20100'
const BP = 20110
const config = `
workers: 2
listen: [udp:127.0.0.1:20100]
domains: [127.0.0.1]
timers: { t1: 100ms, t2: 1s, t4: 1s }
dialog: { mirror: false }
dispatcher:
  sets:
    apps:
      algorithm: round-robin
      probe: { interval: 1s, timeout: 400ms, failures_down: 2, successes_up: 2 }
      failover: { on_timeout: true, codes: [500, 503], max_attempts: 2 }
      destinations: ["sip:127.0.0.2:${BP}", "sip:127.0.0.3:${BP}"]
routes:
  - { match: { method: INVITE }, action: { dispatch: apps } }
`

const { engine } = await startProxy(config)
t.teardown(() => engine.stop())
const backends: Backend[] = await startBackends(['127.0.0.2', '127.0.0.3'], BP)
t.teardown(() => stopBackends(backends))
const [a, b] = backends as [Backend, Backend]

/** The state of `uri` in every worker's dispatcher (what the workers route by), via a query. */
async function states(uri: string): Promise<string[]> {
  try {
    const infos = await engine.query('all', 'dispatcher') as Array<{ sets: Array<{ name: string; destinations: Array<{ uri: string; state: string }> }> }>
    return infos.map(i => i.sets.find(s => s.name === 'apps')?.destinations.find(d => d.uri === uri)?.state ?? 'missing')
  } catch (err) {
    return [`query failed: ${(err as Error).message}`]
  }
}
/** Waits (bounded) until every worker has `uri` in `state`: the probes' verdict, not a guessed delay. */
async function untilState(t: Tap.Test, uri: string, state: string, why: string): Promise<void> {
  let last: string[] = []
  const ok = await until(async () => { last = await states(uri); return last.every(s => s === state) }, 20_000, 100)
  t.ok(ok, `${why}: ${uri} ${state} in every worker (last seen: ${last.join(', ')})`)
}
/** Requests the workers forwarded to `uri` so far (the dispatcher module's per-destination counter). */
async function sentTo(uri: string): Promise<number> {
  const all = await engine.query('all', 'stats') as Array<{ destinations?: Array<{ set: string; uri: string; sent: number }> }>
  return all.reduce((n, w) => n + (w.destinations ?? []).filter(d => d.set === 'apps' && d.uri === uri).reduce((m, d) => m + d.sent, 0), 0)
}
declare namespace Tap { type Test = typeof t }


t.test('both up: both get calls', async t => {
  // A backend that was slow to bind may have failed its first probes: start from both active.
  await untilState(t, a.uri, 'active', 'start')
  await untilState(t, b.uri, 'active', 'start')
  const r = await runUac({ proxy: PROXY, port: 20120, calls: 40, rate: 40 })
  t.equal(r.successful, 40, 'all calls', { log: r.log })
  await untilSeen(backends, ([x, y]) => x!.invites.length + y!.invites.length >= 40)
  t.ok(a.seen().invites.length >= 15 && b.seen().invites.length >= 15, `both used (${a.seen().invites.length}:${b.seen().invites.length})`)
})

t.test('backend stopped: calls fail over with no failed call, probes mark it down', async t => {
  await b.stop()
  const bBefore = b.seen().invites.length
  const aStart = a.seen().invites.length
  // Right away: the first calls towards it time out (Timer B) and fail over.
  const r1 = await runUac({ proxy: PROXY, port: 20121, calls: 20, rate: 20, limit: 50, timeoutS: 40 })
  t.equal(r1.failed, 0, 'no failed call during detection', { log: r1.log })
  t.equal(r1.successful, 20)
  await untilState(t, b.uri, 'inactive', 'failures_down probes')
  await untilSeen([a], ([x]) => x!.invites.length - aStart >= 20)
  const aBefore = a.seen().invites.length
  const sentToB = await sentTo(b.uri)
  const t0 = Date.now()
  const r2 = await runUac({ proxy: PROXY, port: 20122, calls: 40, rate: 40 })
  t.equal(r2.successful, 40, 'all calls once it is down', { log: r2.log })
  // Asked of the workers, not guessed from the run's duration (a call tried there first would
  // wait Timer B, 64*T1 = 6.4 s, but a loaded host can make a clean run slow too).
  t.equal(await sentTo(b.uri), sentToB, `no Timer B wait: the down backend is not tried (run took ${Date.now() - t0} ms)`)
  await untilSeen([a], ([x]) => x!.invites.length - aBefore >= 40)
  t.equal(a.seen().invites.length - aBefore, 40, 'everything to the live backend')
  t.equal(b.seen().invites.length, bBefore)
})

t.test('backend back: probes re-activate it', async t => {
  b.restart()
  await b.ready()
  await untilState(t, b.uri, 'active', 'successes_up probes')
  const aBefore = a.seen().invites.length
  const bBefore = b.seen().invites.length
  const r = await runUac({ proxy: PROXY, port: 20123, calls: 40, rate: 40 })
  t.equal(r.successful, 40, 'all calls', { log: r.log })
  await untilSeen(backends, ([x, y]) => x!.invites.length - aBefore + y!.invites.length - bBefore >= 40)
  t.ok(b.seen().invites.length - bBefore >= 15, `re-activated backend gets calls again (${b.seen().invites.length - bBefore})`)
})
