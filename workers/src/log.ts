// Worker-side JSON-lines logger (same line format as @sipedge/transport's): lifecycle and rate-
// limited errors only, written synchronously to stderr, never per message.
import { writeSync } from 'node:fs'
import type { HandlerLogger } from './types.js'

export function workerLogger(module: string, workerIndex: number): HandlerLogger {
  const out = (level: string, msg: string, fields?: Record<string, unknown>): void => {
    const rec: Record<string, unknown> = { level, time: new Date().toISOString(), module, worker: workerIndex, msg }
    if (fields !== undefined) for (const k of Object.keys(fields)) {
      const v = fields[k]
      rec[k] = v instanceof Error ? { type: v.name, message: v.message, code: (v as { code?: unknown }).code, stack: v.stack } : v
    }
    try { writeSync(2, JSON.stringify(rec) + '\n') } catch { /* closed stderr must not kill the worker */ }
  }
  return {
    debug: () => {},
    info: (m, f) => out('info', m, f),
    warn: (m, f) => out('warn', m, f),
    error: (m, f) => out('error', m, f),
  }
}
