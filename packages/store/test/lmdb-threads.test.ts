import t from 'tap'
import { join } from 'node:path'
import { Worker } from 'node:worker_threads'
import { openStores } from '@sipedge/store'
import { binding } from './fixtures/contract.js'

interface Report { id: number; fromMain: string[]; seenOther: number }

function runWorker(path: string, id: number, n: number): Promise<Report> {
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL('./fixtures/lmdb-worker.mjs', import.meta.url), { workerData: { path, id, n } })
    let report: Report | undefined
    w.on('message', m => (report = m as Report))
    w.on('error', reject)
    w.on('exit', code => (code === 0 && report ? resolve(report) : reject(new Error(`worker ${id} exited with ${code}`))))
  })
}

t.test('lmdb: one path shared by the main thread and two worker threads', async t => {
  const path = join(t.testdir({}), 'shared')
  const clock = { now: () => Date.now() }
  const main = await openStores(`lmdb:${path}`, { sweepIntervalMs: 0 })
  t.teardown(() => main.close())
  await main.location.put('sip:main@x', binding(clock, 'sip:main@h'))
  await main.location.replace('sip:ctr@x', [binding(clock, 'sip:ctr@h', 3600_000, { cseq: 0 })])

  const N = 200
  const [r1, r2] = await Promise.all([runWorker(path, 1, N), runWorker(path, 2, N)])
  for (const r of [r1, r2]) {
    t.same(r.fromMain, ['sip:main@h'], `worker ${r.id} reads what the main thread wrote`)
    t.equal(r.seenOther, 1, `worker ${r.id} reads what the other worker wrote`)
  }
  const shared = await main.location.get('sip:shared@x')
  t.equal(shared.length, 2 * N, 'no update lost between threads')
  t.equal(new Set(shared.map(b => b.contact)).size, 2 * N)
  t.equal((await main.location.get('sip:ctr@x'))[0]!.cseq, 2 * N, 'every cross-thread increment landed')
  t.same(await main.location.count(), { aors: 5, bindings: 2 * N + 4 }, 'counters in step across threads')
  t.equal(await main.counters.get('auth|s|192.0.2.7'), 2 * N, 'CounterStore increments from two threads: none lost')
})
