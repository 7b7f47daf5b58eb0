import type { SipMessage } from '@sipedge/sip'
import { ClientBase } from './client.js'
import type { ClientOptions } from './client.js'
import type { TransactionHost } from './host.js'
import type { TimerValues } from './timers.js'
import { nonInviteEdge } from './transaction.js'
import type { Transaction } from './transaction.js'
import type { TransactionState } from './types.js'

/**
 * Non-INVITE client transaction, RFC 3261 §17.1.2 (Figure 6).
 *
 *   Trying --1xx--> Proceeding --200-699--> Completed --Timer K--> Terminated
 *      |--200-699--> Completed,  --Timer F / transport error--> Terminated (Trying and Proceeding)
 */
export class NonInviteClientTransaction extends ClientBase<NonInviteClientTransaction> {
  constructor(host: TransactionHost<Transaction>, opts: ClientOptions<NonInviteClientTransaction>, tv: TimerValues) {
    super(host, 'Trying', opts, tv)
  }

  get kind(): 'nict' {
    return 'nict'
  }

  /** Figure 6. */
  protected canEnter(from: TransactionState, to: TransactionState): boolean {
    return nonInviteEdge(from, to)
  }

  start(now: number): void {
    // §17.1.2.2: "The "Trying" state is entered when the TU initiates a new client transaction with
    // a request. When entering this state, the client transaction SHOULD set timer F to fire in
    // 64*T1 seconds. The request MUST be passed to the transport layer for transmission. If an
    // unreliable transport is in use, the client transaction MUST set timer E to fire in T1 seconds."
    const tv = this.tv
    const request = this.request!
    if (tv.E > 0) {
      this.retransInterval = tv.E
      this.retransAt = now + tv.E
    } else {
      this.request = null
    }
    this.timeoutAt = now + tv.F
    this.rearm()
    // Last: the host may report a transport error from inside send, which ends the transaction.
    this.host.send(this.dest, request)
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
      this.completeWith(msg, this.tv.K, now)
      return
    }
    // Completed: "buffer any additional response retransmissions that may be received" (absorb).
    this.host.counters.absorbedResponses++
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
