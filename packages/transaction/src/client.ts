import { buildAckForNonTwoXx, buildCancel, parseMessage } from '@sipedge/sip'
import type { SipMessage } from '@sipedge/sip'
import type { TimerValues } from './timers.js'
import { Transaction } from './transaction.js'
import type { TransactionLayer } from './layer.js'
import type { Destination, TimeoutReason, TransactionState } from './types.js'

export type ClientTransaction = InviteClientTransaction | NonInviteClientTransaction

export interface ClientTransactionOptions {
  /** The request exactly as sent (a buffer list from MessageEditor.toBuffers() is fine). */
  request: Buffer | Buffer[]
  /** Request method (= CSeq method). ACK is not a transaction and is refused. */
  method: string
  /** Branch of the Via this hop put on top of `request` (magic cookie z9hG4bK). */
  branch: string
  dest: Destination
  /**
   * The parsed request, used to build the ACK for a 3xx-6xx (§17.1.1.3) and the CANCEL (§9.1).
   * Optional: when absent the layer parses `request` the first time it needs one (rare path).
   */
  msg?: SipMessage
  /** Provisional and final responses, per §17.1 (see README for what is absorbed). */
  onResponse: (msg: SipMessage, tx: ClientTransaction) => void
  /** Timer B/F, transport error, Timer C, or §9.1 cancel timeout. The transaction then terminates. */
  onTimeout?: (tx: ClientTransaction, reason: TimeoutReason) => void
  onTerminated?: (tx: ClientTransaction) => void
  context?: unknown
}

export interface CancelOptions {
  onResponse?: (msg: SipMessage, tx: ClientTransaction) => void
  onTimeout?: (tx: ClientTransaction, reason: TimeoutReason) => void
  onTerminated?: (tx: ClientTransaction) => void
  context?: unknown
}

function noop(): void {}

/** Common part of the two client machines. */
abstract class ClientBase extends Transaction {
  /** Bytes of the request; released when no retransmission can happen any more. */
  request: Buffer | Buffer[] | null
  /** @internal parsed request, given or parsed lazily */
  msg: SipMessage | null
  onResponse: (msg: SipMessage, tx: ClientTransaction) => void
  onTimeout: (tx: ClientTransaction, reason: TimeoutReason) => void
  onTerminated: (tx: ClientTransaction) => void

  constructor(layer: TransactionLayer, state: TransactionState, opts: ClientTransactionOptions, tv: TimerValues) {
    super(layer, state, opts.branch, opts.method, opts.dest, tv)
    this.request = opts.request
    this.msg = opts.msg ?? null
    this.onResponse = opts.onResponse
    this.onTimeout = opts.onTimeout ?? noop
    this.onTerminated = opts.onTerminated ?? noop
    this.context = opts.context
  }

  /** The parsed request (parsed from `request` on first use if it was not given). */
  requestMessage(): SipMessage {
    let m = this.msg
    if (m === null) {
      const r = this.request!
      m = parseMessage(Array.isArray(r) ? Buffer.concat(r) : r)
      this.msg = m
    }
    return m
  }

  /** @internal Called by the layer for a response whose branch and CSeq method match (§17.1.3). */
  abstract receiveResponse(msg: SipMessage, now: number): void

  /** @internal first transmission, on entry to Calling/Trying */
  abstract start(now: number): void

  protected retransmitRequest(): void {
    this.layer.counters.retransmittedRequests++
    this.layer._send(this.dest, this.request!)
  }

  protected end(reason: TimeoutReason | null): void {
    if (!this.finish()) return
    const self = this as unknown as ClientTransaction
    if (reason !== null) {
      if (reason === 'transport-error') this.layer.counters.transportErrors++
      else this.layer.counters.timeouts++
      this.onTimeout(self, reason)
    }
    this.onTerminated(self)
  }

  /** §17.1.4: "the client transaction SHOULD inform the TU that a Transport Error has occurred, and
   * the client transaction SHOULD transition directly to the "Terminated" state." */
  transportError(): void {
    this.end('transport-error')
  }
}

const CANCEL_NONE = 0
const CANCEL_PENDING = 1
const CANCEL_SENT = 2

/**
 * INVITE client transaction, RFC 3261 §17.1.1 (Figure 5) with RFC 6026 §7.2 (Accepted, Timer M).
 *
 *   Calling --1xx--> Proceeding --2xx--> Accepted --Timer M--> Terminated
 *      |                 |--300-699 (ACK)--> Completed --Timer D--> Terminated
 *      |--2xx--> Accepted, --300-699--> Completed, --Timer B / transport error--> Terminated
 */
