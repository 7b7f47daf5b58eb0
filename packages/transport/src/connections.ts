// The connection table: every TCP, TLS and WS/WSS connection (accepted or opened by us) has a
// numeric id that travels in the frame header, so a worker can answer on the very connection a
// request came in on (a NAT'd client can be reached no other way) — and a key
// transport|address|port, so a worker that knows only the address gets an existing connection
// reused (RFC 3261 §18.1.1, RFC 5923) before a new one is opened.
import type { Socket } from 'node:net'
import type { StreamFramer } from './sip-subset.js'

/** What the engine needs of a WebSocket connection (same shape as ws-types.ts WsConnection). */
export interface WsConnectionLike {
  readonly transport: 'ws' | 'wss'
  readonly remoteAddress: string
  readonly remotePort: number
  send(data: Buffer | Buffer[]): boolean
  /** Sends a WebSocket ping frame (NAT keep-alive); false when it could not be sent. */
  ping?(): boolean
  close(): void
}

const MAX_ID = 0x7fffffff

export class StreamConn {
  id = 0
  readonly kind: number
  readonly socketId: number
  readonly address: string
  readonly port: number
  readonly family: 4 | 6
  readonly key: string
  readonly outbound: boolean
  socket: Socket | null = null
  ws: WsConnectionLike | null = null
  framer: StreamFramer | null = null
  /** performance.now() when the current incomplete message began; 0 = none pending. */
  partialSince = 0
  corked = false
  closed = false
  /** false until a connection we opened has connected (TCP) or finished its handshake (TLS). */
  established: boolean
  /**
   * Workers' frames written to the socket whose write has not completed (its callback has not
   * run). A write that fails leaves its count here: when the socket then errors with a count
   * above 0, `writers` are told (FLAG_TRANSPORT_ERROR).
   */
  unwritten = 0
  /** The workers (indexes, distinct, usually one) whose frames make up `unwritten`. */
  readonly writers: number[] = []
  /** The write callback of every tracked write: one function per connection, not per message. */
  readonly onWritten: (err?: Error | null) => void
  createdAt: number
  /**
   * NAT keep-alive (keepalive.ts): the workers that asked for it (null: not kept alive), the
   * wheel slot, a ping sent and not answered yet, consecutive unanswered pings.
   */
  kaWorkers: number[] | null = null
  kaSlot = -1
  kaOutstanding = false
  kaFailures = 0
  /**
   * A SIP message has passed (either way). Until then CRLF keep-alives do not count as traffic:
   * a connection that only ever pings is idle (limits.idle_timeout; docs/security.md "Limits").
   */
  sipSeen = false

  constructor(kind: number, socketId: number, address: string, port: number, outbound: boolean) {
    this.kind = kind
    this.socketId = socketId
    this.address = address
    this.port = port
    this.family = address.includes(':') ? 6 : 4
    this.key = connKey(kind, address, port)
    this.outbound = outbound
    this.established = !outbound
    this.onWritten = err => { if (err == null && this.unwritten > 0) this.unwritten-- }
    this.createdAt = Date.now()
  }

  /** A frame of worker `worker` is being written: count it until its write completes. */
  track(worker: number): void {
    this.sipSeen = true
    if (this.unwritten++ === 0) {
      this.writers.length = 0
      this.writers.push(worker)
    } else if (this.writers.indexOf(worker) < 0) {
      this.writers.push(worker)
    }
  }

  /** Bytes of the primary's own (a CRLF pong, a 400/503): not counted, not tracked. */
  writeOwn(data: Buffer): void {
    if (this.closed) return
    if (this.ws !== null) this.ws.send(data)
    else this.socket?.write(data)
  }
}

export function connKey(kind: number, address: string, port: number): string {
  return kind + '|' + address + '|' + port
}

export class ConnectionTable {
  readonly #byId = new Map<number, StreamConn>()
  readonly #byKey = new Map<string, StreamConn>()
  /** Accepted (not outbound) connections per remote address: limits.max_connections_per_source. */
  readonly #perSource = new Map<string, number>()
  #next = 1

  get size(): number { return this.#byId.size }

  add(conn: StreamConn): number {
    let id = this.#next
    while (this.#byId.has(id)) id = id >= MAX_ID ? 1 : id + 1
    this.#next = id >= MAX_ID ? 1 : id + 1
    conn.id = id
    this.#byId.set(id, conn)
    // The newest connection to a peer wins the key (an older one may be half-dead).
    this.#byKey.set(conn.key, conn)
    if (!conn.outbound) this.#perSource.set(conn.address, (this.#perSource.get(conn.address) ?? 0) + 1)
    return id
  }

  remove(conn: StreamConn): void {
    if (this.#byId.get(conn.id) === conn) {
      this.#byId.delete(conn.id)
      if (!conn.outbound) {
        const n = (this.#perSource.get(conn.address) ?? 1) - 1
        if (n > 0) this.#perSource.set(conn.address, n)
        else this.#perSource.delete(conn.address)
      }
    }
    if (this.#byKey.get(conn.key) === conn) this.#byKey.delete(conn.key)
  }

  /** Accepted connections open from `address`. */
  fromSource(address: string): number { return this.#perSource.get(address) ?? 0 }

  get(id: number): StreamConn | undefined { return this.#byId.get(id) }

  byKey(kind: number, address: string, port: number): StreamConn | undefined {
    return this.#byKey.get(connKey(kind, address, port))
  }

  values(): IterableIterator<StreamConn> { return this.#byId.values() }
}
