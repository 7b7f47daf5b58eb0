// The worker pool over real worker threads and rings (fixtures/ring-worker.mjs echoes frames):
// sharding by hash, frames back with the sending worker named, transport-error reports, queries,
// control relay, crash replacement with back-off, drain, close.
import t, { type Test } from 'tap'
import { WorkerPool, Counters, createLogger, restartDelay, QueryError, FLAG_TRANSPORT_ERROR, TCP, type PoolOptions, type FrameMeta } from '@sipedge/transport'
import type { FrameView } from '@sipedge/ring'
import { until } from './fixtures/net.js'

const workerUrl = new URL('./fixtures/ring-worker.mjs', import.meta.url)
const meta = (port: number): FrameMeta => ({ transport: 1, socketId: 0, connId: 0, family: 4, address: '127.0.0.1', port, recvTime: 0, flags: 0 })

interface Got { worker: number; port: number; text: string }

function pool(t: Test, extra: Partial<PoolOptions> = {}): { p: WorkerPool; got: Got[]; counters: Counters; logs: string[] } {
  const got: Got[] = []
  const logs: string[] = []
  let from = -1
  let inBatch = false
  const counters = new Counters()
  const p = new WorkerPool({
    size: 2, workerUrl, handlerUrl: 'unused:', ringBytes: 64 * 1024, batchSize: 16,
    config: () => ({ generation: 1 }),
    sink: {
      beginBatch(w) { from = w; inBatch = true },
      onRingFrame: (m: FrameView, payload: Buffer) => {
        if (!inBatch) throw new Error('frame outside a batch')
        got.push({ worker: from, port: m.port, text: payload.toString('latin1') })
      },
      endBatch() { inBatch = false },
    },
    counters,
    log: createLogger({ level: 'debug', write: l => { logs.push(l) } }),
    stopped: () => false,
    ...extra,
  })
  t.teardown(() => p.close())
  return { p, got, counters, logs }
}

t.test('frames go to hash % N and come back named by the worker that sent them', async t => {
  const { p, got } = pool(t)
  await p.start()
  t.equal(p.alive, 2)
  for (let h = 0; h < 6; h++) t.ok(p.deliver(h, meta(6000 + h), Buffer.from(`frame ${h}`)))
  t.ok(p.deliver(-1, meta(6100), Buffer.from('negative hash')), 'a negative hash is taken as unsigned')
  t.ok(await until(() => got.length === 7))
  for (const g of got) {
    if (g.port === 6100) t.equal(g.worker, (-1 >>> 0) % 2)
    else t.equal(g.worker, (g.port - 6000) % 2, g.text)
  }
  const stats = p.ringStats()
  t.equal(stats.length, 4, 'in and out per worker')
  t.equal(stats.filter(s => s.direction === 'in').reduce((a, s) => a + s.pushed, 0), 7)
})

t.test('transportError: an empty frame with the flag on that worker\'s inbound ring', async t => {
  const { p, got } = pool(t)
  await p.start()
  const m: FrameMeta = { transport: TCP, socketId: 0, connId: 42, family: 4, address: '127.0.0.1', port: 5099, recvTime: 0, flags: FLAG_TRANSPORT_ERROR }
  t.ok(p.transportError(1, m))
  t.notOk(p.transportError(5, m), 'no such worker: not queued')
  t.ok(await until(() => got.length === 1))
  t.same(got[0], { worker: 1, port: 9, text: 'transport-error 2 127.0.0.1 5099 42 0' })
})

t.test('queries: one worker, all workers, errors with the worker\'s code, timeout, no worker', async t => {
  const { p } = pool(t, { queryTimeoutMs: 200, workerData: i => ({ extra: `x${i}` }) })
  await p.start()
  t.same(await p.query(1, 'who'), { worker: 1, extra: 'x1', config: { generation: 1 } })
  t.same(await p.queryAll('who'), [{ worker: 0, extra: 'x0', config: { generation: 1 } }, { worker: 1, extra: 'x1', config: { generation: 1 } }])
  await t.rejects(p.query(0, 'fail'), { code: 'ERR_FIXTURE' })
  const t0 = Date.now()
  await t.rejects(p.query(0, 'silent'), { code: 'ERR_QUERY_TIMEOUT' })
  t.ok(Date.now() - t0 < 1500, 'bounded by queryTimeoutMs')
  await t.rejects(p.query(7, 'who'), { code: 'ERR_QUERY_NO_WORKER' })
  const e = await p.query(0, 'fail').catch((x: unknown) => x)
  t.ok(e instanceof QueryError)
})

