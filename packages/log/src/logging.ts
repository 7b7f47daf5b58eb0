// Structured JSON logging with pino, written off the hot path: pino formats a line in the calling
// thread (only when the level is enabled) and hands the bytes to a log thread (pino.transport /
// thread-stream) that does the file I/O, reopen and rotation. Workers do not get a log thread of
// their own: their loggers post batched lines to the primary over a MessagePort (attachPort).
import { fileURLToPath } from 'node:url'
import type { MessagePort } from 'node:worker_threads'
import { pino, type Logger, type LevelWithSilent, type DestinationStream } from 'pino'
import type { DestinationOptions } from './destination.js'
import type { RotateOptions } from './sink.js'

export type { Logger } from 'pino'
export type LogLevel = LevelWithSilent

export interface LoggingOptions {
  /** Default level (config logging.level). */
  level?: LogLevel
  /** Per-module levels (config logging.modules), e.g. { dispatcher: 'debug' }. */
  modules?: Readonly<Record<string, LogLevel>>
  /** Log file; null: standard output (config logging.file). */
  file?: string | null
  /** File descriptor when there is no file (default 1). */
  fd?: number
  rotate?: RotateOptions
  /** Fields on every line (e.g. { node: 'edge-a' }). pid and hostname are left out. */
  base?: Record<string, unknown>
}

/** Levels in pino's numbering, for comparing. */
const LEVEL_VALUES: Record<LogLevel, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity }

const common = (base: Record<string, unknown> | undefined) => ({
  base: base ?? null,
  messageKey: 'msg',
  timestamp: pino.stdTimeFunctions.isoTime,
  formatters: { level: (label: string) => ({ level: label }) },
})

export interface Logging {
  /** The logger of a module ("transport", "dispatcher", ...): a child with { module } and the module's level. Cached. */
  logger(module: string): Logger
  /** Apply new levels (config reload); existing module loggers change in place. */
  configure(level: LogLevel, modules: Readonly<Record<string, LogLevel>>): void
  /** Reopen the log file (SIGHUP after logrotate moved it). Resolves when the log thread has reopened. */
  reopen(): Promise<void>
  /** Rotate now (the built-in rotation), independently of size/interval. */
  rotate(): Promise<void>
  /** Resolves when every line logged so far has been written by the log thread. */
  flush(): Promise<void>
  /** Resolves once the log thread runs and its file is open. */
  ready(): Promise<void>
  /** Flush and stop the log thread. */
  close(): Promise<void>
  /** Receive lines from a worker's createPortLogging() logger; returns a detach function. */
  attachPort(port: MessagePort): () => void
}

interface ThreadStreamLike extends DestinationStream {
  worker: import('node:worker_threads').Worker
  flush(cb: (err?: Error) => void): void
  end(): void
  on(ev: string, fn: (...a: unknown[]) => void): unknown
  once(ev: string, fn: (...a: unknown[]) => void): unknown
  closed?: boolean
}

class ModuleLevels {
  level: LogLevel
  modules: Readonly<Record<string, LogLevel>>
  readonly loggers = new Map<string, Logger>()
  constructor(level: LogLevel, modules: Readonly<Record<string, LogLevel>>) {
    this.level = level
    this.modules = modules
  }
  levelOf(module: string): LogLevel { return this.modules[module] ?? this.level }
  get(root: Logger, module: string): Logger {
    let l = this.loggers.get(module)
    if (l === undefined) {
      l = root.child({ module }, { level: this.levelOf(module) })
      this.loggers.set(module, l)
    }
    return l
  }
  configure(root: Logger, level: LogLevel, modules: Readonly<Record<string, LogLevel>>): void {
    this.level = level
    this.modules = { ...modules }
    root.level = level
    for (const [m, l] of this.loggers) l.level = this.levelOf(m)
  }
}

