// The GC after a burst (idle-collect.ts) on this isolate's real heap, with short windows: it
// collects once the thread has gone quiet after the heap grew, not while messages flow, not when
// the heap did not grow, and it arms no timer while asleep.
import t from 'tap'
import { getHeapStatistics, getHeapSpaceStatistics } from 'node:v8'
import { IdleCollector, createCompactionGate } from '@sipedge/workers'

const sleep = (ms: number): Promise<void> => new Promise(r => setTimeout(r, ms))
const MiB = 1024 * 1024
const used = (): number => getHeapStatistics().used_heap_size
const committed = (): number => getHeapStatistics().total_heap_size

/** ~`mb` MiB of small objects on the V8 heap, kept alive by the returned array. */
function garbage(mb: number): object[] {
  const keep: object[] = []
  for (let i = 0; i < mb * 8192; i++) keep.push({ i, s: `transaction ${i} ${'x'.repeat(40)}` })
  return keep
}

/** The survivors of a burst spread over its pages: every 8th of ~`mb` MiB of objects stays alive. */
function spread(mb: number): object[] {
  const all = garbage(mb)
  const keep: object[] = []
  for (let i = 0; i < all.length; i += 8) keep.push(all[i]!)
  return keep
}

t.test('a burst, then quiet: one major GC, the heap used falls', async t => {
  const seen: Array<[number, number]> = []
  let keep: object[] | null = null
  const c = new IdleCollector({ windowMs: 40, quietMessages: 10, quietMs: 120, growthBytes: 8 * MiB, onCollect: (b, a) => seen.push([b, a]) })
  t.teardown(() => c.close())
  t.ok(c.available, 'V8 gave a gc function without --expose-gc on the command line')
  keep = garbage(40)
  // the burst: many messages per window
  for (let w = 0; w < 4; w++) {
    for (let i = 0; i < 50; i++) c.note()
    await sleep(40)
  }
  t.equal(c.collections, 0, 'no collection while messages flow')
  const before = used()
  keep = null // the burst's transactions end
  t.equal(keep, null)
  // quiet, but not silent: a message now and then (probes)
  for (let i = 0; i < 12 && c.collections === 0; i++) { c.note(); await sleep(40) }
  for (let i = 0; i < 50 && c.collections === 0; i++) await sleep(20)
  t.equal(c.collections, 1, 'one collection after the quiet time')
  t.equal(seen.length, 1)
  t.ok(seen[0]![1] < seen[0]![0] - 20 * MiB, `heap used fell by more than 20 MiB (${(seen[0]![0] / MiB).toFixed(1)} -> ${(seen[0]![1] / MiB).toFixed(1)} MiB)`)
  t.ok(used() < before - 20 * MiB, 'and stays down')
  // asleep now: more quiet time does not collect again (nothing grew), the next burst re-arms it
  for (let i = 0; i < 8; i++) { c.note(); await sleep(40) }
  t.equal(c.collections, 1, 'no second collection without growth')
})

t.test('no growth: quiet periods end without a collection', async t => {
  const c = new IdleCollector({ windowMs: 30, quietMessages: 10, quietMs: 60, growthBytes: 512 * MiB, slackBytes: 512 * MiB })
  t.teardown(() => c.close())
  for (let i = 0; i < 10; i++) { c.note(); await sleep(30) }
  await sleep(150)
  t.equal(c.collections, 0)
})

t.test('busy all along: no collection, however large the heap', async t => {
  const keep = garbage(20)
  const c = new IdleCollector({ windowMs: 30, quietMessages: 10, quietMs: 60, growthBytes: 1 })
  t.teardown(() => c.close())
  for (let w = 0; w < 8; w++) {
    for (let i = 0; i < 20; i++) c.note()
    await sleep(30)
  }
  t.equal(c.collections, 0)
  t.ok(keep.length > 0)
})

t.test('asleep until quietMessages messages arrive; close disarms', async t => {
  const c = new IdleCollector({ windowMs: 20, quietMessages: 5, quietMs: 20, growthBytes: 1 })
  // the heap grows past the baseline taken at construction (without it the first decision
  // depended on incidental allocation: a GC in between left the heap below the baseline)
  const first = garbage(2)
  c.note() // arms; the window sees one message: quiet; decides (collects: growth 1 byte)
  for (let i = 0; i < 40 && c.collections === 0; i++) await sleep(10)
  t.equal(c.collections, 1)
  t.ok(first.length > 0)
  // asleep: four messages do not arm it (fewer than quietMessages), so no further decision
  for (let i = 0; i < 4; i++) c.note()
  await sleep(80)
  t.equal(c.collections, 1, 'still asleep')
  const grown = garbage(2) // the heap grows past the baseline of the last collection
  c.note() // the fifth: awake again, and a quiet window later it decides again
  for (let i = 0; i < 40 && c.collections === 1; i++) await sleep(10)
  t.equal(c.collections, 2)
  t.ok(grown.length > 0)
  c.close()
  for (let i = 0; i < 10; i++) c.note()
  await sleep(80)
  t.equal(c.collections, 2, 'closed: never again')
})

