// sipedge's V8 defaults (issue 17): the interrupt budget is lowered at start unless the node
// command line sets it, and the lower budget really reaches TurboFan sooner, on the primary and
// in worker threads (V8 flags are process-wide; setting them after start still takes effect); the
// memory reducer's two settings, set the same way, cut its GCs in an idle process.
import t from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { v8FlagsToSet, V8_DEFAULTS } from '../dist/v8-tuning.js'

t.test('v8FlagsToSet: the defaults, minus what the command line sets', async t => {
  const reducer = ['--gc-memory-reducer-start-delay-ms=600000', '--memory-reducer-single-gc']
  t.same(V8_DEFAULTS.map(([n]) => n), ['interrupt-budget', 'gc-memory-reducer-start-delay-ms', 'memory-reducer-single-gc'])
  t.same(v8FlagsToSet([]), ['--interrupt-budget=16384', ...reducer])
  t.same(v8FlagsToSet(['--max-old-space-size=512', '--cpu-prof']), ['--interrupt-budget=16384', ...reducer], 'other flags leave them')
  t.same(v8FlagsToSet(['--interrupt-budget=67584']), reducer, "the operator's value wins")
  t.same(v8FlagsToSet(['--interrupt_budget=1000']), reducer, 'V8 takes _ for -')
  t.same(v8FlagsToSet(['--interrupt-budget', '1000']), reducer, 'value as the next argument')
  t.same(v8FlagsToSet(['--interrupt-budget-for-feedback-allocation=900']), ['--interrupt-budget=16384', ...reducer], 'a longer flag name is another flag')
  t.same(v8FlagsToSet(['--no-memory-reducer-single-gc', '--gc-memory-reducer-start-delay-ms=8000']), ['--interrupt-budget=16384'], "a boolean flag's --no- form on the command line wins too")
  t.same(v8FlagsToSet(['--no_memory_reducer_single_gc']), ['--interrupt-budget=16384', '--gc-memory-reducer-start-delay-ms=600000'], 'also when written --no_x')
})

const probe = fileURLToPath(new URL('./fixtures/tierup-probe.mjs', import.meta.url))
function run(extra: string[]): { set: string[]; main: number; worker: number } {
  const r = spawnSync(process.execPath, ['--allow-natives-syntax', '--no-concurrent-recompilation', ...extra, probe], { encoding: 'utf8', timeout: 60_000 })
  if (r.status !== 0) throw new Error(`probe failed (${r.status}): ${r.stderr}`)
  return JSON.parse(r.stdout) as { set: string[]; main: number; worker: number }
}

t.test('applied at run time, the lower budget optimizes a hot function after fewer calls, in workers too', async t => {
  const dflt = run([])
  const v8Default = run(['--interrupt-budget=67584'])
  t.same(dflt.set, ['--interrupt-budget=16384', '--gc-memory-reducer-start-delay-ms=600000', '--memory-reducer-single-gc'])
  t.same(v8Default.set, ['--gc-memory-reducer-start-delay-ms=600000', '--memory-reducer-single-gc'], 'command line value: the budget not set')
  t.ok(dflt.main > 0 && v8Default.main > 0, `optimized at all (${dflt.main}, ${v8Default.main})`)
  t.ok(dflt.main * 2 < v8Default.main, `primary: call ${dflt.main} with the default, ${v8Default.main} with V8's`)
  t.ok(dflt.worker > 0 && dflt.worker * 2 < v8Default.worker, `worker thread: call ${dflt.worker} with the default, ${v8Default.worker} with V8's`)
})

// V8's memory reducer runs its memory-reducing GCs ("Mark-Compact (reduce)") a few seconds after a
// thread leaves garbage, up to three per isolate; on an idle node just started they land in its
// first idle minute, with the platform threads' concurrent marking (docs/performance.md, session
// 17). sipedge defers the reducer's first start by ten minutes and lets it run one GC at a time;
// set at run time, after the main isolate exists, this reaches it and a worker started afterwards.
const reducerProbe = fileURLToPath(new URL('./fixtures/reducer-probe.mjs', import.meta.url))
/** Memory-reducing GCs per isolate (its address in the trace) in the probe's 20 idle seconds. */
function reduceGcs(mode: 'v8' | 'sipedge'): Promise<number[]> {
  return new Promise((resolve, reject) => {
    // the product's process has no test loader: NODE_OPTIONS (tap's) changes what the start allocates
    const { NODE_OPTIONS: _omit, ...env } = process.env
    const c = spawn(process.execPath, ['--trace-gc', '--expose-gc', reducerProbe, mode, '20'], { env, stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    c.stdout.setEncoding('utf8').on('data', (d: string) => { out += d })
    c.on('error', reject)
    c.on('exit', code => {
      if (code !== 0) { reject(new Error(`reducer probe exited ${code}: ${out.slice(-2000)}`)); return }
      if (!out.includes('probe worker')) { reject(new Error(`the worker never started: ${out.slice(-2000)}`)); return }
      const per = new Map<string, number>()
      for (const l of out.split('\n')) {
        const m = /^\[\d+:(0x[0-9a-f]+)\].*Mark-Compact \(reduce\)/.exec(l)
        if (m !== null) per.set(m[1]!, (per.get(m[1]!) ?? 0) + 1)
      }
      resolve([...per.values()])
    })
  })
}

t.test("sipedge's reducer settings: at most one memory-reducing GC per isolate in 20 idle seconds (V8's own: several)", async t => {
  const [v8, sipedge] = await Promise.all([reduceGcs('v8'), reduceGcs('sipedge')])
  const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0)
  t.ok(Math.max(0, ...v8) >= 2, `V8's defaults: ${JSON.stringify(v8)} memory-reducing GCs per isolate`)
  t.ok(Math.max(0, ...sipedge) <= 1, `sipedge's defaults, set at run time: ${JSON.stringify(sipedge)}`)
  t.ok(sum(sipedge) < sum(v8), `fewer in all: ${sum(sipedge)} against ${sum(v8)}`)
})
