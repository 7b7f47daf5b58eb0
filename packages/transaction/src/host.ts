import type { TransactionCounters } from './counters.js'
import type { Destination } from './types.js'

/**
 * What a transaction needs from the layer that owns it. `TransactionLayer` implements it and
 * hands itself to every transaction as this interface, so the machines (ict, nict, ist, nist)
 * depend on this file and never on layer.ts: the imports form no circle.
 *
 * `T` is the transaction type the host indexes and schedules (`Transaction`); it is a parameter
 * so that this file imports no machine either.
 *
 * The TU never calls these: they are the transactions' side of the contract.
 */
export interface TransactionHost<T> {
  readonly counters: TransactionCounters
  /** The injected clock, monotonic ms. */
  now(): number
  /** Hands bytes to the transport (the injected `send`; it does not throw). */
  send(dest: Destination, data: Buffer | Buffer[]): void
  /** (Re)arms the transaction's single timer-wheel entry at `at` (ms). */
  schedule(tx: T, at: number): void
  unschedule(tx: T): void
  /**
   * Indexes a new client transaction: by branch and method (§17.1.3) and, while it awaits a final
   * response, by destination (for `transportError`). Counts it. Throws ERR_TX_DUPLICATE when a
   * transaction with the same branch and method exists.
   */
  addClient(tx: T): void
  /** A client transaction left Calling/Trying/Proceeding: a transport error no longer concerns it. */
  settleClient(tx: T): void
  /** A transaction terminated: drop it from the indexes and count it. */
  remove(tx: T): void
  /**
   * A non-INVITE server transaction entered Completed over an unreliable transport and sent its
   * final response: the host may take over its Completed state (retransmissions answered until
   * Timer J, counted as terminated then) and drop it from its indexes. Returns false when it does
   * not, and the transaction runs Timer J itself.
   */
  park(tx: T): boolean
}