export class InviteClientTransaction extends ClientBase {
  /** @internal proxy Timer C deadline (§16.6 step 11), -1 when not running */
  timerCAt: number
  /** Whether any provisional response has been received (gates CANCEL, §9.1). */
  provisionalReceived: boolean
  /** @internal CANCEL_NONE | CANCEL_PENDING | CANCEL_SENT */
  cancelState: number
  /** @internal callbacks for a CANCEL waiting for a provisional */
  cancelOpts: CancelOptions | null
  /** The CANCEL's own non-INVITE client transaction, once sent. */
  cancelTx: NonInviteClientTransaction | null
  /** The hop-by-hop ACK sent for a 3xx-6xx, kept for retransmitted finals during Timer D. */
  ack: Buffer | null

  constructor(layer: TransactionLayer, opts: ClientTransactionOptions, tv: TimerValues) {
    super(layer, 'Calling', opts, tv)
    this.timerCAt = -1
    this.provisionalReceived = false
    this.cancelState = CANCEL_NONE
    this.cancelOpts = null
    this.cancelTx = null
    this.ack = null
  }

  get kind(): 'ict' {
    return 'ict'
  }

  /** Whether cancel() has been called (the CANCEL may still wait for a provisional). */
  get cancelRequested(): boolean {
    return this.cancelState !== CANCEL_NONE
  }

  protected canEnter(from: TransactionState, to: TransactionState): boolean {
    switch (from) {
      case 'Calling': return to === 'Proceeding' || to === 'Completed' || to === 'Accepted' || to === 'Terminated'
      case 'Proceeding': return to === 'Completed' || to === 'Accepted' || to === 'Terminated'
      case 'Completed': return to === 'Terminated'
      case 'Accepted': return to === 'Terminated'
      default: return false
    }
  }

  protected override extraDeadline(at: number): number {
    const c = this.timerCAt
    return c >= 0 && (at < 0 || c < at) ? c : at
  }

  start(now: number): void {
    // §17.1.1.2: "The initial state, "calling", MUST be entered when the TU initiates a new client
    // transaction with an INVITE request. The client transaction MUST pass the request to the
    // transport layer for transmission". Timers A (unreliable only) and B start on entry.
    const tv = this.tv
    this.layer._send(this.dest, this.request!)
    if (tv.A > 0) {
      this.retransInterval = tv.A
      this.retransAt = now + tv.A
    }
    this.timeoutAt = now + tv.B
    if (tv.C > 0) this.timerCAt = now + tv.C
    this.rearm()
  }

  receiveResponse(msg: SipMessage, now: number): void {
    const status = msg.status
    const state = this.state
    if (state === 'Calling' || state === 'Proceeding') {
      if (status < 200) {
        if (state === 'Calling') {
          // §17.1.1.2: "If the client transaction receives a provisional response while in the
          // "Calling" state, it transitions to the "Proceeding" state. In the "Proceeding" state, the
          // client transaction SHOULD NOT retransmit the request any longer." Timer B belongs to
          // Calling only.
          this.enter('Proceeding')
          this.retransAt = -1
          this.timeoutAt = -1
        }
        this.provisionalReceived = true
        // §16.7 step 2: "if the response is a provisional response with status codes 101 to 199
        // inclusive (i.e., anything but 100), the proxy MUST reset timer C".
        if (status > 100 && this.timerCAt >= 0) this.timerCAt = now + this.tv.C
        // §9.1: a CANCEL requested before any provisional is sent now.
        if (this.cancelState === CANCEL_PENDING) this.sendCancel(now)
        this.rearm()
        this.onResponse(msg, this)
        return
      }
      this.timerCAt = -1
      this.retransAt = -1
      if (status < 300) {
        // RFC 6026 §7.2: "If a 2xx response is received while the client INVITE state machine is in
        // the "Calling" or "Proceeding" states, it MUST transition to the "Accepted" state, pass the
        // 2xx response to the TU, and set Timer M to 64*T1."
        this.enter('Accepted')
        this.timeoutAt = now + this.tv.M
        this.rearm()
        this.onResponse(msg, this)
        return
      }
      // §17.1.1.2: "When in either the "Calling" or "Proceeding" states, reception of a response
      // with status code from 300-699 MUST cause the client transaction to transition to
      // "Completed". The client transaction MUST pass the received response up to the TU, and the
      // client transaction MUST generate an ACK request, even if the transport is reliable".
      this.enter('Completed')
      const ack = buildAckForNonTwoXx(this.requestMessage(), msg)
      this.layer._send(this.dest, ack)
      const d = this.tv.D
      this.request = null
      if (d > 0) {
        this.ack = ack
        this.timeoutAt = now + d
        this.rearm()
        this.onResponse(msg, this)
      } else {
        // Timer D is zero on reliable transports: terminate after passing the response up.
        this.timeoutAt = -1
        this.onResponse(msg, this)
        this.end(null)
      }
      return
    }
    if (state === 'Completed') {
      if (status >= 300) {
        // §17.1.1.2: "Any retransmissions of the final response that are received while in the
        // "Completed" state MUST cause the ACK to be re-passed to the transport layer for
        // retransmission, but the newly generated ACK MUST NOT be passed up to the TU."
        this.layer.counters.absorbedResponses++
        if (this.ack !== null) {
          this.layer.counters.retransmittedRequests++
          this.layer._send(this.dest, this.ack)
        }
        return
      }
      if (status >= 200) {
        // A 2xx after a non-2xx final (a forking downstream). A 2xx must never be lost (it builds
        // a dialog the UAC must ACK), so it is passed up like in Accepted.
        this.onResponse(msg, this)
        return
      }
      this.layer.counters.absorbedResponses++
      return
    }
    if (state === 'Accepted') {
      // RFC 6026 §7.2: "If a 2xx response is received while the client INVITE state machine is in
      // the "Accepted" state, it MUST pass the 2xx response to the TU." A proxy forwards them all.
      if (status >= 200 && status < 300) this.onResponse(msg, this)
      else this.layer.counters.absorbedResponses++
    }
  }

