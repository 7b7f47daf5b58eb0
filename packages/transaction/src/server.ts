import { buildResponse, randomTag } from '@sipedge/sip'
import type { SipMessage } from '@sipedge/sip'
import { TransactionError } from './errors.js'
import type { TimerValues } from './timers.js'
import { Transaction } from './transaction.js'
import type { TransactionLayer } from './layer.js'
import type { Destination, TimeoutReason, TransactionState } from './types.js'

export type ServerTransaction = InviteServerTransaction | NonInviteServerTransaction

export interface RespondOptions {
  toTag?: string
  headers?: Array<[string, string]>
  body?: Buffer | string
  contentType?: string
}

function noop(): void {}

/** Common part of the two server machines. */
abstract class ServerBase extends Transaction {
  /** The request that created the transaction. */
  readonly request: SipMessage
  /** Last response sent (resent on request retransmissions and by Timer G). */
  lastResponse: Buffer | Buffer[] | null
  /** Status of `lastResponse`, 0 before any. */
  lastStatus: number
  /** To tag put on responses built by `respond()` (§8.2.6.2), null until one is needed. */
  toTag: string | null
  /** @internal sent-by of the top Via, host lower-cased, port -1 when absent (§17.2.3) */
  readonly viaHost: string
  /** @internal */
  readonly viaPort: number
  /** @internal RFC 2543 matching key when the request had no magic-cookie branch, else null */
  readonly key2543: string | null
  /** Timer H fired (no ACK, INVITE only) or the host reported a transport error. */
  onTimeout: (tx: ServerTransaction, reason: TimeoutReason) => void
  onTerminated: (tx: ServerTransaction) => void

  constructor(layer: TransactionLayer, state: TransactionState, request: SipMessage, branch: string, viaHost: string, viaPort: number, key2543: string | null, dest: Destination, tv: TimerValues) {
    super(layer, state, branch, request.method, dest, tv)
    this.request = request
    this.lastResponse = null
    this.lastStatus = 0
    this.toTag = null
    this.viaHost = viaHost
    this.viaPort = viaPort
    this.key2543 = key2543
    this.onTimeout = noop
    this.onTerminated = noop
  }

  /**
   * Builds a response to `request` with sip's buildResponse and sends it through the state
   * machine. Non-100 responses to a request without To tag get one (§8.2.6.2), the same for every
   * response of this transaction. Returns false when the state machine discards it (§17.2).
   */
  respond(status: number, reason?: string, opts?: RespondOptions): boolean {
    if (!Number.isInteger(status) || status < 100 || status > 699) throw new TransactionError('ERR_TX_BAD_STATUS', `status must be 100-699, got ${status}`)
    if (!this.accepts(status)) return false
    // The source fills received/rport on the copied top Via (RFC 3261 §18.2.1, RFC 3581 §4).
    const o: RespondOptions & { source: Destination } = opts === undefined ? { source: this.dest } : { ...opts, source: this.dest }
    if (status > 100 && this.request.to.tag === undefined) {
      const tag = o.toTag ?? this.toTag ?? randomTag()
      this.toTag = tag
      o.toTag = tag
    }
    return this.sendResponse(buildResponse(this.request, status, reason, o), status)
  }

  /** Whether a response with this status would be sent in the current state. */
  abstract accepts(status: number): boolean

  /**
   * Sends a response (built by the caller, e.g. a forwarded response with the top Via removed)
   * through the state machine. Returns false when discarded (§17.2).
   */
  abstract sendResponse(bytes: Buffer | Buffer[], status: number): boolean

  /** @internal the request was retransmitted (§17.2.1, §17.2.2) */
  abstract receiveRetransmission(): void

  protected transmit(bytes: Buffer | Buffer[], status: number): void {
    this.lastResponse = bytes
    this.lastStatus = status
    this.layer._send(this.dest, bytes)
  }

  protected resendLast(): void {
    if (this.lastResponse !== null) {
      this.layer.counters.retransmittedResponses++
      this.layer._send(this.dest, this.lastResponse)
    }
  }

  protected end(reason: TimeoutReason | null): void {
    if (!this.finish()) return
    const self = this as unknown as ServerTransaction
    if (reason !== null) {
      if (reason === 'transport-error') this.layer.counters.transportErrors++
      else this.layer.counters.timeouts++
      this.onTimeout(self, reason)
    }
    this.onTerminated(self)
  }

  /** §17.2.4: a failure to send a response terminates the transaction and informs the TU. */
  transportError(): void {
    this.end('transport-error')
  }
}

/**
 * INVITE server transaction, RFC 3261 §17.2.1 (Figure 7) with RFC 6026 §7.1 (Accepted, Timer L).
 *
 *   Proceeding --2xx--> Accepted --Timer L--> Terminated
 *      |--300-699--> Completed --ACK--> Confirmed --Timer I--> Terminated
 *                        |--Timer H / transport error--> Terminated
 */
export class InviteServerTransaction extends ServerBase {
  /** A CANCEL matching this INVITE was received (§9.2). */
  cancelled: boolean
  /** Called by the layer when a CANCEL for this INVITE arrives, with the CANCEL's own transaction. */
  onCancelled: ((tx: InviteServerTransaction, cancel: NonInviteServerTransaction) => void) | null

  constructor(layer: TransactionLayer, request: SipMessage, branch: string, viaHost: string, viaPort: number, key2543: string | null, dest: Destination, tv: TimerValues) {
    super(layer, 'Proceeding', request, branch, viaHost, viaPort, key2543, dest, tv)
    this.cancelled = false
    this.onCancelled = null
  }

  get kind(): 'ist' {
    return 'ist'
  }

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
      const now = this.layer.now()
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
      this.layer._send(this.dest, bytes)
      return true
    }
    return false
  }

  receiveRetransmission(): void {
    this.layer.counters.absorbedRequests++
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
      const i = this.tv.I
      if (i > 0) {
        this.timeoutAt = now + i
        this.rearm()
      } else {
        this.timeoutAt = -1
        this.end(null)
      }
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

/**
 * Non-INVITE server transaction, RFC 3261 §17.2.2 (Figure 8).
 *
 *   Trying --1xx--> Proceeding --200-699--> Completed --Timer J--> Terminated
 *      |--200-699--> Completed,  --transport error--> Terminated
 */
export class NonInviteServerTransaction extends ServerBase {
  constructor(layer: TransactionLayer, request: SipMessage, branch: string, viaHost: string, viaPort: number, key2543: string | null, dest: Destination, tv: TimerValues) {
    super(layer, 'Trying', request, branch, viaHost, viaPort, key2543, dest, tv)
  }

  get kind(): 'nist' {
    return 'nist'
  }

  protected canEnter(from: TransactionState, to: TransactionState): boolean {
    switch (from) {
      case 'Trying': return to === 'Proceeding' || to === 'Completed' || to === 'Terminated'
      case 'Proceeding': return to === 'Completed' || to === 'Terminated'
      case 'Completed': return to === 'Terminated'
      default: return false
    }
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
    const j = this.tv.J
    if (j > 0) {
      this.timeoutAt = this.layer.now() + j
      this.rearm()
    } else {
      this.end(null)
    }
    return true
  }

  receiveRetransmission(): void {
    this.layer.counters.absorbedRequests++
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
