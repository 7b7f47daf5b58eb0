// Minimal uWebSockets.js loader for the metrics/admin HTTP listener. It tries the same two builds
// as @sipedge/transport's loadUws() (which documents why there are two), without depending on
// transport: metrics sits beside it in the dependency graph, not above it.
import { createRequire } from 'node:module'
import type * as Uws from 'uWebSockets.js'

export type UwsModule = typeof Uws
const CANDIDATES = ['uWebSockets.js', '@btc-vision/uwebsockets.js'] as const
const require = createRequire(import.meta.url)
let cached: UwsModule | null = null

/** @throws Error with code ERR_METRICS_UWS_UNAVAILABLE when no native build loads. */
export function loadUwsForHttp(): UwsModule {
  if (cached !== null) return cached
  const why: string[] = []
  for (const name of CANDIDATES) {
    try {
      const m = require(name) as UwsModule
      // the trufflesuite package falls back to a JS emulation when its binary does not load
      if (typeof m.App === 'function' && Function.prototype.toString.call(m.App).includes('[native code]')) return (cached = m)
      why.push(`${name}: not the native build`)
    } catch (e) {
      why.push(`${name}: ${(e as Error).message.split('\n', 1)[0]}`)
    }
  }
  throw Object.assign(new Error(`uWebSockets.js is not available; metrics/admin HTTP cannot start (${why.join('; ')})`), { code: 'ERR_METRICS_UWS_UNAVAILABLE' })
}