  override onTimer(now: number): void {
    const state = this.state
    if (this.timeoutAt >= 0 && this.timeoutAt <= now) {
      this.timeoutAt = -1
      if (state === 'Calling') {
        // §17.1.1.2: "If the client transaction is still in the "Calling" state when timer B
        // fires, the client transaction SHOULD inform the TU that a timeout has occurred."
        this.end('timeout')
      } else if (state === 'Proceeding') {
        // §9.1: "If there is no final response for the original request in 64*T1 seconds ... the
        // client SHOULD then consider the original transaction cancelled and SHOULD destroy the
        // client transaction handling the original request."
        this.end('cancel-timeout')
      } else {
        // Completed: Timer D (§17.1.1.2). Accepted: Timer M (RFC 6026 §7.2).
        this.end(null)
      }
      return
    }
    if (this.timerCAt >= 0 && this.timerCAt <= now) {
      this.timerCAt = -1
      // §16.8: "If the client transaction has received a provisional response, the proxy MUST
      // generate a CANCEL request matching that transaction. If the client transaction has not
      // received a provisional response, the proxy MUST behave as if the transaction received a
      // 408 (Request Timeout) response." The owner treats reason 'timer-c' like a 408.
      if (this.provisionalReceived) {
        if (this.cancelState === CANCEL_NONE) this.cancel()
      } else {
        this.end('timer-c')
        return
      }
    }
    if (this.retransAt >= 0 && this.retransAt <= now && state === 'Calling') {
      // §17.1.1.2: "When timer A fires, the client transaction MUST retransmit the request by
      // passing it to the transport layer, and MUST reset the timer with a value of 2*T1" (doubling
      // each time; Timer B bounds it).
      this.retransmitRequest()
      this.retransInterval *= 2
      this.restartRetransmit(now)
    }
    if (this.state !== 'Terminated') this.rearm()
  }

  /**
   * Cancels the INVITE (§9.1). Builds a CANCEL with the same branch, Request-URI, Call-ID, To,
   * From and CSeq number (method CANCEL) and a single Via equal to the request's top Via, and runs
   * it in its own non-INVITE client transaction.
   *
   * §9.1: "If no provisional response has been received, the CANCEL request MUST NOT be sent;
   * rather, the client MUST wait for the arrival of a provisional response before sending the
   * request." Then it returns null and the CANCEL leaves when the first 1xx arrives.
   * "If the original request has generated a final response, the CANCEL SHOULD NOT be sent": it
   * returns null. A second call returns the existing CANCEL transaction (or null if pending).
   */
  cancel(opts?: CancelOptions): NonInviteClientTransaction | null {
    const state = this.state
    if (state !== 'Calling' && state !== 'Proceeding') return null
    if (this.cancelState !== CANCEL_NONE) return this.cancelTx
    this.cancelOpts = opts ?? null
    if (state === 'Calling') {
      this.cancelState = CANCEL_PENDING
      return null
    }
    return this.sendCancel(this.layer.now())
  }

