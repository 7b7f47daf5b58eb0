// workers: 0 — the handler on the primary thread (EngineOptions.inProcessHandler), with what a
// worker thread adds around it: every message in and out counted into the metrics block of the
// thread that runs it (the primary's own, block 0), SIP tracing, the admin API's trace filters,
// the GC after a burst (idle-collect.ts), and the handler's gauges sampled when Prometheus scrapes (the `threadSample` query). The
// primary samples its own thread gauges (busy time, heap, event-loop delay) itself: one sampler
// for the thread, not two.
import { THREAD_SAMPLE, type WorkerMetrics } from '@sipedge/metrics'
import type { Tracer } from '@sipedge/log'
import { HandlerHost, type TraceFilters } from './host.js'
import { IdleCollector, logCollection } from './idle-collect.js'
import type { CreateHandler, FrameMeta, MessageHandler } from './types.js'
import type { HandlerContext as FrameHandlerContext, MessageHandler as FrameMessageHandler } from '@sipedge/frame'

export interface InProcessHostOptions {
  /** Module exporting `createHandler(ctx)` (e.g. proxyHandlerUrl). */
  handlerUrl: URL | string
  /** The primary's metrics block (MetricsAggregator.main()); absent: nothing counted. */
  metrics?: () => WorkerMetrics | null
  /** Where traced messages go (e.g. new Tracer(logging.logger('trace'))); absent: no tracing. */
  tracer?: Tracer
  /** Trace filters in force at start. */
  traceFilters?: TraceFilters
  /** The process's compaction gate (createCompactionGate(), also given to the workers); absent: one of its own. */
  compaction?: SharedArrayBuffer
}

/** EngineOptions.inProcessHandler for a handler module run on the primary thread. */
export function inProcessHost(opts: InProcessHostOptions): (ctx: FrameHandlerContext) => Promise<FrameMessageHandler> {
  return async (ctx) => {
    const host = new HandlerHost(opts.metrics?.() ?? null, opts.tracer ?? null, new IdleCollector({ onCollect: logCollection(ctx.log), ...(opts.compaction !== undefined ? { compaction: opts.compaction } : {}) }))
    if (opts.traceFilters !== undefined) host.setTraceFilters({ filters: opts.traceFilters })
    const mod = await import(String(opts.handlerUrl)) as { createHandler: CreateHandler }
    const { metrics: _none, ...rest } = ctx
    const handler = await mod.createHandler({
      ...rest,
      send: host.wrapSend((meta, payload) => ctx.send(meta, payload)),
      ...(host.handlerMetrics !== undefined ? { metrics: host.handlerMetrics } : {}),
    })
    return new InProcessHandler(host, handler)
  }
}

/** The handler as the engine drives it in-process: counted and traced like in a worker thread. */
class InProcessHandler implements FrameMessageHandler {
  readonly #host: HandlerHost
  readonly #h: MessageHandler

  constructor(host: HandlerHost, handler: MessageHandler) {
    this.#host = host
    this.#h = handler
  }

  onFrame(meta: FrameMeta, payload: Uint8Array): void {
    const host = this.#host
    host.received(meta, payload)
    if (host.metrics !== null) host.metrics.messages(1)
    this.#h.onFrame(meta, payload)
  }

  onTransportError(meta: FrameMeta): void {
    this.#h.onTransportError?.(meta)
  }

  onControl(msg: { type: string; [k: string]: unknown }): void {
    if (msg.type === 'trace') this.#host.setTraceFilters(msg)
    else this.#h.onControl?.(msg)
  }

  onQuery(what: string, args: unknown): unknown {
    if (what === THREAD_SAMPLE) {
      // the scrape's sample: the handler's gauges into the primary's block
      const m = this.#host.metrics
      if (m !== null) this.#h.sample?.(m)
      return null
    }
    if (this.#h.onQuery === undefined) throw Object.assign(new Error('the handler answers no queries'), { code: 'ERR_QUERY_UNSUPPORTED' })
    return this.#h.onQuery(what, args)
  }

  close(): Promise<void> | void {
    this.#host.collector?.close()
    return this.#h.close?.()
  }
}
