import { buildAckForNonTwoXx, buildCancel, parseMessage } from '@sipedge/sip'
import type { SipMessage } from '@sipedge/sip'
import { ClientBase } from './client.js'
import { TransactionError } from './errors.js'
import type { ClientCallbacks, ClientOptions } from './client.js'
import type { TransactionHost } from './host.js'
import { NonInviteClientTransaction } from './nict.js'
import type { TimerValues } from './timers.js'
import { noop } from './transaction.js'
import { ownBytes } from './own.js'
import type { Transaction } from './transaction.js'
import type { TransactionState } from './types.js'

/** Callbacks of the CANCEL's own non-INVITE client transaction (all optional). */
export type CancelOptions = Partial<ClientCallbacks<NonInviteClientTransaction>>

/** `cancelOpts` of a cancel() that waits for a provisional and was given no callbacks. */
const NO_CANCEL_OPTS: CancelOptions = Object.freeze({})

/**
 * INVITE client transaction, RFC 3261 §17.1.1 (Figure 5) with RFC 6026 §7.2 (Accepted, Timer M).
 *
 *   Calling --1xx--> Proceeding --2xx--> Accepted --Timer M--> Terminated
 *      |                 |--300-699 (ACK)--> Completed --Timer D--> Terminated
 *      |--2xx--> Accepted, --300-699--> Completed, --Timer B / transport error--> Terminated
 */
export class InviteClientTransaction extends ClientBase<InviteClientTransaction> {
  /**
   * @internal parsed request, given or parsed lazily (for the ACK and the CANCEL); released with
   * `request` once a final response has arrived (nothing builds an ACK or a CANCEL from it then)
   */
  msg: SipMessage | null
  /** @internal proxy Timer C deadline (§16.6 step 11), -1 when not running */
  timerCAt: number
  /** Whether any provisional response has been received (gates CANCEL, §9.1). */
  provisionalReceived: boolean
  /**
   * @internal non-null while a cancel() waits for a provisional (its callbacks, or NO_CANCEL_OPTS).
   * With `cancelTx` it is the CANCEL's state: none (both null), pending (this), sent (cancelTx).
   */
  cancelOpts: CancelOptions | null
  /** The CANCEL's own non-INVITE client transaction, once sent. */
  cancelTx: NonInviteClientTransaction | null
  /**
   * The hop-by-hop ACK sent for a 3xx-6xx, kept for retransmitted finals during Timer D (32 s on
   * UDP), as a latin1 string: the built ACK is a view of sip's 16 KB output slab, which it would
   * keep alive (see own.ts; ServerBase.lastResponse keeps its response the same way).
   */
  ack: string | null

  constructor(host: TransactionHost<Transaction>, opts: ClientOptions<InviteClientTransaction>, tv: TimerValues) {
    super(host, 'Calling', opts, tv)
    // Kept until the final response, which may be minutes away (ringing, Timer C): in a store of
    // its own, not as views of the proxy's edit pieces and of the pool slabs they were cut from.
    const r = opts.request
    if (Array.isArray(r) || r.buffer.byteLength !== r.length) this.request = ownBytes(r)
    this.msg = opts.msg ?? null
    this.timerCAt = -1
    this.provisionalReceived = false
    this.cancelOpts = null
    this.cancelTx = null
    this.ack = null
  }

  get kind(): 'ict' {
    return 'ict'
  }

  /** Whether cancel() has been called (the CANCEL may still wait for a provisional). */
  get cancelRequested(): boolean {
    return this.cancelOpts !== null || this.cancelTx !== null
  }

  /** The parsed request (parsed from `request` on first use if it was not given). */
  requestMessage(): SipMessage {
    let m = this.msg
    if (m === null) {
      const r = this.request
      if (r === null) throw new TransactionError('ERR_TX_NO_REQUEST', `ict ${this.branch}: the request was released (${this.state})`)
      m = parseMessage(r as Buffer) // one exact copy since the constructor
      this.msg = m
    }
    return m
  }