/** The primary's logging: one log thread for the whole process. */
export function createLogging(opts: LoggingOptions = {}): Logging {
  const dest: DestinationOptions = {
    file: opts.file ?? null,
    ...(opts.fd !== undefined ? { fd: opts.fd } : {}),
    ...(opts.rotate !== undefined ? { rotate: opts.rotate } : {}),
  }
  const stream = pino.transport({
    target: fileURLToPath(new URL('./destination.js', import.meta.url)),
    options: dest,
  }) as unknown as ThreadStreamLike
  const levels = new ModuleLevels(opts.level ?? 'info', opts.modules ?? {})
  const root = pino({ ...common(opts.base), level: levels.level }, stream)

  let nextId = 1
  const pending = new Map<number, { resolve: () => void; reject: (e: Error) => void }>()
  stream.worker.on('message', (m: { sipedgeLog?: string; id?: number; error?: string }) => {
    if (m?.sipedgeLog !== 'done' || typeof m.id !== 'number') return
    const p = pending.get(m.id)
    if (p === undefined) return
    pending.delete(m.id)
    if (m.error !== undefined) p.reject(Object.assign(new Error(m.error), { code: 'ERR_LOG_REOPEN' }))
    else p.resolve()
  })
  // pino leaves the log thread unref'd (it must not keep the process alive); while we wait for
  // an answer from it, a timer keeps this thread's event loop from ending under the await.
  const held = async <T>(p: Promise<T>): Promise<T> => {
    const keep = setInterval(() => {}, 1000)
    try {
      return await p
    } finally {
      clearInterval(keep)
    }
  }
  const control = (op: 'reopen' | 'rotate'): Promise<void> => held(new Promise((resolve, reject) => {
    const id = nextId++
    pending.set(id, { resolve, reject })
    stream.worker.postMessage({ sipedgeLog: op, id })
  }))
  const flush = (): Promise<void> => held(new Promise((resolve, reject) => root.flush(err => (err ? reject(err) : resolve()))))
  let closing: Promise<void> | null = null
  let started = false
  stream.once('ready', () => { started = true })
  const ready = (): Promise<void> => (started ? Promise.resolve() : held(new Promise(resolve => stream.once('ready', () => resolve()))))
  const ports = new Set<() => void>()

  return {
    logger: module => levels.get(root, module),
    configure: (level, modules) => levels.configure(root, level, modules),
    reopen: async () => {
      await ready()
      // lines logged before the reopen are handed over first: they land in the old file (if
      // still open there) or the new one, never nowhere
      await flush()
      await control('reopen')
    },
    rotate: async () => {
      await ready()
      await flush()
      await control('rotate')
    },
    flush,
    ready,
    close: () => {
      closing ??= (async () => {
        for (const detach of ports) detach()
        await flush().catch(() => {})
        await held(new Promise<void>(resolve => {
          stream.once('close', () => resolve())
          stream.end()
        }))
      })()
      return closing
    },
    attachPort(port: MessagePort) {
      const onMessage = (m: unknown): void => {
        if (typeof m === 'string') stream.write(m)
      }
      port.on('message', onMessage)
      const detach = (): void => {
        port.off('message', onMessage)
        ports.delete(detach)
      }
      ports.add(detach)
      return detach
    },
  }
}

export interface PortLogging {
  logger(module: string): Logger
  configure(level: LogLevel, modules: Readonly<Record<string, LogLevel>>): void
  /** Post what is buffered now (also done automatically on the next turn of the event loop). */
  flush(): void
}

/**
 * Logging inside a worker thread: same line format and per-module levels, but lines are batched
 * and posted to the primary (one message per event-loop turn at most, not one per line), which
 * writes them through its log thread (Logging.attachPort). Use a dedicated MessageChannel.
 */
export function createPortLogging(port: MessagePort, opts: Pick<LoggingOptions, 'level' | 'modules' | 'base'> = {}): PortLogging {
  let buf = ''
  let scheduled = false
  const post = (): void => {
    scheduled = false
    if (buf.length === 0) return
    const s = buf
    buf = ''
    port.postMessage(s)
  }
  const dest: DestinationStream = {
    write(s: string) {
      buf += s
      if (!scheduled) {
        scheduled = true
        setImmediate(post)
      }
    },
  }
  const levels = new ModuleLevels(opts.level ?? 'info', opts.modules ?? {})
  const root = pino({ ...common(opts.base), level: levels.level }, dest)
  return {
    logger: module => levels.get(root, module),
    configure: (level, modules) => levels.configure(root, level, modules),
    flush: post,
  }
}

export function levelValue(level: LogLevel): number { return LEVEL_VALUES[level] }
