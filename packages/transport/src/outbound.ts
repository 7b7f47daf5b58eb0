// The outbound path: one frame a worker (or the in-process handler) produced -> its socket.
// UDP from the listener the request came in on; TCP/TLS/WS over the connection named by connId,
// or one reused or opened to address:port (RFC 3261 §18.1.1, RFC 5923). Ring payloads are views,
// so each is copied once before it is handed to a socket; stream writes are corked for a ring
// batch and uncorked at its end. See docs/architecture.md steps 5-6 and "The connection table".
//
// Transport errors go back to the worker that sent the frames (RFC 3261 §17.1.4: the client
// transaction learns of the failure now, not at Timer B/F): a connection that could not be
// opened, failed to connect or to finish its TLS handshake, or failed while frames of a worker
// were still being written. One report per worker per failure, a frame with FLAG_TRANSPORT_ERROR
// naming the destination (FrameTarget.transportError).
import { connect as tcpConnect, isIP, type Socket } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { readFileSync } from 'node:fs'
import { UDP, TCP, TLS, WS, WSS, FLAG_CLOSE_AFTER_SEND, FLAG_OPEN_CONNECTION, FLAG_TRANSPORT_ERROR, FLAG_KEEPALIVE, nameOf, createFrameMeta, type FrameMeta } from '@sipedge/frame'
import type { FrameHandler } from '@sipedge/ring'
import { StreamConn, type ConnectionTable } from './connections.js'
import { RateLimitedLog, type Logger } from './log.js'
import type { Counters } from './counters.js'
import type { UdpListeners } from './listeners/udp.js'
import type { StreamListeners } from './listeners/stream.js'
import { NO_TARGET, type FrameTarget } from './inbound.js'
import type { OutboundSink } from './pool.js'
import type { EngineLimits, OutboundTlsOptions, RunState } from './options.js'
import type { StreamKeepalive } from './keepalive.js'

export interface OutboundOptions {
  table: ConnectionTable
  counters: Counters
  limits: EngineLimits
  log: Logger
  state: RunState
  udp: UdpListeners
  streams: StreamListeners
  outboundTls?: OutboundTlsOptions
  /** NAT keep-alives of stream connections (FLAG_KEEPALIVE frames ask for them). */
  keepalive?: StreamKeepalive
}

export class Outbound implements OutboundSink {
  /** Where transport-error reports go (the worker pool, or the in-process handler). */
  target: FrameTarget = NO_TARGET
  /** Datagrams handed to dgram.send whose callback has not run (stop() waits for them). */
  udpPending = 0
  /** Pre-bound frame callback for Ring.drain: one function, not one per frame. */
  readonly onRingFrame: FrameHandler
  readonly #o: OutboundOptions
  readonly #c: Counters
  readonly #table: ConnectionTable
  /** The worker whose frames are being sent (0 in-process). */
  #from = 0
  #batching = false
  readonly #corked: StreamConn[] = []
  readonly #onUdpSent: (err: Error | null) => void
  readonly #report: FrameMeta = createFrameMeta()
  readonly #rlSock: RateLimitedLog
  readonly #rlRefused: RateLimitedLog
  readonly #rlConnect: RateLimitedLog

  constructor(o: OutboundOptions) {
    this.#o = o
    this.#c = o.counters
    this.#table = o.table
    this.#rlSock = new RateLimitedLog(o.log, 'info')
    this.#rlRefused = new RateLimitedLog(o.log, 'warn')
    this.#rlConnect = new RateLimitedLog(o.log, 'warn')
    this.#onUdpSent = err => {
      this.udpPending--
      if (err !== null) { this.#c.udpSendErrors++; this.#rlSock.hit('UDP send failed', { err }) }
    }
    this.onRingFrame = (meta, payload) => { this.send(meta, payload, true) }
  }

  // ------------------------------------------------------------------------------ batches

  beginBatch(worker: number): void {
    this.#from = worker
    this.#batching = true
  }

