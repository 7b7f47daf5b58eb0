// Mutation fuzzing of the parser with a fixed seed and a fixed budget (the long run is
// `pnpm --filter @sipedge/benchmarks run fuzz`). Seeds: test/fuzz-corpus, the parser corpus and
// the RFC 4475/5118 torture messages when ../shared/sip-torture is there. Every input must parse
// or be refused with a SipParseError carrying one of ErrorCodes (fuzz/parser-target.mjs says
// exactly what is checked), and none may take pathologically long: counted per input, with a
// generous per-byte budget and a re-run before an input counts as slow, never a wall-clock total.
import t from 'tap'
import { createHash } from 'node:crypto'
import { loadSeeds, mutant, hasTorture, MAX_INPUT } from './fuzz/mutator.mjs'
import { runParser, Failure } from './fuzz/parser-target.mjs'

const SEED = 0x5eedf022
const COUNT = Number(process.env.SIPEDGE_FUZZ_PARSER_INPUTS ?? 60_000)
/** An input is slow when even its fastest of 3 re-runs takes longer than this (ms). Linear parsing of MAX_INPUT bytes takes well under 10 ms. */
const slowBudgetMs = (bytes: number): number => 25 + bytes / 1000

const seeds = loadSeeds()

t.test('the seed corpus and the mutator', async t => {
  t.ok(seeds.length >= 40, `${seeds.length} seeds${hasTorture() ? ' (torture messages included)' : ' (../shared/sip-torture absent)'}`)
  t.ok(seeds.some(s => s.name.includes('fuzz-corpus/register-digest.sip')))
  const digest = (from: number): string => {
    const h = createHash('sha256')
    for (let i = from; i < from + 500; i++) h.update(mutant(seeds, SEED, i))
    return h.digest('hex')
  }
  t.equal(digest(1000), digest(1000), 'input i of a seeded run is the same every time (reproducible alone)')
  t.not(digest(1000), digest(1500))
  let max = 0
  for (let i = 0; i < 2000; i++) max = Math.max(max, mutant(seeds, SEED, i).length)
  t.ok(max <= MAX_INPUT, `inputs are bounded (largest ${max} bytes)`)
})

t.test(`parser fuzz: ${COUNT} mutated inputs parse or fail with a stable SipParseError code`, async t => {
  const outcomes = new Map<string, number>()
  const failures: Array<{ index: number; kind: string; message: string; input: string }> = []
  const slow: Array<{ index: number; bytes: number; ms: number }> = []
  const buckets = [0, 0, 0, 0] // < 0.1 ms, < 1 ms, < 10 ms, >= 10 ms (first run, informational)
  let bytes = 0
  for (let i = 0; i < COUNT; i++) {
    const input = mutant(seeds, SEED, i)
    bytes += input.length
    let outcome: string
    const t0 = performance.now()
    try {
      outcome = runParser(input)
    } catch (e) {
      if (!(e instanceof Failure)) throw e
      outcome = `FAIL:${e.kind}`
      if (failures.length < 20) failures.push({ index: i, kind: e.kind, message: e.message.slice(0, 2000), input: input.toString('latin1').slice(0, 2000) })
    }
    const ms = performance.now() - t0
    buckets[ms < 0.1 ? 0 : ms < 1 ? 1 : ms < 10 ? 2 : 3]!++
    if (ms > slowBudgetMs(input.length)) {
      // a scheduler pause or a GC is not the parser: slow only if every re-run is
      let best = ms
      for (let k = 0; k < 3 && best > slowBudgetMs(input.length); k++) {
        const t1 = performance.now()
        try { runParser(input) } catch { /* counted above */ }
        best = Math.min(best, performance.now() - t1)
      }
      if (best > slowBudgetMs(input.length)) slow.push({ index: i, bytes: input.length, ms: Math.round(best) })
    }
    outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1)
  }
  const table = [...outcomes].sort((a, b) => b[1] - a[1])
  t.comment(`seed 0x${SEED.toString(16)}, ${COUNT} inputs, ${Math.round(bytes / COUNT)} bytes average; time per input ` +
    `<0.1ms ${buckets[0]}, <1ms ${buckets[1]}, <10ms ${buckets[2]}, >=10ms ${buckets[3]}`)
  t.comment(table.map(([k, v]) => `${k} ${v}`).join(', '))
  t.same(failures, [], 'no crash, no untyped or unknown error, every rebuilt message parses (rebuild an input with mutant(seeds, SEED, index))')
  t.same(slow, [], 'no input is pathologically slow')
  // the run explored something: valid messages and most of the error codes
  t.ok((outcomes.get('ok') ?? 0) > COUNT * 0.05, `valid messages among the mutants (${outcomes.get('ok') ?? 0})`)
  const codes = new Set(table.map(([k]) => k.split(':')[1]).filter(c => c !== undefined))
  t.ok(codes.size >= 15, `${codes.size} distinct error codes reached`)
})