  /** Figure 5 with RFC 6026 §7.2 (Accepted). */
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
    if (tv.A > 0) {
      this.retransInterval = tv.A
      this.retransAt = now + tv.A
    }
    this.timeoutAt = now + tv.B
    if (tv.C > 0) this.timerCAt = now + tv.C
    this.rearm()
    // Last: the host may report a transport error from inside send, which ends the transaction.
    this.host.send(this.dest, this.request!)
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
        // §9.1: a CANCEL requested before any provisional is sent now. Sending it may report a
        // transport error for this destination, which ends this transaction too.
        if (this.cancelOpts !== null) {
          this.sendCancel(now, this.cancelOpts)
          if (this.state === 'Terminated') return
        }
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
        // nothing retransmits the INVITE or builds an ACK or CANCEL from it any more (Timer M, 32 s)
        this.request = null
        this.msg = null
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
      this.host.send(this.dest, ack)
      this.request = null
      this.msg = null
      // Kept to re-ACK retransmitted finals while Timer D runs (unreliable transports only).
      if (this.tv.D > 0) this.ack = ack.toString('latin1')
      this.completeWith(msg, this.tv.D, now)
      return
    }
    if (state === 'Completed') {
      if (status >= 300) {
        // §17.1.1.2: "Any retransmissions of the final response that are received while in the
        // "Completed" state MUST cause the ACK to be re-passed to the transport layer for
        // retransmission, but the newly generated ACK MUST NOT be passed up to the TU."
        this.host.counters.absorbedResponses++
        if (this.ack !== null) {
          this.host.counters.retransmittedRequests++
          this.host.send(this.dest, Buffer.from(this.ack, 'latin1'))
        }
        return
      }
      if (status >= 200) {
        // A 2xx after a non-2xx final (a forking downstream). A 2xx must never be lost (it builds
        // a dialog the UAC must ACK), so it is passed up like in Accepted.
        this.onResponse(msg, this)
        return
      }
      this.host.counters.absorbedResponses++
      return
    }
    if (state === 'Accepted') {
      // RFC 6026 §7.2: "If a 2xx response is received while the client INVITE state machine is in
      // the "Accepted" state, it MUST pass the 2xx response to the TU." A proxy forwards them all.
      if (status >= 200 && status < 300) this.onResponse(msg, this)
      else this.host.counters.absorbedResponses++
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
        if (!this.cancelRequested) this.cancel()
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
    this.rearm()
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
    if (this.cancelRequested) return this.cancelTx
    if (state === 'Calling') {
      this.cancelOpts = opts ?? NO_CANCEL_OPTS
      return null
    }
    return this.sendCancel(this.host.now(), opts ?? NO_CANCEL_OPTS)
  }

  private sendCancel(now: number, o: CancelOptions): NonInviteClientTransaction {
    this.cancelOpts = null
    // §9.1: "The CANCEL request uses the same ... branch" and is a non-INVITE request, so it runs
    // in a non-INVITE client transaction of its own (same branch, same destination, CSeq method
    // CANCEL: §17.1.3 tells its responses from the INVITE's).
    const tx = new NonInviteClientTransaction(this.host, {
      request: buildCancel(this.requestMessage()),
      method: 'CANCEL',
      branch: this.branch,
      dest: this.dest,
      onResponse: o.onResponse ?? noop,
      onTimeout: o.onTimeout ?? noop,
      onTerminated: o.onTerminated ?? noop,
      context: o.context,
    }, this.tv)
    this.host.addClient(tx)
    this.cancelTx = tx
    // §9.1: bound the wait for the final response (487) to 64*T1 after the CANCEL.
    if (this.state === 'Proceeding') this.timeoutAt = now + this.tv.B
    this.rearm()
    tx.start(now)
    return tx
  }
}
