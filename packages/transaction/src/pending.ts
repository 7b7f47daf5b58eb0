import type { Destination, TransportName } from './types.js'

/** A destination the transport could not reach or lost (a `Destination`, `socketId` ignored). */
export interface TransportFailure {
  transport: TransportName
  address: string
  port: number
  /** The connection that failed; 0 or absent when the failure is not tied to one (e.g. a refused connect). */
  connId?: number
}

/** What the index needs of a client transaction (ClientBase implements it). */
export interface PendingClient {
  readonly dest: Destination
  /** Still in Calling, Trying or Proceeding. */
  readonly awaitingFinal: boolean
  /** Ends the transaction with onTimeout(tx, 'transport-error'); false when already terminated. */
  transportError(): boolean
  /** @internal */
  _dPrev: PendingClient | null
  /** @internal */
  _dNext: PendingClient | null
}

/**
 * Client transactions awaiting a final response, listed by destination address, for
 * `layer.transportError(dest)` (RFC 3261 §17.1.4: a transport failure must reach the client
 * transaction at once, not after Timer B/F).
 *
 * One intrusive doubly linked list per address (`Map<address, head>`): link and unlink are O(1)
 * with no allocation (the address string is the destination's own), an address without pending
 * transactions has no entry, and a report for an address nobody waits on is one failed Map lookup.
 * A report walks only the list of its address, i.e. the transactions to that host (all ports and
 * transports) still waiting for a final response.
 */
export class PendingByDestination {
  private readonly heads: Map<string, PendingClient>

  constructor() {
    this.heads = new Map()
  }

  /** Transactions listed (walks every list: for tests and diagnostics only). */
  get size(): number {
    let n = 0
    for (let e of this.heads.values()) {
      for (let tx: PendingClient | null = e; tx !== null; tx = tx._dNext) n++
    }
    return n
  }

  link(tx: PendingClient): void {
    const address = tx.dest.address
    const head = this.heads.get(address)
    tx._dPrev = null
    if (head === undefined) {
      tx._dNext = null
    } else {
      tx._dNext = head
      head._dPrev = tx
    }
    this.heads.set(address, tx)
  }

  /** Takes `tx` off its list; a transaction that is not listed is left alone. */
  unlink(tx: PendingClient): void {
    const prev = tx._dPrev
    const next = tx._dNext
    if (prev !== null) {
      prev._dNext = next
    } else {
      const address = tx.dest.address
      if (this.heads.get(address) !== tx) return
      if (next === null) this.heads.delete(address)
      else this.heads.set(address, next)
    }
    if (next !== null) next._dPrev = prev
    tx._dPrev = null
    tx._dNext = null
  }

  /**
   * The transactions a failure concerns: same transport, address and port, or the same connection
   * (`connId` given and non-zero). Returned as a copy, because failing them runs the owners'
   * callbacks, which may start new transactions to the same address (failover) or end others.
   */
  matching(f: TransportFailure): PendingClient[] | null {
    let tx = this.heads.get(f.address) ?? null
    if (tx === null) return null
    const connId = f.connId ?? 0
    let out: PendingClient[] | null = null
    for (; tx !== null; tx = tx._dNext) {
      const d = tx.dest
      if ((d.port === f.port && d.transport === f.transport) || (connId !== 0 && d.connId === connId)) {
        if (out === null) out = []
        out.push(tx)
      }
    }
    return out
  }
}
