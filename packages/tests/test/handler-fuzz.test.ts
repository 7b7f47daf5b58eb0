// Mutation fuzzing of the whole worker message handler, in-process (no sockets, no threads): the
// module the engine loads for every worker (proxyHandlerUrl -> createHandler(ctx)), fed every
// mutated input as a UDP datagram and as a TCP frame, plus responses to the requests it forwards.
// It must never throw (a throw kills the worker thread and every call on it), and every frame it
// sends must be a SIP message that parses. Inputs are seeded (input i is rebuilt alone with
// mutant(seeds, SEED, i)); fuzz/handler-target.mjs says what the context looks like. The long
// run: `pnpm --filter @sipedge/benchmarks run fuzz`.
import t from 'tap'
import { tempDir } from '@sipedge/tests'
import { loadSeeds, mutant, rngFor } from '@sipedge/sip/fuzz/mutator'
import { createHandlerHarness, HandlerFailure } from './fuzz/handler-target.mjs'

const SEED = 0x5eedf022
const COUNT = Number(process.env.SIPEDGE_FUZZ_HANDLER_INPUTS ?? 20_000)
/** Inputs between two pauses in which the handler's clock jumps and its timers and store answers run. */
const BATCH = 500

t.test(`handler fuzz: ${COUNT} mutated inputs over UDP and TCP, never a throw, only parseable output`, async t => {
  const tmp = tempDir()
  t.teardown(tmp.cleanup)
  const seeds = loadSeeds()
  const h = await createHandlerHarness({ dir: tmp.dir, seeds })
  const failures: Array<{ index: number; kind: string; message: string; input: string }> = []
  const record = (index: number, e: unknown, input: Buffer | null): void => {
    if (!(e instanceof HandlerFailure)) throw e
    if (failures.length < 20) failures.push({ index, kind: e.kind, message: e.message.slice(0, 3000), input: input === null ? '' : input.toString('latin1').slice(0, 2000) })
  }
  for (let i = 0; i < COUNT; i++) {
    const input = mutant(seeds, SEED, i)
    const rng = rngFor(SEED ^ 0x00ab_cdef, i)
    try { h.feed(i, input, rng) } catch (e) { record(i, e, input) }
    if (i % BATCH === BATCH - 1) {
      // mostly seconds, sometimes past Timer B/F (32 s) or Timer C (3 min)
      const jump = rng.chance(0.1) ? 200_000 : rng.chance(0.2) ? 40_000 : 1_000 + rng.int(5_000)
      try { await h.settle(jump) } catch (e) { record(i, e, null) }
    }
  }
  try { await h.close() } catch (e) { record(COUNT, e, null) }
  t.comment(`seed 0x${SEED.toString(16)}: ${h.stats.frames} frames in, ${h.stats.sent} out, ${h.stats.responsesFed} responses fed back; ` +
    `logged ${h.logged.error} errors${h.logged.firstError !== null ? ` (first: ${h.logged.firstError})` : ''}, ${h.logged.warn} warnings${h.logged.firstWarn !== null ? ` (first: ${h.logged.firstWarn})` : ''}`)
  t.comment('sent: ' + Object.entries(h.stats.sentByKind).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', '))
  t.same(failures, [], 'the handler never threw and sent only SIP messages that parse')
  // the run reached the interesting paths: local answers, challenges, forwarding, ACKs for non-2xx
  const sent = h.stats.sentByKind
  for (const k of ['100', '400', '401', '404', 'INVITE', 'ACK']) t.ok((sent[k] ?? 0) > 0, `sent ${k} (${sent[k] ?? 0})`)
  // Ten minutes of clock after the last input, every transaction has ended. It used to fail: a
  // final response to a forwarded INVITE without a To header (fuzz-ack-for-response-without-to)
  // ended the INVITE client transaction without relaying anything and left the server transaction
  // with no timer; the proxy now drops responses missing To/From/Call-ID/CSeq before the
  // transaction layer sees them (regressions-robustness.test.ts, over real sockets).
  t.comment(`transactions active after the timers: ${JSON.stringify(h.stats.activeAfterTimers)}`)
  t.equal(h.stats.activeAfterTimers?.total, 0, 'no transaction outlives its timers')
})
