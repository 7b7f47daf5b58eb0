// WS and WSS listeners (RFC 7118, WebRTC clients): the engine's side of the uWebSockets.js server
// in ../ws.ts. A WebSocket message is one SIP message (RFC 7118 §5), so it goes to the inbound
// path whole; each connection has an entry in the connection table like a TCP one. uWS is
// server-only: WS peers are reached only over the connection they opened.
import { WS, WSS, nameOf } from '@sipedge/frame'
import { StreamConn, type ConnectionTable, type WsConnectionLike } from '../connections.js'
import { RateLimitedLog, type Logger } from '../log.js'
import type { Counters } from '../counters.js'
import type { TlsOptions } from '../tls-contexts.js'
import type { EngineLimits, RunState } from '../options.js'
import { transportError } from '../options.js'

interface WsListener { close(): void; port: number }
interface WsModule {
  startWsListener(opts: {
    proto: 'ws' | 'wss'; address: string; port: number; tls?: { cert: string; key: string }
    maxMessageSize: number; idleTimeoutMs: number
    sink: { onOpen(conn: WsConnectionLike): number; onMessage(connId: number, data: Buffer): void; onClose(connId: number): void; onPong?(connId: number): void }
  }): Promise<WsListener>
}

export interface WebSocketOptions {
  table: ConnectionTable
  counters: Counters
  limits: EngineLimits
  log: Logger
  state: RunState
  /** A whole SIP message (the inbound path). */
  onMessage: (conn: StreamConn, buf: Buffer) => void
  /** The connection is gone (StreamListeners.closed: out of the table). */
  onClosed: (conn: StreamConn) => void
  /** Traffic (a pong, a message) on a connection with a NAT keep-alive ping outstanding. */
  onAlive?: (conn: StreamConn) => void
  /** Source checks at accept (StreamOptions.admit); false refuses. */
  admit?: (address: string) => boolean
}

export class WebSocketListeners {
  readonly #o: WebSocketOptions
  readonly #listeners: WsListener[] = []
  readonly #rlRefused: RateLimitedLog

  constructor(o: WebSocketOptions) {
    this.#o = o
    this.#rlRefused = new RateLimitedLog(o.log, 'warn')
  }

  /** Listens for WS or WSS on address:port as listener `socketId`; resolves with the port bound. */
  async listen(socketId: number, kind: number, address: string, port: number, tls?: TlsOptions): Promise<number> {
    if (kind !== WS && kind !== WSS) throw transportError('ERR_TRANSPORT_OPTIONS', `not a WebSocket listener transport: ${kind}`)
    const cert = tls?.certificates[0]
    if (kind === WSS && cert === undefined) throw transportError('ERR_TRANSPORT_OPTIONS', 'wss listener without tls options')
    // Loaded on first use: a proxy without WS listeners never loads the uWS native module.
    const mod = await import(new URL('../ws.js', import.meta.url).href) as WsModule
    const o = this.#o
    const table = o.table
    const ws = await mod.startWsListener({
      proto: kind === WS ? 'ws' : 'wss',
      address,
      port,
      ...(cert !== undefined && kind === WSS ? { tls: { cert: cert.cert, key: cert.key } } : {}),
      maxMessageSize: o.limits.maxMessageSize,
      idleTimeoutMs: o.limits.idleTimeoutMs,
      sink: {
        onOpen: conn => this.#accept(conn, kind, socketId),
        onMessage: (id, data) => { const c = table.get(id); if (c !== undefined) { if (c.kaOutstanding) o.onAlive?.(c); o.onMessage(c, data) } },
        onPong: id => { const c = table.get(id); if (c !== undefined && c.kaOutstanding) o.onAlive?.(c) },
        onClose: id => { const c = table.get(id); if (c !== undefined) o.onClosed(c) },
      },
    })
    this.#listeners.push(ws)
    return ws.port
  }

  /** Closes every WS listener, and with it every WS connection (the last step of stop()). */
  close(): void {
    for (const w of this.#listeners) { try { w.close() } catch { /* already closed */ } }
  }

  #accept(ws: WsConnectionLike, kind: number, socketId: number): number {
    const o = this.#o
    if (o.state.draining || o.table.size >= o.limits.maxConnections) {
      o.counters.connRefused++
      this.#rlRefused.hit(o.state.draining ? 'connection refused: draining' : 'connection refused: max_connections reached', {
        transport: nameOf(kind), remote: ws.remoteAddress, maxConnections: o.limits.maxConnections,
      })
      queueMicrotask(() => { try { ws.close() } catch { /* gone */ } })
      return 0
    }
    if (o.admit !== undefined && !o.admit(ws.remoteAddress)) {
      queueMicrotask(() => { try { ws.close() } catch { /* gone */ } })
      return 0
    }
    const conn = new StreamConn(kind, socketId, ws.remoteAddress, ws.remotePort, false)
    conn.ws = ws
    o.table.add(conn)
    o.counters.connAccepted++
    return conn.id
  }
}
