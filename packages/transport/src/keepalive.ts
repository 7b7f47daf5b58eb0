// NAT keep-alives on stream connections (docs/nat.md "Keep-alives"). The primary owns the
// connections and reads their bytes, so it pings them itself: a worker that accepted a REGISTER
// from a client behind NAT over TCP/TLS/WS sends one FLAG_KEEPALIVE frame for the connection
// (once, not per ping), and from then on the connection is on this wheel:
//
//   - 100 ms slots spanning the interval; each connection gets its own slot when it is first
//     watched, from the golden-ratio sequence, so any number of connections is spread evenly over
//     the interval: every second costs the same, no burst (the incumbent's CPU spikes came from
//     pinging every TLS connection at once). One unref'd timer, running only while something is
//     watched; no timer per connection.
//   - TCP/TLS: the RFC 5626 §4.4.1 double-CRLF ping, answered by a single-CRLF pong; WS/WSS: a
//     WebSocket ping frame, answered by its pong. Any bytes from the peer count as an answer too
//     (a client busy sending SIP is alive).
//   - A ping still unanswered when the next is due counts as failed; after `failuresRemove`
//     failed pings in a row the connection is closed and every worker that asked gets a frame
//     with FLAG_TRANSPORT_ERROR | FLAG_KEEPALIVE: its client transactions on the connection fail
//     now, and the nat module removes the bindings registered over it.
import { TCP, TLS, WS, WSS, FLAG_KEEPALIVE, FLAG_TRANSPORT_ERROR, createFrameMeta, type FrameMeta } from '@sipedge/frame'
import type { StreamConn, ConnectionTable } from './connections.js'

/** Slot width: a divisor of one second, so every 1-second bucket holds the same number of slots. */
export const KEEPALIVE_TICK_MS = 100
const GOLDEN = 0.6180339887498949
const CRLF2 = Buffer.from('\r\n\r\n')

export interface KeepaliveSettings {
  /** Time between two pings of one connection. */
  intervalMs: number
  /** Consecutive unanswered pings after which the connection is closed and reported. */
  failuresRemove: number
}

/** Per transport (index: udp 0, tcp 1, tls 2, ws 3, wss 4 — the metrics' order; udp stays 0 here). */
export interface KeepaliveStats {
  readonly sent: readonly number[]
  readonly answered: readonly number[]
  readonly failed: readonly number[]
  /** Thread seconds spent sending pings (and the bookkeeping of the slot), per transport. */
  readonly seconds: readonly number[]
  /** Connections kept alive right now. */
  readonly watched: number
  /** Connections closed because their pings went unanswered. */
  readonly closed: number
}

export interface StreamKeepaliveOptions {
  table: ConnectionTable
  /** Report to worker `worker` (FLAG_TRANSPORT_ERROR | FLAG_KEEPALIVE); false when it could not be queued. */
  report(worker: number, meta: FrameMeta): boolean
  /** Close a connection at once. */
  destroy(conn: StreamConn): void
  /** Clock (performance.now() ms); tests inject one and call tick() themselves. */
  now?: () => number
  manual?: boolean
}

function tIndex(kind: number): number {
  return kind === TCP ? 1 : kind === TLS ? 2 : kind === WS ? 3 : kind === WSS ? 4 : 0
}

export class StreamKeepalive {
  readonly #o: StreamKeepaliveOptions
  readonly #now: () => number
  #settings: KeepaliveSettings | null = null
  #slots: StreamConn[][] = []
  #placed = 0
  #cursor = 0
  #cursorAt = 0
  #timer: ReturnType<typeof setInterval> | null = null
  #watched = 0
  #closedByUs = 0
  readonly #sent = [0, 0, 0, 0, 0]
  readonly #answered = [0, 0, 0, 0, 0]
  readonly #failed = [0, 0, 0, 0, 0]
  readonly #seconds = [0, 0, 0, 0, 0]
  readonly #report: FrameMeta = createFrameMeta()

  constructor(o: StreamKeepaliveOptions) {
    this.#o = o
    this.#now = o.now ?? (() => performance.now())
  }

