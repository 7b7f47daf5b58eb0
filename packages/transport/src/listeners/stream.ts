// TCP and TLS: the listeners, and the life of every stream connection (accepted here, or opened
// by the outbound path and handed to wire()): the connection table entry, RFC 3261 §18.3
// Content-Length framing, RFC 5626 keep-alives, idle and partial-message limits, closing.
// WS/WSS connections share the table and closing (listeners/websocket.ts).
import { createServer as createTcpServer, type Server as NetServer, type Socket } from 'node:net'
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls'
import { TCP, TLS, nameOf } from '@sipedge/frame'
import { StreamFramer, KEEPALIVE_PING, KEEPALIVE_PONG, SipParseError } from '../sip-subset.js'
import { StreamConn, type ConnectionTable } from '../connections.js'
import { TlsContextSet, type TlsOptions } from '../tls-contexts.js'
import { RateLimitedLog, type Logger } from '../log.js'
import type { Counters } from '../counters.js'
import type { EngineLimits, RunState } from '../options.js'
import { transportError } from '../options.js'

const CRLF = Buffer.from('\r\n')
/** A connection that has only pinged this long (or half of idle_timeout, if shorter) may be evicted when the table is full. */
const EVICT_GRACE_MS = 10_000

export interface StreamOptions {
  table: ConnectionTable
  counters: Counters
  limits: EngineLimits
  log: Logger
  state: RunState
  /** A whole SIP message read from a connection (the inbound path). */
  onMessage: (conn: StreamConn, buf: Buffer) => void
  /** A connection's socket failed (connect refused, reset, TLS handshake, write error). */
  onError: (conn: StreamConn, err: Error) => void
  /** Bytes arrived on a connection with a NAT keep-alive ping outstanding (keepalive.ts). */
  onAlive?: (conn: StreamConn) => void
  /**
   * Source checks at accept (pike bans, limits.max_connections_per_source): false refuses the
   * connection (the function counts and logs why). Absent: every source is admitted.
   */
  admit?: (address: string) => boolean
}

export class StreamListeners {
  readonly #o: StreamOptions
  readonly #servers: (NetServer | TlsServer)[] = []
  readonly #tlsSets: TlsContextSet[] = []
  readonly #partial = new Set<StreamConn>()
  #partialTimer: NodeJS.Timeout | null = null
  /** No eviction scan before this time (epoch ms): the last one found no candidate. */
  #noEvictUntil = 0
  readonly #rl: { refused: RateLimitedLog; idle: RateLimitedLog; partial: RateLimitedLog; oversize: RateLimitedLog; bad: RateLimitedLog; sock: RateLimitedLog; tls: RateLimitedLog; connect: RateLimitedLog }

