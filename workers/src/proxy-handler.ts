// The host of the proxy core in a worker thread: FrameMeta <-> Destination mapping around
// @sipedge/proxy, the feature modules of @sipedge/modules loaded and checked at start, and the
// stores they ask for opened here (once per URL) and closed at the end. Loaded by URL
// (EngineOptions.handlerUrl = new URL('./proxy-handler.js', ...)).
//
// Buffers: the payload is a view into the inbound ring, valid only during onFrame. It is handed
// to the proxy as a Buffer over the same memory (no copy); the proxy copies a request when a
// transaction keeps it, and handles ACKs and responses synchronously on the view.
import { FLAG_KEEPALIVE, FLAG_OPEN_CONNECTION, kindOf, nameOf } from '@sipedge/frame'
import { defaultConfig, type FrozenConfig } from '@sipedge/config'
import { startProxy, type Proxy, type Destination, type Source, type ControlMessage } from '@sipedge/proxy'
import { MODULES, FLOW_FAILED, WATCH_FLOW, type DispatcherModule } from '@sipedge/modules'
import { openStores, type Stores } from '@sipedge/store'
import { HISTOGRAMS, METRICS_LAYOUT, type WorkerMetrics } from '@sipedge/metrics'

const O_STORE_ERRORS = METRICS_LAYOUT.offsets.storeErrors
import type { CreateHandler, HandlerContext, MessageHandler, FrameMeta } from './types.js'
import { ProxyMetricsSink, dispatcherInfo, publishProxyGauges } from './proxy-metrics.js'

/** Sweep interval of the stores' expiry index on worker 0 (the others do not sweep). */
const SWEEP_MS = 1000

const EMPTY = Buffer.alloc(0)

export class ProxyHandler implements MessageHandler {
  readonly ctx: HandlerContext
  proxy!: Proxy
  /** Reused outbound header: ctx.send copies meta and payload before returning. */
  private readonly out: FrameMeta
  sendFailures = 0
  badFrames = 0
  readonly sink: ProxyMetricsSink | null
  private readonly stores: Map<string, Promise<Stores>>

  private constructor(ctx: HandlerContext, config: FrozenConfig) {
    this.ctx = ctx
    this.out = { transport: 0, socketId: 0, connId: 0, family: 4, address: '', port: 0, recvTime: 0, flags: 0 }
    this.sink = ctx.metrics !== undefined ? new ProxyMetricsSink(ctx.metrics, config) : null
    this.stores = new Map()
  }

  /** Builds the core with the modules this configuration enables. Rejects when a required store cannot be opened. */
  static async create(ctx: HandlerContext): Promise<ProxyHandler> {
    const config = (ctx.config ?? defaultConfig()) as FrozenConfig
    const h = new ProxyHandler(ctx, config)
    const post = (ctx as HandlerContext & { postControl?: (m: ControlMessage) => void }).postControl
    try {
      h.proxy = await startProxy({
        config,
        workerIndex: ctx.workerIndex,
        workers: ctx.inProcess ? 1 : Math.max(1, config.workers),
        send: (dest, data) => h.send(dest, data),
        now: ctx.now,
        // worker.ts and the in-process host give performance.timeOrigin + performance.now()
        monotonicNow: ctx.nowJumps !== true,
        log: ctx.log,
        // The nat module's "keep this connection alive" is a frame to the primary (which owns the
        // connection), not a message for the other workers.
        postControl: (m: ControlMessage) => {
          if (m.type === WATCH_FLOW) h.watchFlow(m)
          else if (post !== undefined) post.call(ctx, m)
        },
        ...(h.sink !== null ? { metrics: h.sink } : {}),
      }, MODULES, {
        openStores: url => h.openStore(url),
        onStoreError: (module, url, err) => ctx.log.warn('store unavailable: module runs without it', { module, url, err: String(err) }),
      })
    } catch (err) {
      await h.closeStores()
      throw err
    }
    const d = h.proxy.module<DispatcherModule>('dispatcher')
    if (d !== undefined && h.sink !== null) {
      const sink = h.sink
      d.probeObserver = (set, uri, result) => sink.probe(set, uri, result)
    }
    return h
  }

