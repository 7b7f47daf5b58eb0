import { TransactionError } from './errors.js'
import type { TransactionHost } from './host.js'
import type { TimerValues } from './timers.js'
import type { Destination, TimeoutReason, TransactionKind, TransactionState } from './types.js'
import { TimerEntry } from './wheel.js'

export function noop(): void {}

/**
 * The edges of the two non-INVITE machines, which are the same: Figure 6 (client, §17.1.2) and
 * Figure 8 (server, §17.2.2). Trying -> Proceeding -> Completed -> Terminated, Trying ->
 * Completed, and Trying/Proceeding -> Terminated (Timer F, transport error).
 */
export function nonInviteEdge(from: TransactionState, to: TransactionState): boolean {
  switch (from) {
    case 'Trying': return to === 'Proceeding' || to === 'Completed' || to === 'Terminated'
    case 'Proceeding': return to === 'Completed' || to === 'Terminated'
    case 'Completed': return to === 'Terminated'
    default: return false
  }
}

/**
 * What every transaction has. A transaction is its own timer-wheel entry: the RFC timers that
 * run at the same time (e.g. A and B, G and H) are deadlines in its fields, and the transaction
 * is scheduled once, at the earliest. No closure and no timer object per transaction.
 */
export abstract class Transaction extends TimerEntry {
  /** The layer that owns the transaction, seen through the interface transactions need. */
  readonly host: TransactionHost<Transaction>
  /** Via branch: ours for client transactions, the peer's for server transactions. */
  readonly branch: string
  /** Method of the request that created the transaction (CSeq method). */
  readonly method: string
  state: TransactionState
  /** Client: where the request goes. Server: where responses go (may be changed by the TU). */
  dest: Destination
  /** Free slot for the owner (the proxy's per-request context); the layer never touches it. */
  context: unknown
  /** @internal timer values for this transport: one of two frozen objects held by the layer */
  readonly tv: TimerValues
  /** @internal deadline of the retransmission timer (A, E or G), -1 when not running */
  retransAt: number
  /** @internal current retransmission interval */
  retransInterval: number
  /** @internal deadline of the single "wait" timer of the state (B, D, F, H, I, J, K, L, M), -1 when not running */
  timeoutAt: number
  /** @internal next transaction with the same branch in the layer's index */
  _chain: Transaction | null

  constructor(host: TransactionHost<Transaction>, state: TransactionState, branch: string, method: string, dest: Destination, tv: TimerValues) {
    super()
    this.host = host
    this.branch = branch
    this.method = method
    this.state = state
    this.dest = dest
    this.context = undefined
    this.tv = tv
    this.retransAt = -1
    this.retransInterval = 0
    this.timeoutAt = -1
    this._chain = null
  }

  /** Which of the four machines (a prototype getter: no per-transaction field). */
  abstract get kind(): TransactionKind

  /** Whether the transport is reliable (read from the timer set: no per-transaction field). */
  get reliable(): boolean {
    return this.tv.reliable
  }

  get terminated(): boolean {
    return this.state === 'Terminated'
  }

  /** Whether `from -> to` is an edge of this machine's RFC diagram. */
  protected abstract canEnter(from: TransactionState, to: TransactionState): boolean

  /** Asserted transition: an edge missing from the RFC diagram is a bug, not a runtime condition. */
  protected enter(to: TransactionState): void {
    const from = this.state
    if (!this.canEnter(from, to)) {
      throw new TransactionError('ERR_TX_BAD_TRANSITION', `${this.kind} ${this.branch}: illegal transition ${from} -> ${to}`)
    }
    this.state = to
  }

  /** Earliest pending deadline of subclass-specific timers merged with `at` (-1 = none). */
  protected extraDeadline(at: number): number {
    return at
  }

  /**
   * Restarts the retransmission timer (A, E or G) after it fired, `retransInterval` after the
   * deadline it was due at, so that lateness of one tick does not accumulate over the series
   * (the sends stay at T1, 3*T1, 7*T1 ...). After a stall longer than the interval it counts from
   * `now` instead: a late timer never causes a burst of catch-up retransmissions.
   */
  protected restartRetransmit(now: number): void {
    let at = this.retransAt + this.retransInterval
    if (at <= now) at = now + this.retransInterval
    this.retransAt = at
  }

  /**
   * Schedules this entry at its earliest running timer, or unschedules it. Nothing once
   * terminated: a send may report a transport error synchronously and end the transaction in
   * the middle of a state's entry actions.
   */
  protected rearm(): void {
    if (this.state === 'Terminated') return
    let at = this.retransAt
    const t = this.timeoutAt
    if (t >= 0 && (at < 0 || t < at)) at = t
    at = this.extraDeadline(at)
    if (at < 0) this.host.unschedule(this)
    else this.host.schedule(this, at)
  }

  /**
   * Moves to Terminated, drops the timers and the index entries, then tells the owner: first
   * `onTimeout(reason)` when the transaction failed (a timer or a transport error), then
   * `onTerminated`. A second call does nothing.
   */
  protected end(reason: TimeoutReason | null): void {
    if (this.state === 'Terminated') return
    this.enter('Terminated')
    this.retransAt = -1
    this.timeoutAt = -1
    this.host.unschedule(this)
    this.host.remove(this)
    if (reason !== null) {
      if (reason === 'transport-error') this.host.counters.transportErrors++
      else this.host.counters.timeouts++
      this.notifyTimeout(reason)
    }
    this.notifyTerminated()
  }

  /** Calls the owner's `onTimeout` with the concrete transaction. */
  protected abstract notifyTimeout(reason: TimeoutReason): void
  /** Calls the owner's `onTerminated` with the concrete transaction. */
  protected abstract notifyTerminated(): void

  /**
   * The host reports that sending for this transaction failed: terminates it and tells the owner
   * `onTimeout(tx, 'transport-error')` (client §17.1.4, server §17.2.4). Returns false when it had
   * already terminated.
   */
  transportError(): boolean {
    if (this.state === 'Terminated') return false
    this.end('transport-error')
    return true
  }
}
