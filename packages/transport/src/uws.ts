// Loader for uWebSockets.js, shared by the WS/WSS listener and (later) the metrics/admin HTTP
// server. uWS is a native addon published per platform and Node ABI, and no single npm build
// covers every host we run on:
//   - `uWebSockets.js` (our alias of @trufflesuite/uws-js-unofficial 20.30) loads on Node 20 with
//     glibc 2.36 (Debian 12);
//   - `@btc-vision/uwebsockets.js` 20.57 is needed on newer Node, and requires glibc >= 2.38.
// We try them in order and take the first that yields the *native* module.
//
// Why the native check: the trufflesuite package silently falls back to a pure-JS emulation built
// on `ws` when its binary does not load (it only prints a console warning). That fallback lacks
// the performance we rely on and does not behave like uWS in the details (timeouts, backpressure,
// us_socket_local_port), so here it counts as "did not load".
import { createRequire } from 'node:module'
import type * as Uws from 'uWebSockets.js'

export type UwsModule = typeof Uws

/** Module names tried, in order, by loadUws(). */
export const UWS_CANDIDATES: readonly string[] = Object.freeze(['uWebSockets.js', '@btc-vision/uwebsockets.js'])

export interface UwsPlatform {
  readonly platform: string
  readonly arch: string
  readonly node: string
  /** Node ABI (process.versions.modules), part of the binary's file name. */
  readonly modules: string
  /** glibc version at run time, or null on musl / non-Linux. */
  readonly glibc: string | null
}

export interface UwsLoadAttempt {
  readonly module: string
  readonly error: string
}

/** Thrown by loadUws() when no candidate yields a native uWebSockets.js. */
export class UwsUnavailableError extends Error {
  readonly code = 'ERR_UWS_UNAVAILABLE' as const
  readonly platform: UwsPlatform
  readonly attempts: readonly UwsLoadAttempt[]
  constructor(platform: UwsPlatform, attempts: readonly UwsLoadAttempt[]) {
    const where = `${platform.platform}-${platform.arch}, Node ${platform.node} (ABI ${platform.modules}), ` +
      `glibc ${platform.glibc ?? 'n/a'}`
    const why = attempts.map(a => `  - ${a.module}: ${a.error}`).join('\n')
    super(`uWebSockets.js is not available on ${where}; WebSocket and HTTP listeners cannot start.\n` +
      `Tried:\n${why}\n` +
      'Install a uWebSockets.js build for this platform (glibc >= 2.38 needs @btc-vision/uwebsockets.js).')
    this.name = 'UwsUnavailableError'
    this.platform = platform
    this.attempts = attempts
  }
}

const require = createRequire(import.meta.url)
const loaded = new Map<string, UwsModule>()

/**
 * Returns the first native uWebSockets.js among `candidates` (default UWS_CANDIDATES).
 * The result is cached per candidate list head; requiring it again is cheap anyway.
 * @throws UwsUnavailableError (code ERR_UWS_UNAVAILABLE) when none loads.
 */
export function loadUws(candidates: readonly string[] = UWS_CANDIDATES): UwsModule {
  const attempts: UwsLoadAttempt[] = []
  for (const name of candidates) {
    const cached = loaded.get(name)
    if (cached !== undefined) return cached
    let mod: unknown
    try {
      mod = require(name)
    } catch (err) {
      attempts.push({ module: name, error: describe(err) })
      continue
    }
    const problem = nativeProblem(mod)
    if (problem !== null) {
      attempts.push({ module: name, error: problem })
      continue
    }
    loaded.set(name, mod as UwsModule)
    return mod as UwsModule
  }
  throw new UwsUnavailableError(uwsPlatform(), attempts)
}

/** The facts that decide which uWS binary can load here (also useful in startup logs). */
export function uwsPlatform(): UwsPlatform {
  let glibc: string | null = null
  try {
    // Only on the failure path or on demand: getReport() takes a few milliseconds.
    const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined
    glibc = report?.header?.glibcVersionRuntime ?? null
  } catch {
    glibc = null
  }
  return {
    platform: process.platform,
    arch: process.arch,
    node: process.versions.node,
    modules: process.versions.modules,
    glibc,
  }
}

function nativeProblem(mod: unknown): string | null {
  if (mod === null || typeof mod !== 'object') return 'module did not export an object'
  const m = mod as Record<string, unknown>
  if (typeof m.App !== 'function' || typeof m.SSLApp !== 'function' || typeof m.us_listen_socket_close !== 'function' ||
    typeof m.us_socket_local_port !== 'function') {
    return 'module does not look like uWebSockets.js (App/SSLApp/us_listen_socket_close/us_socket_local_port missing)'
  }
  if (!Function.prototype.toString.call(m.App).includes('[native code]')) {
    return `loaded a JavaScript fallback instead of the native binary uws_${process.platform}_${process.arch}_` +
      `${process.versions.modules}.node (the binary is missing or failed to load; UWS_USE_FALLBACK may be set)`
  }
  return null
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code
    // MODULE_NOT_FOUND messages carry a multi-line require stack; the first line is what matters.
    const first = err.message.split('\n', 1)[0] ?? err.message
    return typeof code === 'string' ? `${code}: ${first}` : first
  }
  return String(err)
}