  /** One Stores per URL for all modules of this worker (lmdb: one environment per process anyway). */
  private openStore(url: string): Promise<Stores> {
    let p = this.stores.get(url)
    if (p === undefined) {
      const w = this.ctx.metrics?.writer
      p = openStores(url, {
        sweepIntervalMs: this.ctx.workerIndex === 0 ? SWEEP_MS : 0,
        // issue 15: Redis round trips and failures into this worker's metrics block
        ...(w !== undefined ? { onCommand: (s: number, ok: boolean) => { if (ok) w.observe(HISTOGRAMS.storeRtt, s); else w.f[O_STORE_ERRORS]! += 1 } } : {}),
      })
      this.stores.set(url, p)
      p.catch(() => this.stores.delete(url))
    }
    return p
  }

  private async closeStores(): Promise<void> {
    const all = [...this.stores.values()]
    this.stores.clear()
    await Promise.all(all.map(p => p.then(s => s.close(), () => undefined)))
  }

  onFrame(meta: FrameMeta, payload: Uint8Array): void {
    const transport = nameOf(meta.transport)
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

  /**
   * The primary could not reach a destination this worker sent to (connection refused or reset,
   * TLS handshake failure): its client transactions fail now and fail over (RFC 3261 §8.1.3.1),
   * instead of waiting for Timer B/F.
   */
  onTransportError(meta: FrameMeta): void {
    const transport = nameOf(meta.transport)
    if (transport === undefined) return
    this.proxy.transportError({ transport, address: meta.address, port: meta.port, ...(meta.connId !== 0 ? { connId: meta.connId } : {}) })
    // A connection the primary kept alive for a client behind NAT stopped answering: its
    // registrations go (docs/nat.md).
    if ((meta.flags & FLAG_KEEPALIVE) !== 0 && meta.connId !== 0) this.proxy.onControl({ type: FLOW_FAILED, connId: meta.connId })
  }

  /** Asks the primary to keep a stream connection alive (FLAG_KEEPALIVE, empty payload). */
  private watchFlow(msg: ControlMessage): void {
    const m = msg as Record<string, unknown>
    const transport = m['transport']
    const address = m['address']
    const connId = Number(m['connId'])
    if (typeof transport !== 'string' || typeof address !== 'string' || !(connId > 0)) return
    const o = this.out
    o.transport = kindOf(transport)
    o.socketId = 0
    o.connId = connId
    o.family = address.includes(':') ? 6 : 4
    o.address = address
    o.port = Number(m['port'])
    o.recvTime = 0
    o.flags = FLAG_KEEPALIVE
    if (!this.ctx.send(o, EMPTY)) this.sendFailures++
  }

  private send(dest: Destination, data: Buffer | Buffer[]): void {
    const m = this.out
    const stream = dest.transport !== 'udp'
    const connId = dest.connId ?? 0
    m.transport = kindOf(dest.transport)
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
    if (msg.type === 'config') {
      this.sink?.setConfig(msg['config'] as FrozenConfig)
      this.ctx.log.info('configuration updated', { worker: this.ctx.workerIndex })
    }
  }

  /** docs/contracts.md "Control messages": stats, dispatcher, dialogs, dialog, transactions. */
  onQuery(what: string, args: unknown): unknown {
    switch (what) {
      case 'stats': return { worker: this.ctx.workerIndex, ...this.proxy.stats(), sendFailures: this.sendFailures, badFrames: this.badFrames }
      case 'transactions': return this.proxy.layer.stats()
      default: break
    }
    // The modules answer what they know (dispatcher, dialogs, dialog, ...).
    const r = this.proxy.query(what, args)
    if (r !== undefined) return r
    if (what === 'dispatcher') return dispatcherInfo(this.proxy)
    throw Object.assign(new Error(`unknown query "${what}"`), { code: 'ERR_QUERY_UNKNOWN' })
  }

  sample(m: WorkerMetrics): void {
    publishProxyGauges(this.proxy, m, this.sink)
  }

  async close(): Promise<void> {
    await this.proxy.close()
    await this.closeStores()
  }
}

export const createHandler: CreateHandler = ctx => ProxyHandler.create(ctx)