  private sendCancel(now: number): NonInviteClientTransaction {
    this.cancelState = CANCEL_SENT
    const o = this.cancelOpts
    this.cancelOpts = null
    const bytes = buildCancel(this.requestMessage())
    const tx = this.layer._createCancel(this, bytes, o)
    this.cancelTx = tx
    // §9.1: bound the wait for the final response (487) to 64*T1 after the CANCEL.
    if (this.state === 'Proceeding') this.timeoutAt = now + this.tv.B
    this.rearm()
    return tx
  }
}

/**
 * Non-INVITE client transaction, RFC 3261 §17.1.2 (Figure 6).
 *
 *   Trying --1xx--> Proceeding --200-699--> Completed --Timer K--> Terminated
 *      |--200-699--> Completed,  --Timer F / transport error--> Terminated (Trying and Proceeding)
 */
export class NonInviteClientTransaction extends ClientBase {
  constructor(layer: TransactionLayer, opts: ClientTransactionOptions, tv: TimerValues) {
    super(layer, 'Trying', opts, tv)
  }

  get kind(): 'nict' {
    return 'nict'
  }

  protected canEnter(from: TransactionState, to: TransactionState): boolean {
    switch (from) {
      case 'Trying': return to === 'Proceeding' || to === 'Completed' || to === 'Terminated'
      case 'Proceeding': return to === 'Completed' || to === 'Terminated'
      case 'Completed': return to === 'Terminated'
      default: return false
    }
  }

  start(now: number): void {
    // §17.1.2.2: "The "Trying" state is entered when the TU initiates a new client transaction with
    // a request. When entering this state, the client transaction SHOULD set timer F to fire in
    // 64*T1 seconds. The request MUST be passed to the transport layer for transmission. If an
    // unreliable transport is in use, the client transaction MUST set timer E to fire in T1 seconds."
    const tv = this.tv
    this.layer._send(this.dest, this.request!)
    if (tv.E > 0) {
      this.retransInterval = tv.E
      this.retransAt = now + tv.E
    } else {
      this.request = null
    }
    this.timeoutAt = now + tv.F
    this.rearm()
  }

  receiveResponse(msg: SipMessage, now: number): void {
    const status = msg.status
    const state = this.state
    if (state === 'Trying' || state === 'Proceeding') {
      if (status < 200) {
        // §17.1.2.2: "If a provisional response is received while in the "Trying" state, the
        // response MUST be passed to the TU, and then the client transaction SHOULD move to the
        // "Proceeding" state."
        if (state === 'Trying') this.enter('Proceeding')
        this.onResponse(msg, this)
        return
      }
      // §17.1.2.2: "If a final response (status codes 200-699) is received while in the "Trying"
      // [or "Proceeding"] state, the response MUST be passed to the TU, and the client transaction
      // MUST transition to the "Completed" state." Timer K: T4 unreliable, zero reliable.
      this.enter('Completed')
      this.retransAt = -1
      this.request = null
      const k = this.tv.K
      if (k > 0) {
        this.timeoutAt = now + k
        this.rearm()
        this.onResponse(msg, this)
      } else {
        this.timeoutAt = -1
        this.onResponse(msg, this)
        this.end(null)
      }
      return
    }
    // Completed: "buffer any additional response retransmissions that may be received" (absorb).
    this.layer.counters.absorbedResponses++
  }

  override onTimer(now: number): void {
    const state = this.state
    if (this.timeoutAt >= 0 && this.timeoutAt <= now) {
      this.timeoutAt = -1
      // §17.1.2.2: "If Timer F fires while the client transaction is still in the "Trying" [or
      // "Proceeding"] state, the client transaction SHOULD inform the TU about the timeout, and
      // then it SHOULD enter the "Terminated" state." In Completed it is Timer K: just terminate.
      this.end(state === 'Completed' ? null : 'timeout')
      return
    }
    if (this.retransAt >= 0 && this.retransAt <= now) {
      this.retransmitRequest()
      if (state === 'Trying') {
        // §17.1.2.2: "If timer E fires while still in this state, the timer is reset, but this time
        // with a value of MIN(2*T1, T2) ... the next time, MIN(4*T1, T2)".
        this.retransInterval = Math.min(this.retransInterval * 2, this.tv.T2)
      } else {
        // §17.1.2.2: "If Timer E fires while in the "Proceeding" state, the request MUST be passed
        // to the transport layer for retransmission, and Timer E MUST be reset with a value of T2."
        this.retransInterval = this.tv.T2
      }
      this.restartRetransmit(now)
    }
    this.rearm()
  }
}
