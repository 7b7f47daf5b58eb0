// sipedge's V8 defaults (issue 17): the interrupt budget is lowered at start unless the node
// command line sets it, and the lower budget really reaches TurboFan sooner, on the primary and
// in worker threads (V8 flags are process-wide; setting them after start still takes effect).
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { v8FlagsToSet, V8_DEFAULTS } from '../dist/v8-tuning.js'

t.test('v8FlagsToSet: the defaults, minus what the command line sets', async t => {
  t.same(V8_DEFAULTS.map(([n]) => n), ['interrupt-budget'])
  t.same(v8FlagsToSet([]), ['--interrupt-budget=16384'])
  t.same(v8FlagsToSet(['--max-old-space-size=512', '--cpu-prof']), ['--interrupt-budget=16384'], 'other flags leave it')
  t.same(v8FlagsToSet(['--interrupt-budget=67584']), [], "the operator's value wins")
  t.same(v8FlagsToSet(['--interrupt_budget=1000']), [], 'V8 takes _ for -')
  t.same(v8FlagsToSet(['--interrupt-budget', '1000']), [], 'value as the next argument')
  t.same(v8FlagsToSet(['--interrupt-budget-for-feedback-allocation=900']), ['--interrupt-budget=16384'], 'a longer flag name is another flag')
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
  t.same(dflt.set, ['--interrupt-budget=16384'])
  t.same(v8Default.set, [], 'command line value: nothing set')
  t.ok(dflt.main > 0 && v8Default.main > 0, `optimized at all (${dflt.main}, ${v8Default.main})`)
  t.ok(dflt.main * 2 < v8Default.main, `primary: call ${dflt.main} with the default, ${v8Default.main} with V8's`)
  t.ok(dflt.worker > 0 && dflt.worker * 2 < v8Default.worker, `worker thread: call ${dflt.worker} with the default, ${v8Default.worker} with V8's`)
})