t.test('a heap that commits far more than it uses is compacted: the pages go back, the gate closes', async t => {
  let keep: object[] | null = spread(48)
  await sleep(10)
  const gate = createCompactionGate()
  const seen: Array<{ used: [number, number]; committed: [number, number] }> = []
  // growth alone would never collect here: the slack (committed - used) decides
  const c = new IdleCollector({
    windowMs: 30, quietMessages: 10, quietMs: 60, growthBytes: 1024 * MiB, slackBytes: 8 * MiB, compaction: gate,
    onCollect: (b, a, _ms, cb, ca) => seen.push({ used: [b, a], committed: [cb, ca] }),
  })
  t.teardown(() => c.close())
  // the burst that left it so: a busy window, then quiet
  for (let i = 0; i < 12; i++) c.note()
  await sleep(35)
  for (let i = 0; i < 100 && c.collections === 0; i++) await sleep(20)
  t.equal(c.collections, 1, 'collected once quiet')
  const r = seen[0]!
  t.ok(r.committed[0] - r.used[0] >= 8 * MiB, `the slack was there: ${(r.committed[0] / MiB).toFixed(1)} MiB committed for ${(r.used[0] / MiB).toFixed(1)} used`)
  t.ok(r.committed[1] < r.committed[0] - 16 * MiB,
    `compacted: committed ${(r.committed[0] / MiB).toFixed(1)} -> ${(r.committed[1] / MiB).toFixed(1)} MiB with ${(r.used[1] / MiB).toFixed(1)} MiB still used`)
  t.ok(committed() < r.committed[0] - 16 * MiB, 'and stays down')
  const old = getHeapSpaceStatistics().find(x => x.space_name === 'old_space')!
  t.ok(old.physical_space_size - old.space_used_size < 4 * MiB,
    `the old generation is compact: ${(old.physical_space_size / MiB).toFixed(1)} MiB committed for ${(old.space_used_size / MiB).toFixed(1)} used`)
  t.equal(new Int32Array(gate)[0], 0, 'the gate is closed again (no collection running)')
  t.ok(keep.length > 0)
  keep = null
})

t.test('two collectors on one gate: both collect, and the count of collections running is back to 0 after both', async t => {
  const gate = createCompactionGate()
  const g = new Int32Array(gate)
  // both decide to collect whatever the other's GC did to the heap: a burst (a busy window), and any slack
  const opts = { windowMs: 20, quietMessages: 5, quietMs: 20, growthBytes: 1, slackBytes: 1, compaction: gate }
  const a = new IdleCollector(opts)
  const b = new IdleCollector(opts)
  t.teardown(() => { a.close(); b.close() })
  const grown = garbage(4)
  for (let i = 0; i < 6; i++) { a.note(); b.note() }
  for (let i = 0; i < 100 && (a.collections === 0 || b.collections === 0); i++) await sleep(5)
  t.equal(a.collections, 1)
  t.equal(b.collections, 1)
  t.equal(g[0], 0, 'closed after both')
  t.ok(grown.length > 0)
})

t.test('slack without a burst (a thread that just started) does not collect; after a busy window it does', async t => {
  const keep = spread(24)
  await sleep(10)
  const c = new IdleCollector({ windowMs: 20, quietMessages: 5, quietMs: 40, growthBytes: 1024 * MiB, slackBytes: 1 })
  t.teardown(() => c.close())
  c.note() // a probe now and then: quiet from the start
  for (let i = 0; i < 12; i++) await sleep(10)
  t.equal(c.collections, 0, 'no busy window: the slack alone does not collect')
  // a burst: busy windows, then quiet
  for (let w = 0; w < 3; w++) { for (let i = 0; i < 10; i++) c.note(); await sleep(20) }
  for (let i = 0; i < 50 && c.collections === 0; i++) await sleep(10)
  t.equal(c.collections, 1, 'after the burst the slack decides')
  t.ok(keep.length > 0)
})

t.test('a burst that left its garbage off the heap (ArrayBuffers, like parked transaction slabs) is collected too', async t => {
  const ab = (): number => process.memoryUsage().arrayBuffers
  const seen: number[] = []
  // heap growth and slack cannot trigger it here: only the off-heap criterion
  const c = new IdleCollector({ windowMs: 40, quietMessages: 10, quietMs: 120, growthBytes: 512 * MiB, slackBytes: 512 * MiB, externalBytes: 16 * MiB, onCollect: () => seen.push(ab()) })
  t.teardown(() => c.close())
  let slabs: Buffer[] | null = []
  for (let i = 0; i < 160; i++) slabs.push(Buffer.allocUnsafeSlow(256 * 1024).fill(i)) // 40 MiB, as the parked store allocates them
  for (let w = 0; w < 4; w++) {
    for (let i = 0; i < 50; i++) c.note()
    await sleep(40)
  }
  t.equal(c.collections, 0, 'no collection while messages flow')
  slabs = null // Timer J emptied the slabs: garbage, but off the V8 heap
  t.equal(slabs, null)
  const before = ab()
  t.ok(before >= 40 * MiB, `the dead slabs still count (${(before / MiB).toFixed(1)} MiB)`)
  for (let i = 0; i < 12 && c.collections === 0; i++) { c.note(); await sleep(40) }
  for (let i = 0; i < 50 && c.collections === 0; i++) await sleep(20)
  t.equal(c.collections, 1, 'one collection after the quiet time')
  t.ok(ab() < before - 30 * MiB, `ArrayBuffer memory given back (${(before / MiB).toFixed(1)} -> ${(ab() / MiB).toFixed(1)} MiB)`)
})

t.test('ArrayBuffer growth without a burst (a thread that just started) does not collect', async t => {
  const c = new IdleCollector({ windowMs: 30, quietMessages: 10, quietMs: 60, growthBytes: 512 * MiB, slackBytes: 512 * MiB, externalBytes: 1 * MiB })
  t.teardown(() => c.close())
  const keep = Buffer.allocUnsafeSlow(8 * MiB)
  for (let i = 0; i < 10; i++) { c.note(); await sleep(30) }
  await sleep(150)
  t.equal(c.collections, 0)
  t.equal(keep.length, 8 * MiB)
})
