// Two real worker threads write their blocks of one SharedArrayBuffer; the primary sums them.
import { once } from 'node:events'
import { Worker } from 'node:worker_threads'
import t from 'tap'
import { CounterLayout, MetricsAggregator, METRICS_LAYOUT, SharedCounters, createMetricsRegistry, methodIndex, transportIndex } from '../dist/index.js'
import { parseExposition } from './fixtures/expo-parser.js'

const fixture = new URL('./fixtures/writer.mjs', import.meta.url)

async function runWriter(agg: MetricsAggregator, index: number, n: number): Promise<void> {
  const w = new Worker(fixture, { workerData: { ...agg.workerData(index), n } })
  const [msg] = await once(w, 'message')
  if (msg !== 'done') throw new Error('fixture failed')
  await w.terminate()
}

t.test('sums two writer threads at scrape time', async t => {
  const agg = MetricsAggregator.create({ workers: 2 })
  await Promise.all([runWriter(agg, 0, 1000), runWriter(agg, 1, 234)])
  const inv = METRICS_LAYOUT.offsets.reqIn + methodIndex('INVITE') * 5 + transportIndex('udp')
  t.equal(agg.counters.get(1, 'reqIn', inv - METRICS_LAYOUT.offsets.reqIn), 1000)
  t.equal(agg.counters.get(2, 'reqIn', inv - METRICS_LAYOUT.offsets.reqIn), 234)
  t.equal(agg.totals()[inv], 1234)
  const m = createMetricsRegistry({ aggregator: agg })
  const fams = parseExposition(await m.metrics())
  const get = (name: string, labels: Record<string, string>, sample = name) =>
    fams.get(name)?.samples.find(s => s.name === sample && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value
  t.equal(get('sipedge_requests_received_total', { method: 'INVITE', transport: 'udp' }), 1234)
  t.equal(get('sipedge_responses_total', { direction: 'received', code: '200' }), 1234)
  t.equal(get('sipedge_transaction_non_invite_seconds', { le: '0.01' }, 'sipedge_transaction_non_invite_seconds_bucket'), 1234)
  t.equal(get('sipedge_transaction_non_invite_seconds', {}, 'sipedge_transaction_non_invite_seconds_count'), 1234)
  t.equal(get('sipedge_transactions_active', { kind: 'server_invite' }), 2)
  t.equal(get('sipedge_thread_messages_total', { thread: 'worker0' }), 1000)
  t.equal(get('sipedge_thread_messages_total', { thread: 'worker1' }), 234)
  t.ok((get('sipedge_thread_heap_used_bytes', { thread: 'worker1' }) ?? 0) > 0, 'per-thread heap from the worker isolate')
  t.ok((get('sipedge_thread_heap_committed_bytes', { thread: 'worker1' }) ?? 0) >= (get('sipedge_thread_heap_used_bytes', { thread: 'worker1' }) ?? Infinity), 'per-thread committed heap, at least the heap used')

  // worker 0 dies and is replaced: its counters stay in the totals, its gauges go
  agg.retireWorker(0)
  await runWriter(agg, 0, 10)
  const fams2 = parseExposition(await createMetricsRegistry({ aggregator: agg }).metrics())
  const get2 = (name: string, labels: Record<string, string>) =>
    fams2.get(name)?.samples.find(s => Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value
  t.equal(get2('sipedge_requests_received_total', { method: 'INVITE' }), 1244, 'counters never go backwards')
  t.equal(get2('sipedge_transactions_active', { kind: 'server_invite' }), 2, 'old gauge dropped, new one counted')
})

t.test('SharedCounters: generic layout, fingerprint check, ranges', async t => {
  const layout = new CounterLayout({ a: { size: 2, kind: 'counter' }, g: { size: 1, kind: 'gauge' } })
  const sab = SharedCounters.allocate(layout, 3)
  const sc = new SharedCounters(layout, sab)
  t.equal(sc.blocks, 3)
  sc.view(0)[layout.offsets.a + 1] = 5
  sc.view(2)[layout.offsets.a + 1] = 7
  sc.view(2)[layout.offsets.g] = 9
  t.equal(sc.sum('a', 1), 12)
  sc.retire(2)
  t.equal(sc.sum('a', 1), 12)
  t.equal(sc.sum('g'), 0)
  t.throws(() => sc.view(3), RangeError)
  const other = new CounterLayout({ a: { size: 3, kind: 'counter' } })
  t.throws(() => new SharedCounters(other, sab), { code: 'ERR_METRICS_LAYOUT' })
  t.throws(() => new SharedCounters(layout, new SharedArrayBuffer(64)), { code: 'ERR_METRICS_LAYOUT' })
  t.throws(() => MetricsAggregator.create({ workers: 1 }).workerData(1), RangeError)
})
