// One chunk of the long fuzz run (a piscina task, see fuzz.mjs): inputs [from, to) of the seeded
// run through the parser target or the whole worker handler. The same mutator and targets as
// `pnpm test` (packages/sip/test/fuzz.test.ts, packages/tests/test/handler-fuzz.test.ts).
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { threadId } from 'node:worker_threads'
import { loadSeeds, mutant, rngFor } from '@sipedge/sip/fuzz/mutator'
import { runParser, Failure } from '@sipedge/sip/fuzz/parser-target'

const seeds = loadSeeds()
/** Per-input time buckets (ms upper bounds); the last one is open. */
export const BUCKETS = [0.01, 0.1, 1, 10, 100]
const bucketOf = ms => { let b = 0; while (b < BUCKETS.length && ms >= BUCKETS[b]) b++; return b }
const slowBudgetMs = bytes => 25 + bytes / 1000

/** The handler of this thread, created on its first task and kept (its state carries over, as a worker's does). */
let harness = null

function result(target, from, to) {
  return { target, from, to, count: to - from, bytes: 0, outcomes: {}, failures: [], slow: [], buckets: new Array(BUCKETS.length + 1).fill(0) }
}

function runParserChunk(seed, from, to) {
  const r = result('parser', from, to)
  for (let i = from; i < to; i++) {
    const input = mutant(seeds, seed, i)
    r.bytes += input.length
    let outcome
    const t0 = performance.now()
    try {
      outcome = runParser(input)
    } catch (e) {
      if (!(e instanceof Failure)) throw e
      outcome = `FAIL:${e.kind}`
      if (r.failures.length < 50) r.failures.push({ index: i, kind: e.kind, message: e.message.slice(0, 4000) })
    }
    const ms = performance.now() - t0
    r.buckets[bucketOf(ms)]++
    if (ms > slowBudgetMs(input.length)) {
      let best = ms
      for (let k = 0; k < 3 && best > slowBudgetMs(input.length); k++) {
        const t1 = performance.now()
        try { runParser(input) } catch { /* counted */ }
        best = Math.min(best, performance.now() - t1)
      }
      if (best > slowBudgetMs(input.length) && r.slow.length < 50) r.slow.push({ index: i, bytes: input.length, ms: Math.round(best) })
    }
    r.outcomes[outcome] = (r.outcomes[outcome] ?? 0) + 1
  }
  return r
}

async function runHandlerChunk(seed, from, to, tmpDir) {
  if (harness === null) {
    const { createHandlerHarness } = await import('@sipedge/tests/fuzz/handler-target')
    const dir = join(tmpDir, `thread-${threadId}`)
    mkdirSync(dir, { recursive: true })
    harness = await createHandlerHarness({ dir, seeds })
  }
  const { HandlerFailure } = await import('@sipedge/tests/fuzz/handler-target')
  const r = result('handler', from, to)
  const before = { ...harness.stats, sentByKind: { ...harness.stats.sentByKind } }
  const record = (i, e) => {
    if (!(e instanceof HandlerFailure)) throw e
    r.outcomes[`FAIL:${e.kind}`] = (r.outcomes[`FAIL:${e.kind}`] ?? 0) + 1
    if (r.failures.length < 50) r.failures.push({ index: i, kind: e.kind, message: e.message.slice(0, 4000) })
  }
  for (let i = from; i < to; i++) {
    const input = mutant(seeds, seed, i)
    const rng = rngFor(seed ^ 0x00abcdef, i)
    r.bytes += input.length
    const t0 = performance.now()
    try { harness.feed(i, input, rng) } catch (e) { record(i, e) }
    r.buckets[bucketOf(performance.now() - t0)]++
    if (i % 500 === 499) {
      const jump = rng.chance(0.1) ? 200_000 : rng.chance(0.2) ? 40_000 : 1_000 + rng.int(5_000)
      try { await harness.settle(jump) } catch (e) { record(i, e) }
    }
  }
  try { await harness.settle(1_000) } catch (e) { record(to - 1, e) }
  let failed = 0
  for (const [k, v] of Object.entries(r.outcomes)) if (k.startsWith('FAIL:')) failed += v
  r.outcomes.ok = r.count - failed
  r.frames = harness.stats.frames - before.frames
  r.responsesFed = harness.stats.responsesFed - before.responsesFed
  r.sentByKind = {}
  for (const [k, v] of Object.entries(harness.stats.sentByKind)) if (v !== (before.sentByKind[k] ?? 0)) r.sentByKind[k] = v - (before.sentByKind[k] ?? 0)
  r.logged = { error: harness.logged.error, warn: harness.logged.warn, firstError: harness.logged.firstError }
  return r
}

export default async function task({ target, seed, from, to, tmpDir }) {
  return target === 'parser' ? runParserChunk(seed, from, to) : runHandlerChunk(seed, from, to, tmpDir)
}
