// workers: 0 — the handler module runs on the primary thread, with no rings: the engine calls
// onFrame directly and the handler's send writes to the socket directly. The in-process baseline
// of the engine benchmark, and the simplest way to test a handler over real sockets.
import type { CreateHandler, FrameMeta, HandlerContext, MessageHandler } from '@sipedge/frame'
import { createFrameMeta } from '@sipedge/frame'
import { RateLimitedLog, type Logger } from './log.js'
import type { Counters } from './counters.js'
import type { FrameTarget } from './inbound.js'
import { QueryError } from './pool.js'

export class InProcessTarget implements FrameTarget {
  readonly handler: MessageHandler
  readonly #counters: Counters
  readonly #rl: RateLimitedLog
  // Transport-error reports wait for the next turn of the event loop: a report raised inside the
  // handler's own send (a connection that could not even be opened) must not re-enter it.
  readonly #reports: FrameMeta[] = []
  #flushScheduled = false
  #closed = false
  readonly #flush: () => void

  /** Loads the handler module and calls its createHandler with the in-process context. */
  static async load(handlerUrl: URL | string, ctx: {
    config: unknown
    send: (meta: FrameMeta, payload: Uint8Array | readonly Uint8Array[]) => boolean
    log: Logger
    counters: Counters
    /** The handler's postControl (a worker's `broadcast`): with one thread, only the primary hears it. */
    postControl?: (msg: { type: string; [k: string]: unknown }) => void
    /** Builds the handler instead of importing handlerUrl (EngineOptions.inProcessHandler). */
    create?: (ctx: HandlerContext) => Promise<MessageHandler>
  }): Promise<InProcessTarget> {
    const hctx: HandlerContext = {
      workerIndex: 0,
      config: ctx.config,
      send: ctx.send,
      now: () => performance.timeOrigin + performance.now(),
      log: ctx.log.child('handler'),
      inProcess: true,
      ...(ctx.postControl !== undefined ? { postControl: ctx.postControl } : {}),
    }
    let handler: MessageHandler
    if (ctx.create !== undefined) handler = await ctx.create(hctx)
    else {
      const mod = await import(String(handlerUrl)) as { createHandler: CreateHandler }
      handler = await mod.createHandler(hctx)
    }
    return new InProcessTarget(handler, ctx.counters, ctx.log)
  }

  constructor(handler: MessageHandler, counters: Counters, log: Logger) {
    this.handler = handler
    this.#counters = counters
    this.#rl = new RateLimitedLog(log, 'error')
    this.#flush = () => this.#deliverReports()
  }

  deliver(_hash: number, meta: FrameMeta, payload: Uint8Array): boolean {
    try {
      this.handler.onFrame(meta, payload)
    } catch (err) {
      this.#counters.handlerErrors++
      this.#rl.hit('handler threw', { err })
    }
    return true
  }

  transportError(_worker: number, meta: FrameMeta): boolean {
    if (this.#closed) return false
    this.#reports.push(createFrameMeta(meta)) // a copy: the caller's header is reused
    if (!this.#flushScheduled) {
      this.#flushScheduled = true
      setImmediate(this.#flush)
    }
    return true
  }

  #deliverReports(): void {
    this.#flushScheduled = false
    const list = this.#reports.splice(0)
    const h = this.handler
    if (h.onTransportError === undefined || this.#closed) return
    for (const m of list) {
      try {
        h.onTransportError(m)
      } catch (err) {
        this.#counters.handlerErrors++
        this.#rl.hit('handler threw', { err })
      }
    }
  }

  control(msg: unknown): void {
    this.handler.onControl?.(msg as { type: string })
  }

  async query(what: string, args: unknown): Promise<unknown> {
    if (this.handler.onQuery === undefined) throw new QueryError('ERR_QUERY_UNSUPPORTED', 'the handler answers no queries')
    return await this.handler.onQuery(what, args)
  }

  /** The handler's close() (SIGTERM drain); reports still queued are dropped. */
  async close(): Promise<void> {
    this.#closed = true
    await this.handler.close?.()
  }
}
