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
import { setFlagsFromString } from 'node:v8'

/** Flag name (as on the node command line, without `--`) and the value sipedge sets. */
export const V8_DEFAULTS: ReadonlyArray<readonly [name: string, value: string]> = [
  ['interrupt-budget', '16384'],
]

/**
 * The flags of V8_DEFAULTS that the node command line (`execArgv`) does not set, as
 * `--name=value`: an operator's own `node --interrupt-budget=N …` wins (V8 takes `_` for `-`).
 */
export function v8FlagsToSet(execArgv: readonly string[]): string[] {
  const given = new Set<string>()
  for (const a of execArgv) {
    const m = /^--(?:no-)?([A-Za-z0-9_-]+)/.exec(a)
    if (m !== null) given.add(m[1]!.replace(/_/g, '-'))
  }
  return V8_DEFAULTS.filter(([n]) => !given.has(n)).map(([n, v]) => `--${n}=${v}`)
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
