import { buildResponse, randomTag } from '@sipedge/sip'
import type { BuildResponseOptions, SipMessage } from '@sipedge/sip'
import { TransactionError } from './errors.js'
import type { TransactionHost } from './host.js'
import type { TimerValues } from './timers.js'
import { Transaction, noop } from './transaction.js'
import type { Destination, TimeoutReason, TransactionState, TransportName } from './types.js'

export interface RespondOptions {
  toTag?: string
  headers?: Array<[string, string]>
  body?: Buffer | string
  contentType?: string
}

/**
 * Common part of the two server machines (ist.ts, nist.ts). `Self` is the concrete machine, the
 * type the owner's callbacks receive.
 *
 * A server transaction is never failed by `layer.transportError(dest)`: when a response cannot be
 * sent over the connection the request came on, RFC 3261 §18.2.2 has the transport send it to the
 * Via sent-by over a new connection (the primary does that: FLAG_OPEN_CONNECTION), and Timer G/H
 * (INVITE) or the peer's retransmissions (non-INVITE) cover the rest. Only `tx.transportError()`
 * (§17.2.4) ends one.
 */
export abstract class ServerBase<Self extends ServerBase<Self>> extends Transaction {
  /**
   * The request that created the transaction; null once a non-INVITE server transaction has sent
   * its final response (nist.ts): nothing needs it in Completed, and it was four fifths of what a
   * Completed transaction holds for the 32 s of Timer J (issue 17: 100,000 REGISTERs).
   */
  request: SipMessage | null
  /**
   * Last response sent (resent on request retransmissions and by Timer G). A non-INVITE server
   * transaction in Completed over UDP, and an INVITE server transaction in Completed or Accepted
   * (Timers H and L run on every transport), keep it as a latin1 string (`keepAsString`): on the V8
   * heap, which a GC compacts and returns, instead of a Buffer in malloc's heap, which keeps the
   * pages of a burst's responses after they are freed (issue 17: 100,000 REGISTERs left 44 MB
   * there); and a string is a leaf for the GC's marker (it holds no pointers), where a Buffer is a
   * typed array and the array buffer of its pool slab.
   */
  lastResponse: Buffer | Buffer[] | string | null
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
  /** @internal the transport the request arrived on: a request on another one is not a retransmission (layer.ts matchServer) */
  readonly arrival: TransportName
  /** @internal bytes of the request and of its retransmissions received so far */
  requestBytes: number
  /** @internal bytes of every response sent so far (retransmissions included) */
  sentBytes: number
  /** @internal `limitResponses` ratio; 0: no limit */
  responseRatio: number
  /** Timer H fired (no ACK, INVITE only) or the host reported a transport error. */
  onTimeout: (tx: Self, reason: TimeoutReason) => void
  onTerminated: (tx: Self) => void

  constructor(host: TransactionHost<Transaction>, state: TransactionState, request: SipMessage, branch: string, viaHost: string, viaPort: number, key2543: string | null, dest: Destination, tv: TimerValues) {
    super(host, state, branch, request.method, dest, tv)
    this.request = request
    this.lastResponse = null
    this.lastStatus = 0
    this.toTag = null
    this.viaHost = viaHost
    this.viaPort = viaPort
    this.key2543 = key2543
    this.arrival = dest.transport
    this.requestBytes = request.buf.length
    this.sentBytes = 0
    this.responseRatio = 0
    this.onTimeout = noop
    this.onTerminated = noop
  }

  /** The concrete machine (the F-bounded `this`; sound because every subclass binds Self to itself). */
  protected get self(): Self {
    return this as unknown as Self
  }

  /**
   * Builds a response to `request` with sip's buildResponse and sends it through the state
   * machine. Non-100 responses to a request without To tag get one (§8.2.6.2), the same for every
   * response of this transaction. Returns false when the state machine discards it (§17.2).
   */
  respond(status: number, reason?: string, opts?: RespondOptions): boolean {
    if (!Number.isInteger(status) || status < 100 || status > 699) throw new TransactionError('ERR_TX_BAD_STATUS', `status must be 100-699, got ${status}`)
    const request = this.request
    if (!this.accepts(status) || request === null) return false
    // The source fills received/rport on the copied top Via (RFC 3261 §18.2.1, RFC 3581 §4).
    // One object literal of one shape (not a spread of `opts` and then a property added to it):
    // V8 took its slow define/store paths on every response here (perf, S=1, 2026-12-08).
    let toTag = opts?.toTag
    if (status > 100 && request.to.tag === undefined) {
      toTag = toTag ?? this.toTag ?? randomTag()
      this.toTag = toTag
    }
    const o: BuildResponseOptions = {
      toTag,
      source: this.dest,
      headers: opts?.headers,
      body: opts?.body,
      contentType: opts?.contentType,
    }
    return this.sendResponse(buildResponse(request, status, reason, o), status)
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

  /**
   * Caps what this transaction sends to `ratio` x the bytes it received (the request and its
   * retransmissions): a response retransmission (Timer G, or one answering a request
   * retransmission) that would take the total past that is not sent, and counted
   * (`withheldResponses`). Responses the TU passes (`respond`, `sendResponse`) are always sent.
   *
   * Why (issue "Safe on a public address" 6, reflection): over UDP the source address is not
   * proven, and an INVITE answered locally with 3xx-6xx is retransmitted by Timer G until ACK or
   * Timer H, §17.2.1: "For unreliable transports, timer G is set to fire in T1 seconds ... If timer
   * G fires, the response is passed to the transport layer once more for retransmission" — about
   * ten copies within 64*T1, 12x the request's bytes towards whoever the request names as its
   * source. With the cap the response stays reliable for a real client: §17.2.1 also has "while
   * in the "Completed" state, if a request retransmission is received, the server SHOULD pass the
   * response to the transport for retransmission", and every request retransmission of a client
   * that lost the response adds its bytes to the allowance; only a spoofed source, which never
   * retransmits, stops getting copies.
   */
  limitResponses(ratio: number): void {
    this.responseRatio = ratio
  }

  protected transmit(bytes: Buffer | Buffer[], status: number): void {
    this.lastResponse = bytes
    this.lastStatus = status
    this.sentBytes += byteLength(bytes)
    this.host.send(this.dest, bytes)
  }

  /** Keeps lastResponse as a latin1 string (the bytes are sent already; see lastResponse). */
  protected keepAsString(): void {
    const r = this.lastResponse
    if (r === null || typeof r === 'string') return
    const b = Array.isArray(r) ? (r.length === 1 ? r[0]! : Buffer.concat(r)) : r
    this.lastResponse = b.toString('latin1')
  }

  protected resendLast(): void {
    const s = this.lastResponse
    if (s === null) return
    const r = typeof s === 'string' ? Buffer.from(s, 'latin1') : s
    const n = byteLength(r)
    if (this.responseRatio > 0 && this.sentBytes + n > this.responseRatio * this.requestBytes) {
      this.host.counters.withheldResponses++
      return
    }
    this.sentBytes += n
    this.host.counters.retransmittedResponses++
    this.host.send(this.dest, r)
  }

  /** Starts the state's wait timer (I, J), or terminates at once when it is zero (reliable transport). */
  protected waitOrEnd(wait: number, now: number): void {
    if (wait > 0) {
      this.timeoutAt = now + wait
      this.rearm()
    } else {
      this.timeoutAt = -1
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

function byteLength(b: Buffer | Buffer[]): number {
  if (!Array.isArray(b)) return b.length
  let n = 0
  for (let i = 0; i < b.length; i++) n += b[i]!.length
  return n
}
