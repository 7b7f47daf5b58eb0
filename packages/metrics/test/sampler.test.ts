// WorkerMetrics sampling: on request (what sipedge runs: the primary asks on each scrape) or on an
// optional timer; event-loop delay is how late a request or the timer was served, so a blocked
// loop shows in the lag gauges without a 10 ms sampling timer (issue 17).
import t from 'tap'
import { MetricsAggregator, THREAD_SLOTS, METRICS_LAYOUT } from '../dist/index.js'

const G = METRICS_LAYOUT.offsets.threadGauges

t.test('the sampler writes the thread gauges, calls onSample on its own tick, and sees a blocked loop', async t => {
  const agg = MetricsAggregator.create({ workers: 1 })
  const w = agg.main()
  let calls = 0
  w.startSampler(20, () => { calls++ })
  t.teardown(() => w.stopSampler())
  t.ok(w.f[G + THREAD_SLOTS.sampledAt]! > 0, 'sampled at start')
  t.ok(w.f[G + THREAD_SLOTS.heapUsed]! > 0, 'heap used')
  t.ok(w.f[G + THREAD_SLOTS.heapCommitted]! >= w.f[G + THREAD_SLOTS.heapUsed]!, 'heap committed, at least the heap used')
  await new Promise(r => setTimeout(r, 100))
  t.ok(calls >= 1, `onSample called on the sampler's tick (${calls})`)
  // block the loop for 300 ms: the next tick is at least ~280 ms late
  const until = Date.now() + 300
  while (Date.now() < until) { /* blocked */ }
  const before = calls
  const deadline = Date.now() + 5_000
  while (calls === before && Date.now() < deadline) await new Promise(r => setTimeout(r, 5))
  t.ok(w.f[G + THREAD_SLOTS.lagMax]! >= 0.2, `lag max ${w.f[G + THREAD_SLOTS.lagMax]} s reflects the 300 ms block`)
  t.ok(w.f[G + THREAD_SLOTS.lagP99]! >= 0.2, 'p99 of a window that holds it too')
})

t.test('without an interval nothing is armed; a sample request records how late it was served', async t => {
  const agg = MetricsAggregator.create({ workers: 1 })
  const w = agg.main()
  let calls = 0
  w.startSampler(0, () => { calls++ })
  t.teardown(() => w.stopSampler())
  t.ok(w.f[G + THREAD_SLOTS.sampledAt]! > 0, 'sampled once at start, so the thread is reported')
  await new Promise(r => setTimeout(r, 50))
  t.equal(calls, 0, 'no timer: no sample between requests')
  const at = performance.timeOrigin + performance.now() - 250 // asked 250 ms ago
  w.requestSample(at)
  t.equal(calls, 1, 'the handler gauges are sampled with it')
  t.ok(w.f[G + THREAD_SLOTS.lagMax]! >= 0.25, `lag ${w.f[G + THREAD_SLOTS.lagMax]} s: the request waited 250 ms`)
})
