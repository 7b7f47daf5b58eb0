// The proxy core as the worker's message handler: FrameMeta <-> Destination mapping around
// @sipedge/proxy. Loaded by URL (EngineOptions.handlerUrl = new URL('./proxy-handler.js', ...)).
//
// Buffers: the payload is a view into the inbound ring, valid only during onFrame. It is handed
// to the proxy as a Buffer over the same memory (no copy); the proxy copies a request when a
// transaction keeps it, and handles ACKs and responses synchronously on the view.
import { FLAG_OPEN_CONNECTION } from '@sipedge/ring'
import { defaultConfig, type FrozenConfig } from '@sipedge/config'
import { createProxy, type Proxy, type Destination, type Source, type TransportName, type ControlMessage } from '@sipedge/proxy'
import type { CreateHandler, HandlerContext, MessageHandler, FrameMeta } from './types.js'

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

  constructor(ctx: HandlerContext) {
    this.ctx = ctx
    this.out = { transport: 0, socketId: 0, connId: 0, family: 4, address: '', port: 0, recvTime: 0, flags: 0 }
    const config = (ctx.config ?? defaultConfig()) as FrozenConfig
    const post = (ctx as HandlerContext & { postControl?: (m: ControlMessage) => void }).postControl
    this.proxy = createProxy({
      config,
      workerIndex: ctx.workerIndex,
      workers: ctx.inProcess ? 1 : Math.max(1, config.workers),
      send: (dest, data) => this.send(dest, data),
      now: ctx.now,
      log: ctx.log,
      ...(post !== undefined ? { postControl: (m: ControlMessage) => post.call(ctx, m) } : {}),
    })
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
    if (msg.type === 'config') this.ctx.log.info('configuration updated', { worker: this.ctx.workerIndex })
  }

  close(): Promise<void> {
    return this.proxy.close()
  }
}

export const createHandler: CreateHandler = ctx => new ProxyHandler(ctx)
