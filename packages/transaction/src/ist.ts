import type { SipMessage } from '@sipedge/sip'
import type { TransactionHost } from './host.js'
import type { NonInviteServerTransaction } from './nist.js'
import { ServerBase } from './server.js'
import type { TimerValues } from './timers.js'
import type { Transaction } from './transaction.js'
import type { Destination, TransactionState } from './types.js'

/**
 * INVITE server transaction, RFC 3261 §17.2.1 (Figure 7) with RFC 6026 §7.1 (Accepted, Timer L).
 *
 *   Proceeding --2xx--> Accepted --Timer L--> Terminated
 *      |--300-699--> Completed --ACK--> Confirmed --Timer I--> Terminated
 *                        |--Timer H / transport error--> Terminated
 */
export class InviteServerTransaction extends ServerBase<InviteServerTransaction> {
  /** A CANCEL matching this INVITE was received (§9.2). */
  cancelled: boolean
  /** Called by the layer when a CANCEL for this INVITE arrives, with the CANCEL's own transaction. */
  onCancelled: ((tx: InviteServerTransaction, cancel: NonInviteServerTransaction) => void) | null

  constructor(host: TransactionHost<Transaction>, request: SipMessage, branch: string, viaHost: string, viaPort: number, key2543: string | null, dest: Destination, tv: TimerValues) {
    super(host, 'Proceeding', request, branch, viaHost, viaPort, key2543, dest, tv)
    this.cancelled = false
    this.onCancelled = null
  }

  get kind(): 'ist' {
    return 'ist'
  }

  /** Figure 7 with RFC 6026 §7.1 (Accepted). */
  protected canEnter(from: TransactionState, to: TransactionState): boolean {
    switch (from) {
      case 'Proceeding': return to === 'Completed' || to === 'Accepted' || to === 'Terminated'
      case 'Completed': return to === 'Confirmed' || to === 'Terminated'
      case 'Confirmed': return to === 'Terminated'
      case 'Accepted': return to === 'Terminated'
      default: return false
    }
  }

  accepts(status: number): boolean {
    const s = this.state
    // RFC 6026 §7.1: in Accepted, "2xx responses from the TU" (retransmissions forwarded by a
    // proxy) are passed to the transport; anything else from the TU is discarded.
    return s === 'Proceeding' || (s === 'Accepted' && status >= 200 && status < 300)
  }

  sendResponse(bytes: Buffer | Buffer[], status: number): boolean {
    const state = this.state
    if (state === 'Proceeding') {
      const now = this.host.now()
      if (status < 200) {
        // §17.2.1: "The TU passes any number of provisional responses to the server transaction.
        // So long as the server transaction is in the "Proceeding" state, each of these MUST be
        // passed to the transport layer for transmission."
        this.transmit(bytes, status)
        return true
      }
      if (status < 300) {
        // RFC 6026 §7.1: "If, while in the "Proceeding" state, the TU passes a 2xx response to the
        // server transaction, the server transaction MUST pass this response to the transport layer
        // for transmission ... the server transaction MUST then transition to the "Accepted"
        // state" and start Timer L (64*T1).
        this.enter('Accepted')
        this.transmit(bytes, status)
        // kept for Timer L (32 s) only to tell its To tag: a string on the V8 heap (server.ts)
        this.keepAsString()
        this.timeoutAt = now + this.tv.L
        this.rearm()
        return true
      }
      // §17.2.1: "While in the "Proceeding" state, if the TU passes a response with status code
      // from 300 to 699 to the server transaction, the response MUST be passed to the transport
      // layer for transmission, and the state machine MUST enter the "Completed" state. For
      // unreliable transports, timer G is set to fire in T1 seconds ... timer H MUST be set to fire
      // in 64*T1 seconds for all transports."
      this.enter('Completed')
      this.transmit(bytes, status)
      // kept until the ACK (Timer H, 32 s): a string on the V8 heap, not a pool slab (server.ts)
      this.keepAsString()
      const g = this.tv.G
      if (g > 0) {
        this.retransInterval = g
        this.retransAt = now + g
      }
      this.timeoutAt = now + this.tv.H
      this.rearm()
      return true
    }
    if (state === 'Accepted' && status >= 200 && status < 300) {
      // RFC 6026 §7.1: 2xx retransmissions from the TU are sent, the state does not change.
      this.host.send(this.dest, bytes)
      return true
    }
    return false
  }

  receiveRetransmission(): void {
    this.host.counters.absorbedRequests++
    const state = this.state
    // §17.2.1: "If a request retransmission is received while in the "Proceeding" state, the most
    // recent provisional response that was received from the TU MUST be passed to the transport
    // layer for retransmission." ... "while in the "Completed" state, if a request retransmission
    // is received, the server SHOULD pass the response to the transport for retransmission."
    // Confirmed: absorbed. Accepted (RFC 6026 §7.1): absorbed, the 2xx comes from the UAS end to end.
    if (state === 'Proceeding' || state === 'Completed') this.resendLast()
  }

  /**
   * @internal ACK matching this transaction. Returns true when the ACK belongs to the 2xx (RFC
   * 6026 §7.1: in Accepted "the ACK ... MUST be passed to the TU"; a proxy forwards it end to end).
   */
  receiveAck(now: number): boolean {
    const state = this.state
    if (state === 'Completed') {
      // §17.2.1: "If an ACK is received while the server transaction is in the "Completed" state,
      // the server transaction MUST transition to the "Confirmed" state. As Timer G is ignored in
      // this state, any retransmissions of the response will cease." Timer I: T4 / zero.
      this.enter('Confirmed')
      this.retransAt = -1
      this.waitOrEnd(this.tv.I, now)
      return false
    }
    if (state === 'Accepted') return true
    // Confirmed: "The purpose of the "Confirmed" state is to absorb any additional ACK messages".
    // Proceeding: an ACK before any final response belongs to nothing we sent: dropped.
    return false
  }

  override onTimer(now: number): void {
    const state = this.state
    if (this.timeoutAt >= 0 && this.timeoutAt <= now) {
      this.timeoutAt = -1
      if (state === 'Completed') {
        // §17.2.1: "If timer H fires while in the "Completed" state, it implies that the ACK was
        // never received. In this case, the server transaction MUST transition to the
        // "Terminated" state, and MUST indicate to the TU that a transaction failure has occurred."
        this.end('timeout')
      } else {
        // Confirmed: Timer I (§17.2.1). Accepted: Timer L (RFC 6026 §7.1).
        this.end(null)
      }
      return
    }
    if (this.retransAt >= 0 && this.retransAt <= now && state === 'Completed') {
      // §17.2.1: "If timer G fires, the response is passed to the transport layer once more for
      // retransmission, and timer G is set to fire in MIN(2*T1, T2) seconds. From then on, when
      // timer G fires, the response is passed to the transport again for transmission, and timer
      // G is reset with a value that doubles, unless that value exceeds T2, in which case it is
      // reset with the value of T2."
      this.resendLast()
      this.retransInterval = Math.min(this.retransInterval * 2, this.tv.T2)
      this.restartRetransmit(now)
    }
    this.rearm()
  }
}
