import type { SipMessage } from '@sipedge/sip'
import type { TransactionHost } from './host.js'
import { ServerBase } from './server.js'
import type { TimerValues } from './timers.js'
import { noop, nonInviteEdge } from './transaction.js'
import type { Transaction } from './transaction.js'
import type { Destination, TransactionState } from './types.js'

/**
 * Non-INVITE server transaction, RFC 3261 §17.2.2 (Figure 8).
 *
 *   Trying --1xx--> Proceeding --200-699--> Completed --Timer J--> Terminated
 *      |--200-699--> Completed,  --transport error--> Terminated
 */
export class NonInviteServerTransaction extends ServerBase<NonInviteServerTransaction> {
  /** Completed and held by the layer off the heap (`sendResponse`, parked.ts). */
  parked: boolean

  constructor(host: TransactionHost<Transaction>, request: SipMessage, branch: string, viaHost: string, viaPort: number, key2543: string | null, dest: Destination, tv: TimerValues) {
    super(host, 'Trying', request, branch, viaHost, viaPort, key2543, dest, tv)
    this.parked = false
  }

  get kind(): 'nist' {
    return 'nist'
  }

  /** Figure 8 (the same edges as the client's Figure 6). */
  protected canEnter(from: TransactionState, to: TransactionState): boolean {
    return nonInviteEdge(from, to)
  }

  accepts(_status: number): boolean {
    return this.state === 'Trying' || this.state === 'Proceeding'
  }

  sendResponse(bytes: Buffer | Buffer[], status: number): boolean {
    const state = this.state
    if (state !== 'Trying' && state !== 'Proceeding') {
      // §17.2.2: "Any other final responses passed by the TU to the server transaction MUST be
      // discarded while in the "Completed" state."
      return false
    }
    if (status < 200) {
      // §17.2.2: "While in the "Trying" state, if the TU passes a provisional response to the
      // server transaction, the server transaction MUST enter the "Proceeding" state."
      if (state === 'Trying') this.enter('Proceeding')
      this.transmit(bytes, status)
      return true
    }
    // §17.2.2: "If the TU passes a final response (status codes 200-699) to the server while in
    // the "Proceeding" [or "Trying"] state, the transaction MUST enter the "Completed" state, and
    // the response MUST be passed to the transport layer for transmission. When the server
    // transaction enters the "Completed" state, it MUST set Timer J to fire in 64*T1 seconds for
    // unreliable transports, and zero seconds for reliable transports."
    this.enter('Completed')
    this.transmit(bytes, status)
    // Completed matches retransmissions by branch (or the RFC 2543 key, which compares the
    // request's To tag: kept then) and resends lastResponse: the request is no longer needed.
    if (this.key2543 === null) this.request = null
    if (this.tv.J > 0) {
      // Timer J (32 s over UDP): the layer keeps what the Completed state needs off the V8 heap
      // (parked.ts) and lets go of this object, unless the owner waits for onTerminated, the
      // request had no RFC 3261 branch, or the record does not fit there (host.ts `park`).
      if (this.state === 'Completed' && this.key2543 === null && this.onTerminated === noop && this.host.park(this)) {
        this.parked = true
        this.lastResponse = null
        return true
      }
      // otherwise kept as a string on the V8 heap, not a Buffer (server.ts)
      this.keepAsString()
    }
    this.waitOrEnd(this.tv.J, this.host.now())
    return true
  }

  /**
   * The layer holds this transaction's Completed state off the heap (`sendResponse`): `state`
   * stays 'Completed' for whoever still holds the object, and request retransmissions are answered
   * by the layer until Timer J. Ending it from here would count it twice.
   */
  override transportError(): boolean {
    if (this.parked) return false
    return super.transportError()
  }

  receiveRetransmission(): void {
    this.host.counters.absorbedRequests++
    // §17.2.2: "Once in the "Trying" state, any further request retransmissions are discarded."
    // "If a retransmission of the request is received while in the "Proceeding" state, the most
    // recently sent provisional response MUST be passed to the transport layer for
    // retransmission." "While in the "Completed" state, the server transaction MUST pass the final
    // response to the transport layer for retransmission whenever a retransmission of the request
    // is received."
    if (this.state !== 'Trying') this.resendLast()
  }

  override onTimer(now: number): void {
    if (this.timeoutAt >= 0 && this.timeoutAt <= now) {
      // §17.2.2: "The server transaction remains in this state until Timer J fires, at which point
      // it MUST transition to the "Terminated" state."
      this.timeoutAt = -1
      this.end(null)
      return
    }
    this.rearm()
  }
}
