// The proxy core as the worker's message handler: FrameMeta <-> Destination mapping around
// @sipedge/proxy. Loaded by URL (EngineOptions.handlerUrl = new URL('./proxy-handler.js', ...)).
//
// Buffers: the payload is a view into the inbound ring, valid only during onFrame. It is handed
// to the proxy as a Buffer over the same memory (no copy); the proxy copies a request when a
// transaction keeps it, and handles ACKs and responses synchronously on the view.
import { FLAG_OPEN_CONNECTION } from '@sipedge/ring'
import { defaultConfig, type FrozenConfig } from '@sipedge/config'
import { createProxy, openRegistrar, attachDialogStore, type Proxy, type Destination, type Registrar, type Source, type TransportName, type ControlMessage } from '@sipedge/proxy'
import type { WorkerMetrics } from '@sipedge/metrics'
import type { CreateHandler, HandlerContext, MessageHandler, FrameMeta } from './types.js'
import { ProxyMetricsSink, dispatcherInfo, publishProxyGauges } from './proxy-metrics.js'

/** FrameMeta.transport numbers (@sipedge/ring TransportKind) <-> names. */
const NAME_BY_KIND: readonly (TransportName | undefined)[] = [undefined, 'udp', 'tcp', 'tls', 'ws', 'wss']
const KIND_BY_NAME: Readonly<Record<TransportName, number>> = { udp: 1, tcp: 2, tls: 3, ws: 4, wss: 5 }

export class ProxyHandler implements MessageHandler {
  readonly ctx: HandlerContext
  readonly proxy: Proxy
  /** Reused outbound header: ctx.send copies meta and payload before returning. */
  private readonly out: FrameMeta
  sendFailures = 0
  badFrames = 0
  private readonly sink: ProxyMetricsSink | null

  constructor(ctx: HandlerContext, registrar?: Registrar) {
    this.ctx = ctx
    this.out = { transport: 0, socketId: 0, connId: 0, family: 4, address: '', port: 0, recvTime: 0, flags: 0 }
    const config = (ctx.config ?? defaultConfig()) as FrozenConfig
    const post = (ctx as HandlerContext & { postControl?: (m: ControlMessage) => void }).postControl
    this.sink = ctx.metrics !== undefined ? new ProxyMetricsSink(ctx.metrics, config) : null
    this.proxy = createProxy({
      config,
      workerIndex: ctx.workerIndex,
      workers: ctx.inProcess ? 1 : Math.max(1, config.workers),
      send: (dest, data) => this.send(dest, data),
      now: ctx.now,
      log: ctx.log,
      ...(post !== undefined ? { postControl: (m: ControlMessage) => post.call(ctx, m) } : {}),
      ...(this.sink !== null ? { metrics: this.sink } : {}),
      ...(registrar !== undefined ? { registrar } : {}),
    })
    // Dialog mirror (dialog.store, docs/dispatcher.md): opened in the background, never awaited per message.
    attachDialogStore(this.proxy.dialogs, config, ctx.workerIndex).catch((err: unknown) =>
      ctx.log.warn('dialog store unavailable: dialogs kept in this worker only', { err: String(err) }))
  }

  onFrame(meta: FrameMeta, payload: Uint8Array): void {
    const transport = NAME_BY_KIND[meta.transport]
    if (transport === undefined) { this.badFrames++; return }
    const buf = Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength)
    // A fresh object: a server transaction keeps it as the destination of its responses.
    const source: Source = {
      transport,
      address: meta.address,
      port: meta.port,
      connId: meta.connId,
      socketId: meta.socketId,
      recvTime: meta.recvTime,
    }
    this.proxy.receive(buf, source)
  }

  private send(dest: Destination, data: Buffer | Buffer[]): void {
    const m = this.out
    const stream = dest.transport !== 'udp'
    const connId = dest.connId ?? 0
    m.transport = KIND_BY_NAME[dest.transport]
    m.socketId = dest.socketId ?? 0
    m.connId = connId
    m.family = dest.address.includes(':') ? 6 : 4
    m.address = dest.address
    m.port = dest.port
    m.recvTime = 0
    // No connection named: ask the primary to reuse one to address:port or open it.
    m.flags = stream && connId === 0 ? FLAG_OPEN_CONNECTION : 0
    if (!this.ctx.send(m, data)) this.sendFailures++ // like a lost datagram: retransmission covers it
  }

  onControl(msg: { type: string; [k: string]: unknown }): void {
    this.proxy.onControl(msg as ControlMessage)
    if (msg.type === 'config') this.sink?.setConfig(msg['config'] as FrozenConfig)
    if (msg.type === 'config') this.ctx.log.info('configuration updated', { worker: this.ctx.workerIndex })
  }

  /** docs/contracts.md "Control messages": stats, dispatcher, dialogs, dialog, transactions. */
  onQuery(what: string, args: unknown): unknown {
    // The proxy answers what it knows (dispatcher, dialogs, ...); the rest is answered here.
    const q = (this.proxy as Proxy & { query?: (what: string, args: unknown) => unknown }).query
    if (typeof q === 'function' && what !== 'stats') {
      const r = q.call(this.proxy, what, args)
      if (r !== undefined) return r
    }
    switch (what) {
      case 'stats': return { worker: this.ctx.workerIndex, ...this.proxy.stats(), sendFailures: this.sendFailures, badFrames: this.badFrames }
      case 'transactions': return this.proxy.layer.stats()
      case 'dispatcher': return dispatcherInfo(this.proxy)
      default: throw Object.assign(new Error(`unknown query "${what}"`), { code: 'ERR_QUERY_UNKNOWN' })
    }
  }

  sample(m: WorkerMetrics): void {
    publishProxyGauges(this.proxy, m, this.sink)
  }

  close(): Promise<void> {
    return this.proxy.close()
  }
}

/** True when a route sends requests to the registrar (register) or the location service (lookup). */
function usesLocation(config: FrozenConfig): boolean {
  return config.routes.some(r => r.action.type === 'register' || r.action.type === 'lookup')
}

/**
 * Each worker opens the location store itself (lmdb: one environment shared by the threads of
 * the process; redis: a client per worker); worker 0 runs the expiry sweep.
 */
export const createHandler: CreateHandler = async ctx => {
  const config = (ctx.config ?? defaultConfig()) as FrozenConfig
  const registrar = usesLocation(config)
    ? await openRegistrar({ config, workerIndex: ctx.workerIndex, log: ctx.log })
    : undefined
  return new ProxyHandler(ctx, registrar)
}