t.test('control: broadcast to all; a worker\'s broadcast is relayed to the others only', async t => {
  const { p, got } = pool(t)
  await p.start()
  p.broadcast({ type: 'note' })
  t.ok(await until(() => got.filter(g => g.text.startsWith('control note')).length === 2))
  await p.query(0, 'relay')
  t.ok(await until(() => got.some(g => g.text === 'control relayed 0')))
  t.same(got.filter(g => g.text.startsWith('control relayed')).map(g => g.worker), [1], 'only the other worker got it')
})

t.test('a crashed worker is replaced: open queries fail, frames queue in the new rings', async t => {
  const exits: Array<[number, number]> = []
  const { p, got, counters } = pool(t, { onWorkerExit: (i, code) => exits.push([i, code]) })
  await p.start()
  const pending = p.query(0, 'silent')
  await p.query(0, 'crash').catch(() => {})
  await t.rejects(pending, { code: 'ERR_QUERY_NO_WORKER' }, 'an open query fails when its worker exits')
  t.same(exits, [[0, 1]])
  t.equal(counters.workerCrashes, 1)
  // Frames for worker 0 while the replacement boots are kept, not lost.
  t.ok(p.deliver(0, meta(7000), Buffer.from('while replacing')))
  t.ok(await until(() => p.alive === 2, 5000), 'replaced')
  t.ok(await until(() => got.some(g => g.port === 7000 && g.worker === 0)), 'the replacement took the queued frame')
  t.equal(p.workers()[0]!.restarts, 1)
  t.same(await p.query(0, 'who'), { worker: 0, extra: null, config: { generation: 1 } })
})

t.test('back-off: a worker that dies right after starting is restarted after 100, 200, 400 ms', async t => {
  t.same([0, 1, 2, 3, 7, 8, 20].map(restartDelay), [0, 100, 200, 400, 5000, 5000, 5000])
  let starts = 0
  const exitTimes: number[] = []
  const { p, logs } = pool(t, {
    size: 1,
    // the first start is good; the next three die at once; the fifth stays
    workerData: () => ({ exitAtStart: starts++ >= 1 && starts <= 4 }),
    onWorkerExit: () => exitTimes.push(Date.now()),
  })
  await p.start()
  await p.query(0, 'exit', 3).catch(() => {})
  t.ok(await until(() => p.alive === 1 && exitTimes.length === 4, 5000), 'up again after the crash loop')
  const delays = logs.map(l => JSON.parse(l) as { msg: string; restartDelayMs?: number }).filter(l => l.msg.startsWith('worker exited')).map(l => l.restartDelayMs)
  t.same(delays, [100, 200, 400, 800], 'doubling delays (every crash came within 2 s of a start)')
  for (let i = 1; i < exitTimes.length; i++) t.ok(exitTimes[i]! - exitTimes[i - 1]! >= delays[i - 1]! - 10, `gap ${i} >= ${delays[i - 1]} ms`)
})

t.test('drain: workers finish their rings and say drained; the frames they produced are sent', async t => {
  const { p, got } = pool(t)
  await p.start()
  for (let h = 0; h < 40; h++) p.deliver(h, meta(8000 + h), Buffer.from(`d${h}`))
  await p.drain(3000)
  t.equal(got.filter(g => g.port >= 8000).length, 40, 'every frame in the rings was handled and handed on')
})

t.test('drain is bounded: a worker that does not answer makes it reject after the timeout', async t => {
  const { p } = pool(t)
  await p.start()
  await p.query(1, 'stall-drain')
  const t0 = Date.now()
  await t.rejects(p.drain(300), { code: 'ERR_TRANSPORT_TIMEOUT' })
  t.ok(Date.now() - t0 < 2000)
  await p.close()
  t.equal(p.alive, 0, 'close terminates every thread')
})

t.test('options: a pool needs workers', async t => {
  t.throws(() => pool(t, { size: 0 }), { code: 'ERR_TRANSPORT_OPTIONS' })
})
