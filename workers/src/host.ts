// What a thread that runs a message handler does around it, per message, whether that thread is
// a worker (worker.ts, frames from the rings) or the primary itself (workers: 0, in-process.ts):
// a start-line classification and two float64 increments into the thread's metrics block for
// every message in and out, the SIP trace of matching messages, the trace filters the admin API
// sets, and the message count of the GC after a burst (idle-collect.ts). No message, string or
// allocation per SIP message.
import { findCallId } from '@sipedge/sip'
import { nameOf } from '@sipedge/frame'
import { ResponseDirection, transportIndex, type WorkerMetrics } from '@sipedge/metrics'
import type { Tracer } from '@sipedge/log'
import { classify, RESPONSE_BASE } from './classify.js'
import type { IdleCollector } from './idle-collect.js'
import type { FrameMeta, HandlerMetrics } from './types.js'

type Payload = Uint8Array | readonly Uint8Array[]

export interface TraceFilters { callIds: string[]; sources: string[] }

export class HandlerHost {
  /** This thread's metrics block, or null (nothing counted). */
  readonly metrics: WorkerMetrics | null
  /** What the handler gets as ctx.metrics (its `forwardedNext` tells countOut a response's direction). */
  readonly handlerMetrics: HandlerMetrics | undefined
  readonly tracer: Tracer | null
  /** The GC after a burst, told of every message (idle-collect.ts), or null. */
  readonly collector: IdleCollector | null

  constructor(metrics: WorkerMetrics | null, tracer: Tracer | null, collector: IdleCollector | null = null) {
    this.metrics = metrics
    this.collector = collector
    this.handlerMetrics = metrics !== null ? { writer: metrics, forwardedNext: false } : undefined
    this.tracer = tracer
  }

  /** One message in, before the handler sees it. */
  received(meta: FrameMeta, payload: Uint8Array): void {
    if (this.collector !== null) this.collector.note()
    if (this.metrics !== null) this.countIn(meta, payload)
    if (this.tracer !== null && this.tracer.active) this.trace('in', meta, payload)
  }

  /** The handler's send, counted and traced: `send` is the thread's own (ring push, or the socket). */
  wrapSend(send: (meta: FrameMeta, payload: Payload) => boolean): (meta: FrameMeta, payload: Payload) => boolean {
    return (meta, payload) => {
      if (this.tracer !== null && this.tracer.active) this.trace('out', meta, payload)
      if (send(meta, payload)) {
        if (this.metrics !== null) this.countOut(meta, payload)
        return true
      }
      if (this.handlerMetrics !== undefined) this.handlerMetrics.forwardedNext = false
      return false
    }
  }

  /** A `trace` control message (`{ type: 'trace', filters }`, the admin API's). */
  setTraceFilters(msg: { [k: string]: unknown }): void {
    const f = (msg['filters'] ?? {}) as { callIds?: unknown; sources?: unknown }
    const list = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [])
    this.tracer?.setFilters({ callIds: list(f.callIds), sources: list(f.sources) })
  }

  private countIn(meta: FrameMeta, payload: Uint8Array): void {
    const c = classify(payload)
    if (c < 0) return
    if (c >= RESPONSE_BASE) this.metrics!.response(ResponseDirection.Received, c - RESPONSE_BASE)
    else this.metrics!.requestReceived(c, transportIndex(meta.transport))
  }

  private countOut(meta: FrameMeta, payload: Payload): void {
    const c = classify(payload)
    const hm = this.handlerMetrics!
    if (c >= RESPONSE_BASE) {
      this.metrics!.response(hm.forwardedNext ? ResponseDirection.Forwarded : ResponseDirection.Local, c - RESPONSE_BASE)
    } else if (c >= 0) {
      this.metrics!.requestSent(c, transportIndex(meta.transport))
    }
    hm.forwardedNext = false
  }

  private trace(direction: 'in' | 'out', meta: FrameMeta, payload: Payload): void {
    const buf = payload instanceof Uint8Array ? payload : Buffer.concat(payload as Uint8Array[])
    const at = findCallId(buf)
    const callId = at < 0 ? '' : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).toString('latin1', Math.floor(at / 0x10000), Math.floor(at / 0x10000) + (at % 0x10000))
    const tracer = this.tracer!
    if (!tracer.matches(callId, meta.address, meta.port)) return
    tracer.trace(direction, { callId, address: meta.address, port: meta.port, transport: nameOf(meta.transport) ?? String(meta.transport) }, buf)
  }
}
