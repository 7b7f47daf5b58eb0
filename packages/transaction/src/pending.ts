import type { Destination, TransportName } from './types.js'

/** A destination the transport could not reach or lost (a `Destination`, `socketId` ignored). */
export interface TransportFailure {
  transport: TransportName
  address: string
  port: number
  /** The connection that failed; 0 or absent when the failure is not tied to one (e.g. a refused connect). */
  connId?: number
}

/** A node of a destination list: a client transaction, or the list's head. */
export interface PendingLink {
  /** @internal */
  _dNext: PendingClient | null
}

/** What the index needs of a client transaction (ClientBase implements it). */
export interface PendingClient extends PendingLink {
  readonly dest: Destination
  /** Still in Calling, Trying or Proceeding. */
  readonly awaitingFinal: boolean
  /** Ends the transaction with onTimeout(tx, 'transport-error'); false when already terminated. */
  transportError(): boolean
  /** @internal the previous node (the list's head for the first transaction), null when not listed */
  _dPrev: PendingLink | null
}

/** The head of one address's list: a node that is no transaction. */
class ListHead implements PendingLink {
  _dNext: PendingClient | null
  constructor() {
    this._dNext = null
  }
}

/** Empty lists kept before a sweep drops them (and at least as many as there are live ones). */
const SWEEP_MIN = 1024

/**
 * Client transactions awaiting a final response, listed by destination address, for
 * `layer.transportError(dest)` (RFC 3261 §17.1.4: a transport failure must reach the client
 * transaction at once, not after Timer B/F).
 *
 * One intrusive doubly linked list per address, behind a head node (`Map<address, ListHead>`).
 * Linking costs one Map lookup (the address string is the destination's own; a head is allocated
 * only for an address not seen yet), unlinking none: it is pointer work on the neighbours. A report
 * for an address nobody waits on is one Map lookup; otherwise it walks the list of that address,
 * i.e. the transactions to that host (all ports and transports) still waiting for a final response.
 *
 * A list that runs empty keeps its head until empty heads are both more than SWEEP_MIN and more
 * than half the map; then one sweep drops them all. So one transaction at a time to one server
 * does not add and delete a Map key per transaction (V8 then shrinks and regrows the table, an
 * allocation each time), and the map stays within about twice the number of addresses with a
 * waiting transaction, plus SWEEP_MIN.
 */
export class PendingByDestination {
  private readonly heads: Map<string, ListHead>
  /** Heads whose list is empty. */
  private empty: number

  constructor() {
    this.heads = new Map()
    this.empty = 0
  }

  /** Transactions listed (walks every list: for tests and diagnostics only). */
  get size(): number {
    let n = 0
    for (const head of this.heads.values()) {
      for (let tx = head._dNext; tx !== null; tx = tx._dNext) n++
    }
    return n
  }

  /** Addresses the map holds, empty lists included (tests: the map does not grow without bound). */
  get addresses(): number {
    return this.heads.size
  }

  link(tx: PendingClient): void {
    const address = tx.dest.address
    let head = this.heads.get(address)
    if (head === undefined) {
      head = new ListHead()
      this.heads.set(address, head)
    } else if (head._dNext === null) {
      this.empty--
    }
    const next = head._dNext
    tx._dPrev = head
    tx._dNext = next
    if (next !== null) next._dPrev = tx
    head._dNext = tx
  }

  /** Takes `tx` off its list; a transaction that is not listed is left alone. */
  unlink(tx: PendingClient): void {
    const prev = tx._dPrev
    if (prev === null) return
    const next = tx._dNext
    prev._dNext = next
    if (next !== null) next._dPrev = prev
    else if (prev instanceof ListHead && ++this.empty > SWEEP_MIN && this.empty * 2 > this.heads.size) this.sweep()
    tx._dPrev = null
    tx._dNext = null
  }

  /**
   * The transactions a failure concerns: same transport, address and port, or the same connection
   * (`connId` given and non-zero). Returned as a copy, because failing them runs the owners'
   * callbacks, which may start new transactions to the same address (failover) or end others.
   */
  matching(f: TransportFailure): PendingClient[] | null {
    const head = this.heads.get(f.address)
    if (head === undefined) return null
    const connId = f.connId ?? 0
    let out: PendingClient[] | null = null
    for (let tx = head._dNext; tx !== null; tx = tx._dNext) {
      const d = tx.dest
      if ((d.port === f.port && d.transport === f.transport) || (connId !== 0 && d.connId === connId)) {
        if (out === null) out = []
        out.push(tx)
      }
    }
    return out
  }

  private sweep(): void {
    for (const [address, head] of this.heads) {
      if (head._dNext === null) this.heads.delete(address)
    }
    this.empty = 0
  }
}