  endBatch(): void {
    this.#batching = false
    const list = this.#corked
    for (let i = 0; i < list.length; i++) {
      const c = list[i]!
      c.corked = false
      if (!c.closed) c.socket?.uncork()
    }
    list.length = 0
  }

  // ------------------------------------------------------------------------------ frames

  /** One frame out. `fromRing`: payload is a view into a ring, valid only now: copy it. */
  send(meta: FrameMeta, payload: Uint8Array | readonly Uint8Array[], fromRing: boolean): boolean {
    const kind = meta.transport
    if (kind === UDP) return this.#sendDatagram(meta, payload, fromRing)
    if (kind !== TCP && kind !== TLS && kind !== WS && kind !== WSS) { this.#c.sendUnsupported++; return false }
    // Not a message: keep connId alive (docs/nat.md); nothing is written now.
    if ((meta.flags & FLAG_KEEPALIVE) !== 0) return this.#o.keepalive?.watch(meta, this.#from) ?? false
    let conn: StreamConn | undefined
    if (meta.connId !== 0) {
      conn = this.#table.get(meta.connId)
      // An id of another peer is not that connection: ids start at 1 again after a restart, and a
      // stored flow (a registration) may outlive the connection it names.
      if (conn !== undefined && (conn.port !== meta.port || conn.address !== meta.address)) conn = undefined
      if (conn === undefined || conn.closed) {
        // The connection the request came in on is gone. RFC 3261 §18.2.2 lets the sender open a
        // new one to the sent-by; the worker asks for that explicitly with FLAG_OPEN_CONNECTION.
        // Without it (a response, or a request to a client behind NAT, which no new connection
        // reaches) the sender hears of it now: its client transaction fails over at once.
        if ((meta.flags & FLAG_OPEN_CONNECTION) === 0) { this.#c.sendNoConnection++; this.#gone(meta); return false }
        conn = undefined
      }
    }
    if (conn === undefined) {
      conn = this.#table.byKey(kind, meta.address, meta.port)
      if (conn !== undefined && !conn.closed) this.#c.connReused++
      else if (meta.connId === 0 || (meta.flags & FLAG_OPEN_CONNECTION) !== 0) {
        const opened = this.#open(kind, meta.address, meta.port)
        if (opened === null) { this.#openFailed(meta); return false }
        conn = opened
      } else { this.#c.sendNoConnection++; return false }
    }
    // One message, one write: over a WebSocket each write is a message of its own, so the slices
    // of an edited message (an in-process handler's, workers: 0) are joined first.
    if (fromRing) this.#write(conn, Buffer.from(payload as Uint8Array))
    else if (Array.isArray(payload)) this.#write(conn, payload.length === 1 ? payload[0] as Buffer : Buffer.concat(payload as Uint8Array[]))
    else this.#write(conn, payload as Buffer)
    if ((meta.flags & FLAG_CLOSE_AFTER_SEND) !== 0) this.#o.streams.end(conn)
    return true
  }

  #sendDatagram(meta: FrameMeta, payload: Uint8Array | readonly Uint8Array[], fromRing: boolean): boolean {
    // Answer from the socket the request came in on (same source address for the peer);
    // a worker-originated datagram (or a family mismatch) goes out of the first socket of its family.
    const sock = this.#o.udp.socketFor(meta.socketId, meta.address.includes(':') ? 6 : 4)
    if (sock === null) { this.#c.sendNoConnection++; return false }
    const data = fromRing ? Buffer.from(payload as Uint8Array) : payload as Uint8Array | Uint8Array[]
    this.udpPending++
    this.#c.udpOut++
    try {
      sock.send(data as Buffer, meta.port, meta.address, this.#onUdpSent)
    } catch (err) {
      this.udpPending--
      this.#c.udpSendErrors++
      this.#rlSock.hit('UDP send failed', { err })
      return false
    }
    return true
  }

  /** A worker's frame onto a stream connection: counted, corked in a batch, tracked until written. */
  #write(conn: StreamConn, data: Buffer): void {
    if (conn.closed) return
    this.#c.streamOut++
    if (conn.ws !== null) { conn.ws.send(data); return }
    const s = conn.socket!
    if (this.#batching && !conn.corked) { s.cork(); conn.corked = true; this.#corked.push(conn) }
    conn.track(this.#from)
    s.write(data, conn.onWritten)
  }

  /** Opens an outbound TCP/TLS connection; bytes written before connect are queued by the socket. */
  #open(kind: number, address: string, port: number): StreamConn | null {
    const c = this.#c
    if (this.#o.state.draining) { c.sendNoConnection++; return null }
    if (kind === WS || kind === WSS) {
      // uWebSockets.js is server-only: WS peers are reached over the connection they opened.
      c.sendUnsupported++
      return null
    }
    if (this.#table.size >= this.#o.limits.maxConnections) {
      c.connRefused++
      this.#rlRefused.hit('outbound connection refused: max_connections reached', { transport: nameOf(kind), remote: address, port })
      return null
    }
    const conn = new StreamConn(kind, -1, address, port, true)
    let sock: Socket
    try {
      if (kind === TCP) {
        sock = tcpConnect({ host: address, port, noDelay: true })
      } else {
        const o = this.#o.outboundTls ?? {}
        sock = tlsConnect({
          host: address, port,
          ...(isIP(address) === 0 ? { servername: address } : {}),
          rejectUnauthorized: o.rejectUnauthorized ?? true,
          ...(o.ca !== undefined ? { ca: readFileSync(o.ca) } : {}),
          minVersion: 'TLSv1.2',
        })
      }
    } catch (err) {
      // e.g. port 0 or an unreadable CA file: nothing was opened.
      c.connConnectFailed++
      this.#rlConnect.hit('outbound connection failed', { transport: nameOf(kind), remote: address, port, err })
      return null
    }
    sock.once(kind === TLS ? 'secureConnect' : 'connect', () => { conn.established = true })
    c.connOpened++
    this.#o.streams.wire(conn, sock)
    return conn
  }

  // ------------------------------------------------------------------------------ transport errors

  /**
   * A stream connection's socket failed (StreamListeners calls this on 'error'). Tells every
   * worker with frames still unwritten on it; a connection with nothing pending (an idle one
   * reset by its peer) concerns no frame and is not reported.
   */
  connectionFailed(conn: StreamConn): void {
    if (conn.unwritten === 0) return
    conn.unwritten = 0 // once per failure: a second 'error' of the same socket reports nothing
    const m = this.#report
    m.transport = conn.kind
    m.socketId = conn.socketId < 0 ? 0 : conn.socketId
    m.connId = conn.id
    m.family = conn.family
    m.address = conn.address
    m.port = conn.port
    m.recvTime = performance.timeOrigin + performance.now()
    m.flags = FLAG_TRANSPORT_ERROR
    for (let i = 0; i < conn.writers.length; i++) this.#tell(conn.writers[i]!, m)
    conn.writers.length = 0
  }

  /** A frame named a connection that is gone, and no new one may be opened for it. */
  #gone(meta: FrameMeta): void {
    const m = this.#report
    m.transport = meta.transport
    m.socketId = meta.socketId
    m.connId = meta.connId
    m.family = meta.family
    m.address = meta.address
    m.port = meta.port
    m.recvTime = performance.timeOrigin + performance.now()
    m.flags = FLAG_TRANSPORT_ERROR
    this.#tell(this.#from, m)
  }

  /** A frame asked for a connection that could not be opened (limit, draining, WS, bad port). */
  #openFailed(meta: FrameMeta): void {
    const m = this.#report
    m.transport = meta.transport
    m.socketId = meta.socketId
    m.connId = 0
    m.family = meta.family
    m.address = meta.address
    m.port = meta.port
    m.recvTime = performance.timeOrigin + performance.now()
    m.flags = FLAG_TRANSPORT_ERROR
    this.#tell(this.#from, m)
  }

  #tell(worker: number, m: FrameMeta): void {
    if (this.target.transportError(worker, m)) this.#c.transportErrorsReported++
    else this.#c.transportErrorsLost++
  }
}
