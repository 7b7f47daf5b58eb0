// A small structured JSON-lines logger: one object per line with level, time, module, msg and
// fields. It is used for lifecycle events and rate-limited warnings only, never per message
// (ARCHITECTURE.md: no synchronous log I/O on the hot path). pino replaces it in a later issue;
// the call shape (`log.info(msg, fields)`) is kept compatible with a pino child logger.
import { openSync, writeSync, closeSync } from 'node:fs'

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent'
const LEVELS: Record<LogLevel, number> = { debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: 100 }

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void
  info(msg: string, fields?: Record<string, unknown>): void
  warn(msg: string, fields?: Record<string, unknown>): void
  error(msg: string, fields?: Record<string, unknown>): void
  fatal(msg: string, fields?: Record<string, unknown>): void
  isLevelEnabled(level: LogLevel): boolean
  child(module: string): Logger
  /** Reopen the log file (SIGHUP after logrotate moved it); a no-op for stdout/stderr. */
  reopen(): void
}

export interface LoggerOptions {
  level?: LogLevel
  module?: string
  /** File path to append to; default: stderr (fd 2). */
  file?: string
  /** Write to this function instead (tests). */
  write?: (line: string) => void
}

class Sink {
  fd: number
  readonly file: string | undefined
  readonly write: ((line: string) => void) | undefined
  constructor(file: string | undefined, write: ((line: string) => void) | undefined) {
    this.file = file
    this.write = write
    this.fd = file !== undefined ? openSync(file, 'a') : 2
  }
  out(line: string): void {
    if (this.write !== undefined) { this.write(line); return }
    try { writeSync(this.fd, line) } catch { /* a full disk or closed pipe must not take the proxy down */ }
  }
  reopen(): void {
    if (this.file === undefined) return
    const old = this.fd
    this.fd = openSync(this.file, 'a')
    if (old > 2) try { closeSync(old) } catch { /* already closed */ }
  }
}

function errorFields(v: unknown): unknown {
  if (v instanceof Error) {
    const o: Record<string, unknown> = { type: v.name, message: v.message }
    const code = (v as { code?: unknown }).code
    if (code !== undefined) o['code'] = code
    if (v.stack !== undefined) o['stack'] = v.stack
    return o
  }
  return v
}

class JsonLogger implements Logger {
  readonly #sink: Sink
  readonly #level: number
  readonly #levelName: LogLevel
  readonly #module: string
  constructor(sink: Sink, level: LogLevel, module: string) {
    this.#sink = sink
    this.#level = LEVELS[level]
    this.#levelName = level
    this.#module = module
  }
  #log(level: LogLevel, msg: string, fields: Record<string, unknown> | undefined): void {
    if (LEVELS[level] < this.#level) return
    const rec: Record<string, unknown> = { level, time: new Date().toISOString(), module: this.#module, msg }
    if (fields !== undefined) for (const k of Object.keys(fields)) rec[k] = errorFields(fields[k])
    let line: string
    try { line = JSON.stringify(rec) } catch { line = JSON.stringify({ level, time: rec['time'], module: this.#module, msg }) }
    this.#sink.out(line + '\n')
  }
  debug(msg: string, fields?: Record<string, unknown>): void { this.#log('debug', msg, fields) }
  info(msg: string, fields?: Record<string, unknown>): void { this.#log('info', msg, fields) }
  warn(msg: string, fields?: Record<string, unknown>): void { this.#log('warn', msg, fields) }
  error(msg: string, fields?: Record<string, unknown>): void { this.#log('error', msg, fields) }
  fatal(msg: string, fields?: Record<string, unknown>): void { this.#log('fatal', msg, fields) }
  isLevelEnabled(level: LogLevel): boolean { return LEVELS[level] >= this.#level }
  child(module: string): Logger { return new JsonLogger(this.#sink, this.#levelName, module) }
  reopen(): void { this.#sink.reopen() }
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  return new JsonLogger(new Sink(opts.file, opts.write), opts.level ?? 'info', opts.module ?? 'sipedge')
}

/** Logs the first occurrence at once and then at most one summary line per interval with the count. */
export class RateLimitedLog {
  #last = 0
  #suppressed = 0
  constructor(private readonly log: Logger, private readonly level: 'warn' | 'info' | 'error', private readonly intervalMs = 10_000) {}
  hit(msg: string, fields?: Record<string, unknown>): void {
    const now = Date.now()
    if (now - this.#last < this.intervalMs) { this.#suppressed++; return }
    const f: Record<string, unknown> = { ...fields }
    if (this.#suppressed > 0) f['suppressed'] = this.#suppressed
    this.#suppressed = 0
    this.#last = now
    this.log[this.level](msg, f)
  }
}
