import type { SipMessage } from '@sipedge/sip'
import type { TransactionHost } from './host.js'
import type { PendingClient, PendingLink } from './pending.js'
import type { TimerValues } from './timers.js'
import { Transaction, noop } from './transaction.js'
import type { Destination, TimeoutReason, TransactionState } from './types.js'

/** What the owner of a client transaction is told; `T` is the transaction passed back. */
export interface ClientCallbacks<T> {
  /** Provisional and final responses, per §17.1 (see README for what is absorbed). */
  onResponse: (msg: SipMessage, tx: T) => void
  /** Timer B/F, transport error, Timer C, or §9.1 cancel timeout. The transaction then terminates. */
  onTimeout?: (tx: T, reason: TimeoutReason) => void
  onTerminated?: (tx: T) => void
  context?: unknown
}

/** The request a client transaction sends, and its owner's callbacks. */
export interface ClientOptions<T> extends ClientCallbacks<T> {
  /** The request exactly as sent (a buffer list from MessageEditor.toBuffers() is fine). */
  request: Buffer | Buffer[]
  /** Request method (= CSeq method). ACK is not a transaction and is refused. */
  method: string
  /** Branch of the Via this hop put on top of `request` (magic cookie z9hG4bK). */
  branch: string
  dest: Destination
  /**
   * The parsed request, used by INVITE transactions to build the ACK for a 3xx-6xx (§17.1.1.3)
   * and the CANCEL (§9.1). Optional: when absent the layer parses `request` the first time it
   * needs one (rare path). Non-INVITE transactions never need it.
   */
  msg?: SipMessage
}

/**
 * Common part of the two client machines (ict.ts, nict.ts). `Self` is the concrete machine, the
 * type the owner's callbacks receive.
 *
 * While a client transaction awaits its final response (Calling, Trying, Proceeding) the layer
 * also lists it under its destination, so that a transport error reported for that destination
 * reaches it at once (§17.1.4); `_dPrev`/`_dNext` are that list's links.
 */
export abstract class ClientBase<Self extends ClientBase<Self>> extends Transaction implements PendingClient {
  /** Where the request goes; fixed for the transaction's life (the destination index keys on it). */
  declare readonly dest: Destination
  /** Bytes of the request; released when no retransmission can happen any more. */
  request: Buffer | Buffer[] | null
  onResponse: (msg: SipMessage, tx: Self) => void
  onTimeout: (tx: Self, reason: TimeoutReason) => void
  onTerminated: (tx: Self) => void
  /** @internal previous node of the list of transactions awaiting a final response from the same address */
  _dPrev: PendingLink | null
  /** @internal next one */
  _dNext: PendingClient | null

  constructor(host: TransactionHost<Transaction>, state: TransactionState, opts: ClientOptions<Self>, tv: TimerValues) {
    super(host, state, opts.branch, opts.method, opts.dest, tv)
    this.request = opts.request
    this.onResponse = opts.onResponse
    this.onTimeout = opts.onTimeout ?? noop
    this.onTerminated = opts.onTerminated ?? noop
    this.context = opts.context
    this._dPrev = null
    this._dNext = null
  }

  /** The concrete machine (the F-bounded `this`; sound because every subclass binds Self to itself). */
  protected get self(): Self {
    return this as unknown as Self
  }

  /** Whether the transaction still awaits its final response (a transport error can fail it). */
  get awaitingFinal(): boolean {
    const s = this.state
    return s === 'Calling' || s === 'Trying' || s === 'Proceeding'
  }

  /** @internal Called by the layer for a response whose branch and CSeq method match (§17.1.3). */
  abstract receiveResponse(msg: SipMessage, now: number): void

  /** @internal first transmission, on entry to Calling/Trying */
  abstract start(now: number): void

  /** Every transition out of Calling/Trying/Proceeding takes the transaction off the destination index. */
  protected override enter(to: TransactionState): void {
    const was = this.awaitingFinal
    super.enter(to)
    if (was && !this.awaitingFinal) this.host.settleClient(this)
  }

  protected retransmitRequest(): void {
    this.host.counters.retransmittedRequests++
    this.host.send(this.dest, this.request!)
  }

  /**
   * Passes a final response up on entry to Completed and starts Timer D (INVITE) or K
   * (non-INVITE); when that is zero (reliable transport) the transaction terminates right after
   * the owner has seen the response (§17.1.1.2, §17.1.2.2).
   */
  protected completeWith(msg: SipMessage, wait: number, now: number): void {
    if (wait > 0) {
      this.timeoutAt = now + wait
      this.rearm()
      this.onResponse(msg, this.self)
    } else {
      this.timeoutAt = -1
      this.onResponse(msg, this.self)
      this.end(null)
    }
  }

  protected notifyTimeout(reason: TimeoutReason): void {
    this.onTimeout(this.self, reason)
  }

  protected notifyTerminated(): void {
    this.onTerminated(this.self)
  }
}
