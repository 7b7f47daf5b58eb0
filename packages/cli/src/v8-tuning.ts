// V8 settings sipedge gives itself (docs/performance.md, "V8 settings").
//
// V8 moves a function from its baseline tiers (Ignition, Sparkplug) to TurboFan after it has used
// up its interrupt budget a few times (`--interrupt-budget`, in bytecode executed; default 67,584).
// The default suits a browser page; a proxy at a few hundred requests a second runs each
// route/transaction function a few hundred times a second, so its hot path stayed in baseline
// code for tens of seconds after start and after every deoptimisation (profiled 2026-12-06:
// `routeNew`, `admit`, `forward` never reached TurboFan in a 25 s window). A quarter of the
// budget cost 19% less CPU per request at S=1 (medians of 21 and 15 runs, 14 of 18 interleaved
// pairs lower); an eighth, a sixteenth and a half all cost more than a quarter.
//
// V8's memory reducer shrinks a heap that has stopped growing: a few seconds after a major GC, or
// after a thread leaves garbage, it runs up to three memory-reducing GCs, each with concurrent
// marking on the platform threads. On a node just started, that is what its first idle minute
// was spent on (session 17, `bench:idle` 10 s after start: the primary's three GCs ~16 s after
// start, the log thread's two at ~8 s; the idle figure fell from 0.28% to 0.17% of a core, median
// of three alternated pairs, with the two settings below). sipedge's idle collector
// (workers/idle-collect.ts) already gives a burst's memory back when a thread goes quiet, so the
// reducer is kept to one GC at a time (`--memory-reducer-single-gc`), and its first start after a
// thread leaves garbage is ten minutes away instead of eight seconds (`--gc-memory-reducer-
// start-delay-ms`; V8 still re-checks eight seconds after each major GC, which is why the primary
// keeps one reducing GC after start — it also shrinks the young generation back, 30 → 15 MB).
import { setFlagsFromString } from 'node:v8'

/** Flag name (as on the node command line, without `--`) and the value sipedge sets ('' for a flag without value). */
export const V8_DEFAULTS: ReadonlyArray<readonly [name: string, value: string]> = [
  ['interrupt-budget', '16384'],
  ['gc-memory-reducer-start-delay-ms', '600000'],
  ['memory-reducer-single-gc', ''],
]

/**
 * The flags of V8_DEFAULTS that the node command line (`execArgv`) does not set, as
 * `--name=value`: an operator's own `node --interrupt-budget=N …` wins (V8 takes `_` for `-`).
 */
export function v8FlagsToSet(execArgv: readonly string[]): string[] {
  const given = new Set<string>()
  for (const a of execArgv) {
    const m = /^--(?:no[-_])?([A-Za-z0-9_-]+)/.exec(a)
    if (m !== null) given.add(m[1]!.replace(/_/g, '-'))
  }
  return V8_DEFAULTS.filter(([n]) => !given.has(n)).map(([n, v]) => v === '' ? `--${n}` : `--${n}=${v}`)
}

/**
 * Sets the defaults the command line leaves open; returns what it set. Call before the engine
 * starts: V8 flags are process-wide, so the worker threads' isolates get them too.
 */
export function applyV8Defaults(execArgv: readonly string[] = process.execArgv): string[] {
  const flags = v8FlagsToSet(execArgv)
  for (const f of flags) setFlagsFromString(f)
  return flags
}
