import t from 'tap'
import { Worker } from 'node:worker_threads'
import { Ring, createFrameMeta } from '@sipedge/ring'
import type { FrameView } from '@sipedge/ring'
// @ts-expect-error plain ESM fixture shared with the worker thread
import { prng, nextSize, fnv1a, metaFor } from './fixtures/common.mjs'

interface Result { delivered: number; lost: number; dup: number; reordered: number; torn: number; header: number; sent: number }

/**
 * Producer in a worker thread, consumer here. Every frame carries its sequence number and an
 * FNV-1a checksum; its size and header fields follow from (seed, seq), so the consumer checks
 * loss, duplication, reordering and tearing for every frame. Bounded by frame count and time.
 */
async function run(t: Tap.Test, opts: { capacity: number; frames: number; seed: number; gather: boolean; budgetMs: number }): Promise<Result> {
  const sab = Ring.allocate(opts.capacity)
  const ring = new Ring(sab)
  const w = new Worker(new URL('./fixtures/stress-producer.mjs', import.meta.url),
    { workerData: { sab, maxSize: Math.min(ring.maxPayload, 16384), seed: opts.seed, frames: opts.frames, deadlineMs: opts.budgetMs, gather: opts.gather } })
  const errored = new Promise<never>((_res, rej) => w.once('error', rej))
  const ready = new Promise((res) => w.once('message', res))
  t.equal(await Promise.race([ready, errored, new Promise((r) => setTimeout(() => r('no ready'), 30000).unref())]), 'ready')
  let producer: { sent: number; fullSpins: number } | null = null
  w.once('message', (m) => { producer = m })

  const rand = prng(opts.seed)
  const expectedMeta = createFrameMeta()
  const r: Result = { delivered: 0, lost: 0, dup: 0, reordered: 0, torn: 0, header: 0, sent: 0 }
  const maxSize = Math.min(ring.maxPayload, 16384)
  let next = 0 // the sequence number we expect
  let expectedSize = nextSize(rand, maxSize)
  const onFrame = (m: FrameView, p: Buffer) => {
    r.delivered++
    const size = p.length
    let seq: number
    if (size >= 4) seq = (p[0]! | (p[1]! << 8) | (p[2]! << 16) | (p[3]! << 24)) >>> 0
    else seq = m.recvTime - 0.5 // tiny frames: the header carries the sequence too
    if (seq < next) { r.dup++; return }
    if (seq > next) { r.lost += seq - next; r.reordered++ }
    // advance the generator to seq (normally already there)
    while (next < seq) { next++; if (opts.gather) { consumeGather(rand, expectedSize) } expectedSize = nextSize(rand, maxSize) }
    if (size !== expectedSize) r.torn++
    else if (size >= 8) {
      const h = (p[4]! | (p[5]! << 8) | (p[6]! << 16) | (p[7]! << 24)) >>> 0
      if (h !== fnv1a(p, 8, size)) r.torn++
    }
    metaFor(expectedMeta, seq)
    if (m.transport !== expectedMeta.transport || m.socketId !== expectedMeta.socketId || m.connId !== expectedMeta.connId ||
        m.family !== expectedMeta.family || m.port !== expectedMeta.port || m.recvTime !== expectedMeta.recvTime ||
        m.flags !== expectedMeta.flags || (seq % 97 === 0 && m.address !== expectedMeta.address)) {
      if (r.header++ === 0) t.comment(`first header mismatch at ${seq}: got ${JSON.stringify({ transport: m.transport, socketId: m.socketId, connId: m.connId, family: m.family, address: m.address, port: m.port, recvTime: m.recvTime, flags: m.flags })} want ${JSON.stringify(expectedMeta)}`)
    }
    next++
    if (opts.gather) consumeGather(rand, expectedSize)
    expectedSize = nextSize(rand, maxSize)
  }
  const t0 = performance.now()
  while (performance.now() - t0 < opts.budgetMs + 5000) {
    const n = ring.drain(onFrame, 512)
    if (n === 0) {
      if (producer !== null && !ring.hasData()) break
      await ring.waitForData(100)
    } else if ((r.delivered & 0x3fff) < n) {
      await new Promise((res) => setImmediate(res)) // let the 'message' event in now and then
    }
  }
  await Promise.race([new Promise((res) => setTimeout(res, 5000).unref()), new Promise<void>((res) => { if (producer) res(); else w.once('message', () => res()) })])
  await w.terminate()
  r.sent = (producer as { sent: number } | null)?.sent ?? -1
  const st = ring.stats()
  t.comment(`capacity ${opts.capacity} gather ${opts.gather}: ${r.delivered} frames in ${((performance.now() - t0) / 1000).toFixed(1)} s, ` +
    `refused ${st.refused}, wakeups ${st.wakeups}, notifies ${st.notifies}`)
  t.equal(st.pushed, r.sent, 'pushed counter = frames sent')
  t.equal(st.drained, r.delivered, 'drained counter = frames delivered')
  t.equal(st.used, 0, 'ring empty at the end')
  return r
}
// the producer draws 2 extra numbers per non-empty frame in gather mode
function consumeGather(rand: () => number, size: number) { if (size > 0) { rand(); rand() } }

for (const c of [
  { name: 'tiny ring (every wrap, mostly full)', capacity: 4096, frames: 60_000, seed: 1, gather: false, budgetMs: 8000 },
  { name: '64 KiB ring, gather writes', capacity: 65536, frames: 100_000, seed: 2, gather: true, budgetMs: 8000 },
  { name: '1 MiB ring', capacity: 1 << 20, frames: 200_000, seed: 3, gather: false, budgetMs: 8000 },
]) {
  t.test(`two threads: ${c.name}`, async (t) => {
    const r = await run(t, c)
    t.ok(r.sent > 1000, `sent ${r.sent} frames`)
    t.equal(r.delivered, r.sent, 'every sent frame delivered')
    t.equal(r.lost, 0, 'none lost')
    t.equal(r.dup, 0, 'none duplicated')
    t.equal(r.reordered, 0, 'none reordered')
    t.equal(r.torn, 0, 'none torn (size and checksum)')
    t.equal(r.header, 0, 'every header field intact')
  })
}