  /** On (with these settings) or off (null: every watch is dropped). Phases are redistributed when the interval changes. */
  configure(s: KeepaliveSettings | null): void {
    const prev = this.#settings
    this.#settings = s
    if (s === null) { this.#clear(); return }
    const n = Math.max(1, Math.round(s.intervalMs / KEEPALIVE_TICK_MS))
    if (prev !== null && n === this.#slots.length) return
    const all: StreamConn[] = []
    for (const slot of this.#slots) for (const c of slot) if (c.kaWorkers !== null && !c.closed) all.push(c)
    this.#slots = Array.from({ length: n }, () => [])
    this.#placed = 0
    this.#cursor = 0
    this.#cursorAt = this.#now() + KEEPALIVE_TICK_MS
    for (const c of all) this.#place(c)
  }

  get enabled(): boolean {
    return this.#settings !== null
  }

  /**
   * A worker asks for `meta.connId` to be kept alive. Only a live connection to the peer the
   * frame names (ids are reused after a restart: never ping a stranger). true when watched.
   */
  watch(meta: FrameMeta, worker: number): boolean {
    if (this.#settings === null) return false
    const conn = this.#o.table.get(meta.connId)
    if (conn === undefined || conn.closed || conn.port !== meta.port || conn.address !== meta.address) return false
    if (conn.kaWorkers !== null) {
      if (conn.kaWorkers.indexOf(worker) < 0) conn.kaWorkers.push(worker)
      return true
    }
    conn.kaWorkers = [worker]
    conn.kaOutstanding = false
    conn.kaFailures = 0
    this.#watched++
    this.#place(conn)
    return true
  }

  /** Bytes arrived on a watched connection with a ping outstanding (a pong, or anything): alive. */
  answered(conn: StreamConn): void {
    if (!conn.kaOutstanding) return
    conn.kaOutstanding = false
    conn.kaFailures = 0
    this.#answered[tIndex(conn.kind)]!++
  }

  #place(conn: StreamConn): void {
    const n = this.#slots.length
    const x = (this.#placed++ * GOLDEN) % 1
    conn.kaSlot = Math.min(n - 1, Math.floor(x * n))
    this.#slots[conn.kaSlot]!.push(conn)
    if (this.#timer === null && this.#o.manual !== true) {
      this.#cursorAt = this.#now() + KEEPALIVE_TICK_MS
      this.#timer = setInterval(() => this.tick(this.#now()), KEEPALIVE_TICK_MS)
      this.#timer.unref()
    }
  }

  /** Runs every slot due by `now` (the timer calls it; tests call it by hand). */
  tick(now: number): void {
    const n = this.#slots.length
    let guard = n
    while (this.#cursorAt <= now && guard-- > 0) {
      this.#runSlot(this.#slots[this.#cursor]!)
      this.#cursor = this.#cursor + 1 === n ? 0 : this.#cursor + 1
      this.#cursorAt += KEEPALIVE_TICK_MS
    }
    // Far behind (a paused process): resume from now rather than burst the backlog.
    if (this.#cursorAt <= now) this.#cursorAt = now + KEEPALIVE_TICK_MS
    if (this.#watched === 0 && this.#timer !== null) { clearInterval(this.#timer); this.#timer = null }
  }

  #runSlot(slot: StreamConn[]): void {
    if (slot.length === 0) return
    const s = this.#settings!
    let w = 0
    for (let r = 0; r < slot.length; r++) {
      const c = slot[r]!
      if (c.closed || c.kaWorkers === null) { this.#unwatch(c); continue }
      const t0 = performance.now()
      const ti = tIndex(c.kind)
      if (c.kaOutstanding) {
        this.#failed[ti]!++
        if (++c.kaFailures >= s.failuresRemove) {
          this.#fail(c)
          this.#seconds[ti]! += (performance.now() - t0) / 1000
          continue
        }
      }
      slot[w++] = c
      // TCP/TLS: RFC 5626 §4.4.1 double-CRLF; WS: a ping frame (RFC 6455 §5.5.2).
      if (c.ws !== null) { if (c.ws.ping === undefined || !c.ws.ping()) { this.#seconds[ti]! += (performance.now() - t0) / 1000; continue } }
      else c.writeOwn(CRLF2)
      c.kaOutstanding = true
      this.#sent[ti]!++
      this.#seconds[ti]! += (performance.now() - t0) / 1000
    }
    slot.length = w
  }

  /** No answer `failuresRemove` times: close the connection, tell the workers that asked. */
  #fail(c: StreamConn): void {
    const workers = c.kaWorkers!
    this.#unwatch(c)
    const m = this.#report
    m.transport = c.kind
    m.socketId = c.socketId < 0 ? 0 : c.socketId
    m.connId = c.id
    m.family = c.family
    m.address = c.address
    m.port = c.port
    m.recvTime = performance.timeOrigin + performance.now()
    m.flags = FLAG_TRANSPORT_ERROR | FLAG_KEEPALIVE
    for (const w of workers) this.#o.report(w, m)
    this.#closedByUs++
    this.#o.destroy(c)
  }

  #unwatch(c: StreamConn): void {
    if (c.kaWorkers === null) return
    c.kaWorkers = null
    c.kaOutstanding = false
    this.#watched--
  }

  #clear(): void {
    for (const slot of this.#slots) {
      for (const c of slot) if (c.kaWorkers !== null) { c.kaWorkers = null; c.kaOutstanding = false }
      slot.length = 0
    }
    this.#watched = 0
    if (this.#timer !== null) { clearInterval(this.#timer); this.#timer = null }
  }

  stats(): KeepaliveStats {
    return {
      sent: this.#sent.slice(), answered: this.#answered.slice(), failed: this.#failed.slice(), seconds: this.#seconds.slice(),
      watched: this.#watched, closed: this.#closedByUs,
    }
  }

  close(): void {
    this.#clear()
  }
}