  constructor(o: StreamOptions) {
    this.#o = o
    const log = o.log
    this.#rl = {
      refused: new RateLimitedLog(log, 'warn'), idle: new RateLimitedLog(log, 'info'), partial: new RateLimitedLog(log, 'warn'),
      oversize: new RateLimitedLog(log, 'warn'), bad: new RateLimitedLog(log, 'warn'), sock: new RateLimitedLog(log, 'info'),
      tls: new RateLimitedLog(log, 'info'), connect: new RateLimitedLog(log, 'warn'),
    }
  }

  /** Listens for TCP or TLS on address:port as listener `socketId`; resolves with the port bound. */
  async listen(socketId: number, kind: number, address: string, port: number, tls?: TlsOptions): Promise<number> {
    const o = this.#o
    let server: NetServer | TlsServer
    if (kind === TCP) {
      server = createTcpServer({ noDelay: true })
      server.on('connection', (s: Socket) => this.#accept(s, TCP, socketId))
    } else if (kind === TLS) {
      if (tls === undefined) throw transportError('ERR_TRANSPORT_OPTIONS', 'tls listener without tls options')
      const set = new TlsContextSet(tls, o.log.child('tls'))
      set.onReload = ok => { if (ok) o.counters.tlsReloads++; else o.counters.tlsReloadErrors++ }
      this.#tlsSets.push(set)
      const tserver = createTlsServer({ ...set.serverOptions(), handshakeTimeout: Math.min(10_000, o.limits.partialMessageTimeoutMs) })
      set.attach(tserver)
      set.watch()
      // Refuse over the limit before paying for a handshake.
      tserver.on('connection', (raw: Socket) => {
        if (o.state.draining || (o.table.size >= o.limits.maxConnections && !this.#evictIdle())) this.#refuse(raw, TLS)
        else if (o.admit !== undefined && raw.remoteAddress !== undefined && !o.admit(raw.remoteAddress)) raw.destroy()
      })
      tserver.on('secureConnection', (s: TLSSocket) => this.#accept(s, TLS, socketId))
      tserver.on('tlsClientError', (err, s) => {
        o.counters.tlsHandshakeErrors++
        this.#rl.tls.hit('TLS handshake failed', { err, remote: s.remoteAddress })
      })
      server = tserver
    } else {
      throw transportError('ERR_TRANSPORT_OPTIONS', `not a stream listener transport: ${kind}`)
    }
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen({ host: address, port, exclusive: true }, () => { server.off('error', reject); resolve() })
    })
    server.on('error', err => o.log.error('listener error', { err, socketId, transport: nameOf(kind) }))
    this.#servers.push(server)
    return (server.address() as { port: number }).port
  }

  /** Stop accepting (stop() step 1): listening sockets close, TLS certificate watches end. */
  closeListeners(): void {
    for (const s of this.#servers) s.close()
    for (const t of this.#tlsSets) t.close()
  }

  /** Re-reads every TLS certificate file (SIGHUP); false when any set failed (old kept). */
  reloadTls(): boolean {
    let ok = true
    for (const t of this.#tlsSets) ok = t.reload() && ok
    return ok
  }

  /**
   * Enters `conn` in the table and drives its socket: framing into onMessage, idle timeout,
   * errors to onError, close. For accepted connections and for those the outbound path opens.
   */
  wire(conn: StreamConn, sock: Socket): void {
    const o = this.#o
    conn.socket = sock
    conn.framer = new StreamFramer({ maxSize: o.limits.maxMessageSize })
    o.table.add(conn)
    sock.setNoDelay(true)
    if (o.limits.idleTimeoutMs > 0) sock.setTimeout(o.limits.idleTimeoutMs)
    sock.on('timeout', () => {
      o.counters.connIdleClosed++
      this.#rl.idle.hit('idle connection closed', { transport: nameOf(conn.kind), remote: conn.address, port: conn.port, idleTimeoutMs: o.limits.idleTimeoutMs })
      this.destroy(conn)
    })
    sock.on('data', (chunk: Buffer) => this.#onData(conn, chunk))
    sock.on('error', err => {
      if (!conn.established) {
        o.counters.connConnectFailed++
        this.#rl.connect.hit('outbound connection failed', { transport: nameOf(conn.kind), remote: conn.address, port: conn.port, err })
      } else {
        this.#rl.sock.hit('connection error', { transport: nameOf(conn.kind), remote: conn.address, port: conn.port, err })
      }
      o.onError(conn, err)
    })
    sock.on('close', () => this.closed(conn))
    // The peer's FIN ends the connection for us too: node writes nothing after it (EPIPE), so it
    // leaves the table now, not at 'close', and the next frame to that peer opens a new one.
    sock.on('end', () => {
      this.closed(conn)
      if (!sock.writableEnded) sock.end()
    })
  }

  /** Flush and half-close (FLAG_CLOSE_AFTER_SEND, shutdown). */
  end(conn: StreamConn): void {
    if (conn.closed) return
    if (conn.ws !== null) { conn.closed = true; try { conn.ws.close() } catch { /* gone */ } this.closed(conn); return }
    conn.socket?.end()
  }

  /** Close at once, dropping what is unsent (limits, framing lost, hard shutdown). */
  destroy(conn: StreamConn): void {
    if (conn.ws !== null) { this.end(conn); return }
    conn.socket?.destroy()
    this.closed(conn)
  }

  /** The connection is gone: out of the table (its id is never answered again). */
  closed(conn: StreamConn): void {
    if (conn.id === 0) return
    const o = this.#o
    if (o.table.get(conn.id) !== conn) { conn.closed = true; return }
    conn.closed = true
    o.table.remove(conn)
    this.#partial.delete(conn)
    o.counters.connClosed++
  }

  /** Stops the partial-message sweep (teardown). */
  stopTimers(): void {
    if (this.#partialTimer !== null) { clearInterval(this.#partialTimer); this.#partialTimer = null }
  }

  /** Refuses a connection over the limit or while draining: counted, logged, destroyed. */
  #refuse(sock: Socket, kind: number): void {
    const o = this.#o
    o.counters.connRefused++
    this.#rl.refused.hit(o.state.draining ? 'connection refused: draining' : 'connection refused: max_connections reached', {
      transport: nameOf(kind), remote: sock.remoteAddress, maxConnections: o.limits.maxConnections, connections: o.table.size,
    })
    sock.destroy()
  }

  #accept(sock: Socket, kind: number, socketId: number): void {
    const o = this.#o
    if (sock.destroyed) return
    if (o.state.draining || (kind !== TLS && o.table.size >= o.limits.maxConnections && !this.#evictIdle())) { this.#refuse(sock, kind); return }
    const addr = sock.remoteAddress
    if (addr === undefined) { sock.destroy(); return }
    if (kind !== TLS && o.admit !== undefined && !o.admit(addr)) { sock.destroy(); return }
    const conn = new StreamConn(kind, socketId, addr, sock.remotePort ?? 0, false)
    o.counters.connAccepted++
    this.wire(conn, sock)
  }

  #onData(conn: StreamConn, chunk: Buffer): void {
    if (conn.kaOutstanding) this.#o.onAlive?.(conn)
    const framer = conn.framer!
    framer.push(chunk)
    let got = false
    for (;;) {
      let m: ReturnType<StreamFramer['next']>
      try {
        m = framer.next()
      } catch (err) {
        this.#streamError(conn, err)
        return
      }
      if (m === null) break
      if (m === KEEPALIVE_PING) {
        // RFC 5626 §4.4.1: answer a double-CRLF ping with a single CRLF pong.
        this.#o.counters.keepalivePings++
        // A connection that has only ever pinged is idle however often it pings: one source
        // cannot hold slots open with CRLFs alone (issue 14 item 7; docs/security.md "Limits").
        if (!conn.sipSeen && this.#crlfIdle(conn)) return
        conn.writeOwn(CRLF)
        continue
      }
      if (m === KEEPALIVE_PONG) continue
      got = true
      this.#o.onMessage(conn, m as Buffer)
      if (conn.closed) return
    }
    if (framer.buffered > 0) {
      if (got || conn.partialSince === 0) {
        conn.partialSince = performance.now()
        this.#partial.add(conn)
        if (this.#partialTimer === null) this.#startPartialSweep()
      }
    } else if (conn.partialSince !== 0) {
      conn.partialSince = 0
      this.#partial.delete(conn)
    }
  }

  /** Closes `conn` (counted as idle) when it has carried no SIP message for idle_timeout. */
  #crlfIdle(conn: StreamConn): boolean {
    const o = this.#o
    if (o.limits.idleTimeoutMs <= 0 || conn.outbound || Date.now() - conn.createdAt < o.limits.idleTimeoutMs) return false
    o.counters.connIdleClosed++
    this.#rl.idle.hit('idle connection closed (keep-alive pings only)', { transport: nameOf(conn.kind), remote: conn.address, port: conn.port, idleTimeoutMs: o.limits.idleTimeoutMs })
    this.destroy(conn)
    return true
  }

  /**
   * The table is full: close the oldest accepted TCP/TLS connection that has only ever pinged
   * (no SIP message either way) for at least min(idle_timeout / 2, 10 s), to make room for a new one.
   * true when a slot was freed. A scan that finds none is not repeated for a second (a refused
   * storm costs one table walk per second, not one per connection).
   */
  #evictIdle(): boolean {
    const now = Date.now()
    if (now < this.#noEvictUntil) return false
    const o = this.#o
    const grace = o.limits.idleTimeoutMs > 0 ? Math.min(o.limits.idleTimeoutMs / 2, EVICT_GRACE_MS) : EVICT_GRACE_MS
    let victim: StreamConn | null = null
    for (const c of o.table.values()) {
      if (c.sipSeen || c.outbound || c.ws !== null || c.closed || now - c.createdAt < grace) continue
      if (victim === null || c.createdAt < victim.createdAt) victim = c
    }
    if (victim === null) { this.#noEvictUntil = now + 1_000; return false }
    o.counters.connIdleEvicted++
    this.#rl.idle.hit('connection with keep-alive pings only closed to make room (max_connections reached)', {
      transport: nameOf(victim.kind), remote: victim.address, port: victim.port, maxConnections: o.limits.maxConnections,
    })
    this.destroy(victim)
    return true
  }

  #startPartialSweep(): void {
    // Runs only while some connection holds an incomplete message: no fixed background cost.
    const limits = this.#o.limits
    const every = Math.max(50, Math.min(1_000, limits.partialMessageTimeoutMs / 4))
    this.#partialTimer = setInterval(() => {
      const now = performance.now()
      for (const c of this.#partial) {
        if (c.closed) { this.#partial.delete(c); continue }
        if (now - c.partialSince >= limits.partialMessageTimeoutMs) {
          this.#o.counters.connPartialTimeout++
          this.#rl.partial.hit('incomplete message not finished in time; connection closed', {
            transport: nameOf(c.kind), remote: c.address, port: c.port, buffered: c.framer?.buffered, partialMessageTimeoutMs: limits.partialMessageTimeoutMs,
          })
          this.#partial.delete(c)
          this.destroy(c)
        }
      }
      if (this.#partial.size === 0 && this.#partialTimer !== null) { clearInterval(this.#partialTimer); this.#partialTimer = null }
    }, every)
    this.#partialTimer.unref()
  }

  #streamError(conn: StreamConn, err: unknown): void {
    const e = err as SipParseError
    const fields = { transport: nameOf(conn.kind), remote: conn.address, port: conn.port, code: e?.code, reason: e?.message }
    if (e instanceof SipParseError && e.code === 'ERR_SIP_TOO_LARGE') {
      this.#o.counters.connOversize++
      this.#rl.oversize.hit('message over max message size; connection closed', { ...fields, max: this.#o.limits.maxMessageSize })
    } else {
      this.#o.counters.connBadStream++
      this.#rl.bad.hit('unframeable stream; connection closed', fields)
    }
    // Framing is lost: nothing after this point can be trusted. Close (RFC 3261 §18.3).
    this.destroy(conn)
  }
}
