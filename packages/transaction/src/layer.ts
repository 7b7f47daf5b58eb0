import { parseMessage } from '@sipedge/sip'
import type { SipMessage } from '@sipedge/sip'
import { BranchIndex } from './branch-index.js'
import type { ClientOptions } from './client.js'
import { TransactionCounters } from './counters.js'
import { TransactionError } from './errors.js'
import type { TransactionHost } from './host.js'
import { InviteClientTransaction } from './ict.js'
import { InviteServerTransaction } from './ist.js'
import { NonInviteClientTransaction } from './nict.js'
import { NonInviteServerTransaction } from './nist.js'
import { ownString } from './own.js'
import { ParkedStore } from './parked.js'
import { PendingByDestination } from './pending.js'
import type { TransportFailure } from './pending.js'
import { DEFAULT_TIMERS, timerValues } from './timers.js'
import type { TimerValues } from './timers.js'
import { Transaction, noop } from './transaction.js'
import type { Clock, Destination, SendFn, TransportName } from './types.js'
import { TimerWheel } from './wheel.js'

export type ClientTransaction = InviteClientTransaction | NonInviteClientTransaction
export type ServerTransaction = InviteServerTransaction | NonInviteServerTransaction
/** What `createClient` takes: the request, where it goes, and the owner's callbacks. */
export type ClientTransactionOptions = ClientOptions<ClientTransaction>

/** RFC 3261 §8.1.1.7: branches of RFC 3261 elements start with this magic cookie. */
export const MAGIC_COOKIE = 'z9hG4bK'

export interface TransactionLayerOptions {
  /** Hands bytes to the transport. */
  send: SendFn
  /** Monotonic ms. Default: performance.now(). */
  clock?: Clock
  /** Default: everything but 'udp' is reliable. */
  isReliable?: (transport: TransportName) => boolean
  /** RFC 3261 T1 (ms, default 500), T2 (4000), T4 (5000). */
  t1?: number
  t2?: number
  t4?: number
  /** Proxy Timer C for INVITE client transactions (ms, default 180000, 0 = off). */
  timerC?: number
  /** Timer B / Timer F (ms); default 64*T1 as RFC 3261 §17.1.1.2 / §17.1.2.2 ask. */
  timerB?: number
  timerF?: number
  /** INVITE server transactions send 100 Trying on creation (§17.2.1). Default true. */
  autoTrying?: boolean
  /**
   * Unreliable transports: send responses to the request's source address and port as if the
   * client had asked with `rport` (RFC 3581 §4; the proxy's `nat.force_rport`). Default false.
   */
  forceRport?: boolean
  /** Responses that match no client transaction (a proxy forwards these statelessly, §16.7). */
  onStrayResponse?: (msg: SipMessage, source: Destination) => void
  /** Wheel tick (ms). Default clamp(floor(T1/10), 1, 50): 50 ms at the RFC default T1. */
  tickMs?: number
  /** Wheel slots, power of two. Default 1024 (51 s of 50 ms ticks: one rotation holds 64*T1). */
  wheelSlots?: number
  /**
   * true: the host (or a test) calls `layer.tick()` itself. false (default): the layer keeps ONE
   * unref'd setTimeout armed for the wheel's next due tick (TimerWheel.nextTick), and none when
   * idle: a timer that is cancelled before it is due (most are) costs no wake-up later than the
   * next one still pending, and a wheel holding only Timer K or a far Timer C wakes when it fires.
   */
  manualTimers?: boolean
  /**
   * A transaction's timer callback threw (a bug in what it calls: the proxy's failover, a
   * module): called with the error and the transaction; the layer's other timers go on. Absent:
   * the error is thrown out of tick() (and, with the native driver, out of its setTimeout).
   */
  onTimerError?: (err: unknown, tx: unknown) => void
  /**
   * The longest the native driver sleeps while a timer is pending (ms). Default 1,000 when a
   * `clock` is given — a clock that may jump (a test's clock, a stepped wall clock) is caught up
   * within a second — and 60,000 without one: the layer's own clock, performance.now(), is the
   * monotonic clock Node's timers run on, so the driver can sleep until the next timer is due.
   * A host whose `clock` is that same clock (performance.timeOrigin + performance.now()) sets
   * 60,000 too: an idle node with one far timer pending (Timer K of a probe, a Timer C) then
   * wakes when it is due, not every second (issue 17, idle).
   */
  maxSleepMs?: number
}

/** The longest the native timer driver sleeps by default: with a given clock / with performance.now(). */
export const DRIVER_SLEEP_MS = { anyClock: 1000, monotonic: 60_000 } as const

export type RequestResult =
  | { readonly kind: 'new'; readonly tx: ServerTransaction }
  | { readonly kind: 'retransmission' }
  | { readonly kind: 'ack-2xx' }
  | { readonly kind: 'ack-absorbed' }
  | { readonly kind: 'cancel'; readonly tx: NonInviteServerTransaction; readonly invite: InviteServerTransaction | undefined }

export type ResponseResult =
  | { readonly kind: 'matched'; readonly tx: ClientTransaction }
  | { readonly kind: 'stray' }

const RETRANSMISSION: RequestResult = Object.freeze({ kind: 'retransmission' })
const ACK_2XX: RequestResult = Object.freeze({ kind: 'ack-2xx' })
const ACK_ABSORBED: RequestResult = Object.freeze({ kind: 'ack-absorbed' })
const STRAY: ResponseResult = Object.freeze({ kind: 'stray' })

export interface TransactionStats {
  active: { ict: number; nict: number; ist: number; nist: number; total: number }
  created: { ict: number; nict: number; ist: number; nist: number }
  terminated: { ict: number; nict: number; ist: number; nist: number }
  retransmissions: { requests: number; responses: number }
  absorbed: { requests: number; responses: number }
  timeouts: number
  transportErrors: number
  strayResponses: number
  /** Response retransmissions withheld under a server transaction's `limitResponses`. */
  withheldResponses: number
  /**
   * Timers pending: the wheel's entries (one per transaction with a running timer) plus the
   * parked transactions, each of which runs Timer J.
   */
  timersPending: number
  /**
   * Completed non-INVITE server transactions over an unreliable transport held off the V8 heap
   * until Timer J (parked.ts); they count as active until then.
   */
  parked: number
  /** Bytes of the slabs that hold them (outside the V8 heap). */
  parkedBytes: number
}

function defaultIsReliable(t: TransportName): boolean {
  return t !== 'udp'
}

const performanceClock: Clock = { now: () => performance.now() }

/**
 * RFC 3261 §18.2.2 destination of responses for a request received from `source`:
 * reliable transport: the same connection; maddr: that address; rport (RFC 3581 §4): the source
 * address and port; otherwise the source address ("received") and the sent-by port (default 5060).
 * `forceRport`: the source address and port even without `rport` (a client behind NAT that does
 * not know RFC 3581 listens on the sent-by port, but only the source port gets through its NAT).
 */
export function responseDestination(msg: SipMessage, source: Destination, reliable: boolean, forceRport = false): Destination {
  if (reliable) return source
  const via = msg.topVia
  if (via.maddr !== undefined) return { transport: source.transport, address: via.maddr, port: via.port ?? 5060, socketId: source.socketId }
  if (via.rport !== undefined || forceRport) return source
  const port = via.port ?? 5060
  if (port === source.port) return source
  return { transport: source.transport, address: source.address, port, socketId: source.socketId }
}

/**
 * The transaction layer of one worker: indexes, the timer wheel, counters.
 * Everything runs on the caller's thread; nothing here is asynchronous except the timer driver.
 *
 * It is the `TransactionHost` of every transaction it creates (host.ts): the machines reach the
 * layer only through that interface.
 */
export class TransactionLayer implements TransactionHost<Transaction> {
  readonly counters: TransactionCounters
  readonly wheel: TimerWheel
  readonly clock: Clock
  /** The longest the native driver sleeps while a timer is pending (TransactionLayerOptions.maxSleepMs). */
  readonly maxSleepMs: number
  readonly autoTrying: boolean
  /** TransactionLayerOptions.forceRport; the owner may change it (configuration reload). */
  forceRport: boolean
  /** Timer values for unreliable and reliable transports (the only two instances). */
  readonly timersUnreliable: TimerValues
  readonly timersReliable: TimerValues
  private readonly sendFn: SendFn
  private readonly isReliableFn: (transport: TransportName) => boolean
  private readonly onStray: (msg: SipMessage, source: Destination) => void
  private readonly manual: boolean
  private readonly clients: BranchIndex
  private readonly servers: BranchIndex
  private readonly pending: PendingByDestination
  private readonly servers2543: Map<string, ServerTransaction>
  /** Completed non-INVITE server transactions over unreliable transports, off the heap (parked.ts). */
  private readonly parked: ParkedStore
  private driver: ReturnType<typeof setTimeout> | null
  /** the wheel tick the driver is armed for (valid while driver !== null) */
  private driverAt: number
  private closed: boolean
  private readonly driverTick: () => void

  constructor(opts: TransactionLayerOptions) {
    const cfg = {
      t1: opts.t1 ?? DEFAULT_TIMERS.t1,
      t2: opts.t2 ?? DEFAULT_TIMERS.t2,
      t4: opts.t4 ?? DEFAULT_TIMERS.t4,
      timerC: opts.timerC ?? DEFAULT_TIMERS.timerC,
      ...(opts.timerB !== undefined ? { timerB: opts.timerB } : {}),
      ...(opts.timerF !== undefined ? { timerF: opts.timerF } : {}),
    }
    this.timersUnreliable = timerValues(cfg, false)
    this.timersReliable = timerValues(cfg, true)
    this.counters = new TransactionCounters()
    this.clock = opts.clock ?? performanceClock
    this.maxSleepMs = opts.maxSleepMs ?? (opts.clock === undefined ? DRIVER_SLEEP_MS.monotonic : DRIVER_SLEEP_MS.anyClock)
    if (!(this.maxSleepMs >= 1)) throw new RangeError(`maxSleepMs must be >= 1, got ${this.maxSleepMs}`)
    // 50 ms ticks at T1 = 500 ms: the first retransmission is at most 10% late, every later
    // timer far less in relative terms, and a busy worker wakes 20 times a second for all its
    // timers together. A smaller T1 (tests, LAN deployments) scales the tick down with it.
    const tickMs = opts.tickMs ?? Math.max(1, Math.min(50, Math.floor(cfg.t1 / 10)))
    this.wheel = new TimerWheel({ tickMs, slots: opts.wheelSlots ?? 1024, now: this.clock.now(), ...(opts.onTimerError !== undefined ? { onError: opts.onTimerError } : {}) })
    this.autoTrying = opts.autoTrying ?? true
    this.forceRport = opts.forceRport ?? false
    this.sendFn = opts.send
    this.isReliableFn = opts.isReliable ?? defaultIsReliable
    this.onStray = opts.onStrayResponse ?? noop
    this.manual = opts.manualTimers ?? false
    this.clients = new BranchIndex()
    this.servers = new BranchIndex()
    this.pending = new PendingByDestination()
    this.servers2543 = new Map()
    this.parked = new ParkedStore()
    this.driver = null
    this.driverAt = 0
    this.closed = false
    this.driverTick = () => {
      this.driver = null
      this.tick()
    }
  }

  now(): number {
    return this.clock.now()
  }

  isReliable(transport: TransportName): boolean {
    return this.isReliableFn(transport)
  }

  /** Advances the timer wheel to the clock's time; returns how many transactions' timers fired. */
  tick(): number {
    const now = this.clock.now()
    const n = this.wheel.advance(now)
    if (this.parked.count > 0) this.counters.nistTerminated += this.parked.expire(now)
    if (!this.manual && !this.closed) this.armDriver(this.nextDueTick())
    return n
  }

  /** The wheel tick of the next timer: the wheel's, or the oldest parked transaction's Timer J; -1: none. */
  private nextDueTick(): number {
    const w = this.wheel.nextTick()
    const at = this.parked.nextExpiry()
    if (at < 0) return w
    const p = this.tickOf(at)
    return w < 0 || p < w ? p : w
  }

  /** The wheel tick a deadline `at` is filed under (as TimerWheel.schedule computes it). */
  private tickOf(at: number): number {
    const cur = this.wheel.currentTick
    const t = Math.ceil(at / this.wheel.tickMs)
    return t <= cur ? cur + 1 : t
  }

  /** @internal The wheel tick the native driver sleeps until; -1 when it is not armed (diagnostics, tests). */
  get wakeAt(): number {
    return this.driver === null ? -1 : this.driverAt
  }

  /** Sleeps until wheel tick `at` (-1: nothing pending, no timer). Re-arms only for an earlier tick. */
  private armDriver(at: number): void {
    if (at < 0) {
      if (this.driver !== null) { clearTimeout(this.driver); this.driver = null }
      return
    }
    if (this.driver !== null) {
      if (this.driverAt <= at) return
      clearTimeout(this.driver)
    }
    // +1 ms: the native timer's clock may run a little behind ours; firing before the tick
    // boundary would only re-arm, but costs a wake-up.
    // At most maxSleepMs: a clock that jumps (a stepped wall clock, a test clock) is caught up
    // within that instead of at a far timer's old due time (Timer C: minutes).
    const delay = Math.min(this.maxSleepMs, Math.max(1, Math.ceil(at * this.wheel.tickMs - this.clock.now()) + 1))
    const d = setTimeout(this.driverTick, delay)
    d.unref()
    this.driver = d
    this.driverAt = at
  }

  /** Stops the native timer driver for good. Transactions stay; `tick()` still works. */
  close(): void {
    this.closed = true
    if (this.driver !== null) {
      clearTimeout(this.driver)
      this.driver = null
    }
  }

  // ------------------------------------------------------------------ inbound

  /**
   * A request from the network (parsed and validated by the caller).
   * - `new`: a server transaction was created (INVITE: 100 Trying already sent if autoTrying).
   * - `retransmission`: matched an existing server transaction, which resent its last response.
   * - `ack-2xx`: an ACK for a 2xx or matching nothing: not part of any transaction, forward it
   *   statelessly (§17.2.3, §16.11 / RFC 6026 §7.1 in Accepted).
   * - `ack-absorbed`: the ACK of a non-2xx final this layer sent (§17.2.1); nothing to do.
   * - `cancel`: the CANCEL's own server transaction, and the INVITE it cancels if found (§9.2).
   */
  receiveRequest(msg: SipMessage, source: Destination): RequestResult {
    const via = msg.topVia
    const branch = via.branch
    const method = msg.method
    const magic = branch !== undefined && branch.startsWith(MAGIC_COOKIE)
    const port = via.port ?? -1
    if (method === 'ACK') {
      // §17.2.3: "the ACK request matches the INVITE transaction" (same branch, sent-by, method
      // INVITE); the ACK for a 2xx carries a new branch and matches nothing.
      const tx = magic ? this.matchServer(branch, via.host, port, 'INVITE', source.transport) : this.match2543(msg, 'INVITE', true, source.transport)
      if (tx === undefined || tx.kind !== 'ist') return ACK_2XX
      return (tx as InviteServerTransaction).receiveAck(this.clock.now()) ? ACK_2XX : ACK_ABSORBED
    }
    const existing = magic ? this.matchServer(branch, via.host, port, method, source.transport) : this.match2543(msg, method, false, source.transport)
    if (existing !== undefined) {
      existing.requestBytes += msg.buf.length
      existing.receiveRetransmission()
      return RETRANSMISSION
    }
    const reliable = this.isReliableFn(source.transport)
    // only unreliable arrivals are ever parked (Timer J is zero otherwise): no hash for the rest
    if (magic && !reliable && this.parked.count > 0) {
      const l = this.parked.find(method, branch, via.host, port, source.transport, this.clock.now())
      if (l >= 0) {
        // §17.2.2, Completed: "the server transaction MUST pass the final response to the
        // transport layer for retransmission whenever a retransmission of the request is received"
        this.counters.absorbedRequests++
        const r = this.parked.retransmission(l, msg.buf.length)
        if (r.bytes === null) {
          this.counters.withheldResponses++
        } else {
          this.counters.retransmittedResponses++
          this.sendFn(r.dest, r.bytes)
        }
        return RETRANSMISSION
      }
    }
    const tv = reliable ? this.timersReliable : this.timersUnreliable
    const dest = responseDestination(msg, source, reliable, this.forceRport)
    const key = magic ? null : key2543(msg, method)
    const host = via.host.toLowerCase()
    // kept past the request only where a timer holds the transaction (own.ts): not for a
    // non-INVITE over a reliable transport, which ends with its final response (Timer J = 0)
    const own = branch === undefined ? '' : reliable && method !== 'INVITE' ? branch : ownString(branch)
    if (method === 'INVITE') {
      const tx = new InviteServerTransaction(this, msg, own, host, port, key, dest, tv)
      this.indexServer(tx)
      this.counters.istCreated++
      // §17.2.1: "the server transaction MUST generate a 100 (Trying) response unless it knows that
      // the TU will generate a provisional or final response within 200 ms". We send it at once.
      if (this.autoTrying) tx.respond(100)
      return { kind: 'new', tx }
    }
    const tx = new NonInviteServerTransaction(this, msg, own, host, port, key, dest, tv)
    this.indexServer(tx)
    this.counters.nistCreated++
    if (method === 'CANCEL') {
      const invite = this.findInviteServerTransactionForCancel(msg, source.transport)
      if (invite !== undefined) {
        invite.cancelled = true
        if (invite.onCancelled !== null) invite.onCancelled(invite, tx)
      }
      return { kind: 'cancel', tx, invite }
    }
    return { kind: 'new', tx }
  }

  /**
   * A response from the network. §17.1.3: it matches the client transaction whose branch equals the
   * top Via branch and whose method equals the CSeq method (which tells an INVITE from its CANCEL).
   */
  receiveResponse(msg: SipMessage, source: Destination): ResponseResult {
    const branch = msg.topVia.branch
    if (branch !== undefined) {
      const tx = this.findClient(branch, msg.cseq.method)
      if (tx !== undefined) {
        tx.receiveResponse(msg, this.clock.now())
        return { kind: 'matched', tx }
      }
    }
    this.counters.strayResponses++
    this.onStray(msg, source)
    return STRAY
  }

  /**
   * §9.2: "The TU determines the transaction to be cancelled by taking the CANCEL request, and then
   * assuming that the request method is anything but CANCEL or ACK and applying the transaction
   * matching procedures of Section 17.2.3." A proxy only keeps state for INVITE, so: INVITE.
   */
  findInviteServerTransactionForCancel(cancel: SipMessage, transport?: TransportName): InviteServerTransaction | undefined {
    const via = cancel.topVia
    const branch = via.branch
    const tx = branch !== undefined && branch.startsWith(MAGIC_COOKIE)
      ? this.matchServer(branch, via.host, via.port ?? -1, 'INVITE', transport)
      : this.match2543(cancel, 'INVITE', false, transport)
    return tx !== undefined && tx.kind === 'ist' ? (tx as InviteServerTransaction) : undefined
  }

  /**
   * The server transaction a request belongs to (ACK: its INVITE), without side effects.
   * `transport`: the one the request arrived on (as receiveRequest matches); absent: any.
   */
  findServerTransaction(msg: SipMessage, transport?: TransportName): ServerTransaction | undefined {
    const via = msg.topVia
    const branch = via.branch
    const method = msg.method === 'ACK' ? 'INVITE' : msg.method
    return branch !== undefined && branch.startsWith(MAGIC_COOKIE)
      ? this.matchServer(branch, via.host, via.port ?? -1, method, transport)
      : this.match2543(msg, method, msg.method === 'ACK', transport)
  }

  /**
   * Whether a request (not ACK) belongs to a server transaction that exists, live or parked (a
   * Completed non-INVITE one over UDP, parked.ts): `receiveRequest` would take it as a
   * retransmission. The TU asks this to keep admission checks (flood limits, drain) for new
   * requests.
   */
  hasServerTransaction(msg: SipMessage, transport: TransportName): boolean {
    if (this.findServerTransaction(msg, transport) !== undefined) return true
    if (this.parked.count === 0 || msg.method === 'ACK' || this.isReliableFn(transport)) return false
    const via = msg.topVia
    const branch = via.branch
    return branch !== undefined && branch.startsWith(MAGIC_COOKIE) && this.parked.find(msg.method, branch, via.host, via.port ?? -1, transport, this.clock.now()) >= 0
  }

  /** The client transaction with this branch and method (§17.1.3). */
  findClient(branch: string, method: string): ClientTransaction | undefined {
    for (let tx = this.clients.get(branch) ?? null; tx !== null; tx = tx._chain) {
      if (tx.method === method) return tx as ClientTransaction
    }
    return undefined
  }

  // ------------------------------------------------------------------ outbound

  /**
   * Starts a client transaction and sends the request. INVITE gives an InviteClientTransaction,
   * anything else (but ACK, which is not a transaction) a NonInviteClientTransaction.
   */
  createClient(opts: ClientTransactionOptions & { method: 'INVITE' }): InviteClientTransaction
  createClient(opts: ClientTransactionOptions): ClientTransaction
  createClient(opts: ClientTransactionOptions): ClientTransaction {
    const method = opts.method
    if (method === 'ACK') throw new TransactionError('ERR_TX_ACK_NOT_A_TRANSACTION', 'ACK is not sent in a client transaction (§17.1.1.3: non-2xx ACK is generated by the INVITE transaction, 2xx ACK is end to end)')
    const tv = this.isReliableFn(opts.dest.transport) ? this.timersReliable : this.timersUnreliable
    const tx = method === 'INVITE' ? new InviteClientTransaction(this, opts, tv) : new NonInviteClientTransaction(this, opts, tv)
    this.addClient(tx) // throws ERR_TX_DUPLICATE before anything is sent
    tx.start(this.clock.now())
    return tx
  }

  /**
   * The transport reports a failure: a TCP connect refused or reset, a TLS handshake failure, a
   * connection lost. §18.4: "If the transport user asks for a request to be sent over a reliable
   * transport, and the result is a connection failure, the transport layer SHOULD inform the
   * transport user of a failure in sending." §17.1.4: "the client transaction SHOULD inform the TU
   * that a Transport Error has occurred, and the client transaction SHOULD transition directly to
   * the "Terminated" state." The TU then acts as on a 503 (§16.9 for a proxy, §8.1.3.1 for a UAC)
   * and fails over at once, not after Timer B/F.
   *
   * - `transportError(dest)`: ends every client transaction still awaiting a final response
   *   (Calling, Trying, Proceeding) whose destination has the same transport, address and port,
   *   or the same connection (`dest.connId` given and non-zero, with the connection's address),
   *   each with `onTimeout(tx, 'transport-error')`. A transaction past its final response (ICT
   *   Completed/Accepted, NICT Completed) is left alone, and so are server transactions (§18.2.2:
   *   the transport retries a response at the Via sent-by; see server.ts). Cost: one Map lookup by
   *   address when nothing waits on that address, else a walk of that address's waiting
   *   transactions (pending.ts); nothing is done per message to make this possible beyond linking
   *   and unlinking the transaction in that list.
   * - `transportError(tx)`: ends that one transaction, client (§17.1.4) or server (§17.2.4), in
   *   whatever state it is.
   *
   * Returns how many transactions it ended. May be called from inside `send`.
   */
  transportError(target: TransportFailure | Transaction): number {
    if (target instanceof Transaction) return target.transportError() ? 1 : 0
    const list = this.pending.matching(target)
    if (list === null) return 0
    let n = 0
    for (let i = 0; i < list.length; i++) {
      // An owner's onTimeout for an earlier one may have ended this one already (e.g. its CANCEL).
      const tx = list[i]!
      if (tx.awaitingFinal && tx.transportError()) n++
    }
    return n
  }

  // ------------------------------------------------------------------ metrics

  stats(): TransactionStats {
    const c = this.counters
    const ict = c.ictCreated - c.ictTerminated
    const nict = c.nictCreated - c.nictTerminated
    const ist = c.istCreated - c.istTerminated
    const nist = c.nistCreated - c.nistTerminated
    return {
      active: { ict, nict, ist, nist, total: ict + nict + ist + nist },
      created: { ict: c.ictCreated, nict: c.nictCreated, ist: c.istCreated, nist: c.nistCreated },
      terminated: { ict: c.ictTerminated, nict: c.nictTerminated, ist: c.istTerminated, nist: c.nistTerminated },
      retransmissions: { requests: c.retransmittedRequests, responses: c.retransmittedResponses },
      absorbed: { requests: c.absorbedRequests, responses: c.absorbedResponses },
      timeouts: c.timeouts,
      transportErrors: c.transportErrors,
      strayResponses: c.strayResponses,
      withheldResponses: c.withheldResponses,
      timersPending: this.wheel.size + this.parked.count,
      parked: this.parked.count,
      parkedBytes: this.parked.slabBytes,
    }
  }

  // ------------------------------------------------------------------ TransactionHost (used by transactions)

  /** @internal */
  send(dest: Destination, data: Buffer | Buffer[]): void {
    this.sendFn(dest, data)
  }

  /** @internal */
  schedule(tx: Transaction, at: number): void {
    this.wheel.schedule(tx, at)
    this.wakeBy(at)
  }

  /** Arms the native driver for deadline `at` unless it is armed for an earlier tick already. */
  private wakeBy(at: number): void {
    if (!this.manual && !this.closed) {
      const t = this.tickOf(at)
      if (this.driver === null || t < this.driverAt) this.armDriver(t)
    }
  }

  /**
   * @internal A Completed non-INVITE server transaction over an unreliable transport (nist.ts):
   * its Completed state goes into the parked store (off the V8 heap) and the object leaves the
   * indexes; Timer J is the store's. The RFC 2543 ones (matched by a key string) stay objects.
   */
  park(tx: Transaction): boolean {
    const s = tx as NonInviteServerTransaction
    const response = s.lastResponse
    if (s.key2543 !== null || response === null || typeof response === 'string') return false
    const expiresAt = this.clock.now() + s.tv.J
    if (!this.parked.add({
      method: s.method, branch: s.branch, viaHost: s.viaHost, viaPort: s.viaPort, arrival: s.arrival, dest: s.dest,
      response, sentBytes: s.sentBytes, requestBytes: s.requestBytes, ratio: s.responseRatio, expiresAt,
    })) return false
    this.wheel.cancel(s)
    this.servers.remove(s)
    this.wakeBy(expiresAt)
    return true
  }

  /** @internal */
  unschedule(tx: Transaction): void {
    this.wheel.cancel(tx)
  }

  /** @internal indexes and counts a new client transaction (the layer's own and an INVITE's CANCEL) */
  addClient(tx: Transaction): void {
    if (this.findClient(tx.branch, tx.method) !== undefined) throw new TransactionError('ERR_TX_DUPLICATE', `a ${tx.method} client transaction with branch ${tx.branch} already exists`)
    const c = tx as ClientTransaction
    if (c.kind === 'ict') this.counters.ictCreated++
    else this.counters.nictCreated++
    this.clients.add(c)
    this.pending.link(c)
  }

  /** @internal the client transaction has its final response (or is terminating) */
  settleClient(tx: Transaction): void {
    this.pending.unlink(tx as ClientTransaction)
  }

  /** @internal removes a terminated transaction from the indexes and counts it */
  remove(tx: Transaction): void {
    const c = this.counters
    switch (tx.kind) {
      case 'ict': c.ictTerminated++; break
      case 'nict': c.nictTerminated++; break
      case 'ist': c.istTerminated++; break
      case 'nist': c.nistTerminated++; break
    }
    if (tx.kind === 'ist' || tx.kind === 'nist') {
      const key = (tx as ServerTransaction).key2543
      if (key !== null) {
        if (this.servers2543.get(key) === tx) this.servers2543.delete(key)
        return
      }
      this.servers.remove(tx)
    } else {
      this.clients.remove(tx)
    }
  }

  private indexServer(tx: ServerTransaction): void {
    const key = tx.key2543
    if (key !== null) {
      // Two live transactions with one RFC 2543 key differ only in To tag; the first keeps the key.
      if (!this.servers2543.has(key)) this.servers2543.set(key, tx)
      return
    }
    this.servers.add(tx)
  }

  /**
   * §17.2.3: "1. the branch parameter in the request is equal to the one in the top Via header
   * field of the request that created the transaction, and 2. the sent-by value in the top Via of
   * the request is equal to the one in the request that created the transaction, and 3. the method
   * of the request matches the one that created the transaction, except for ACK, where the method
   * of the request that created the transaction is INVITE."
   *
   * And it arrived on the same transport. A retransmission travels the way the original did (§17.1:
   * the client transaction resends over the same transport; a reliable one does not retransmit at
   * all), so a request with the same branch and sent-by on another transport is a different
   * request. Without this, the RFC 5118 torture REGISTERs (which share branch `z9hG4bKas3-111` and
   * sent-by) sent over UDP and then TCP had the TCP one absorbed by the UDP transaction: not
   * forwarded, and the UDP transaction's 200 sent again (issue "Safe on a public address" 8).
   */
  private matchServer(branch: string, host: string, port: number, method: string, transport: TransportName | undefined): ServerTransaction | undefined {
    for (let t = this.servers.get(branch) ?? null; t !== null; t = t._chain) {
      const tx = t as ServerTransaction
      if (tx.method === method && tx.viaPort === port && (tx.viaHost === host || tx.viaHost === host.toLowerCase()) &&
        (transport === undefined || tx.arrival === transport)) return tx
    }
    return undefined
  }

  /**
   * §17.2.3, RFC 2543 peers (no magic cookie): "The INVITE request matches a transaction if the
   * Request-URI, To tag, From tag, Call-ID, CSeq, and top Via header field match those of the
   * INVITE request which created the transaction. ... The ACK request matches a transaction if the
   * Request-URI, From tag, Call-ID, CSeq number (not the method), and top Via header field match
   * those of the INVITE request which created the transaction, and the To tag of the ACK matches
   * the To tag of the response sent by the server transaction." Other methods as for INVITE.
   */
  private match2543(msg: SipMessage, methodClass: string, isAck: boolean, transport: TransportName | undefined): ServerTransaction | undefined {
    if (this.servers2543.size === 0) return undefined
    const tx = this.servers2543.get(key2543(msg, methodClass))
    if (tx === undefined || (transport !== undefined && tx.arrival !== transport)) return undefined
    const tag = msg.to.tag
    if (isAck) return tag === responseToTag(tx) ? tx : undefined
    return tx.request !== null && tag === tx.request.to.tag ? tx : undefined
  }
}

/** RFC 2543 matching key; the To tag is compared after the lookup (it differs for ACK). */
function key2543(msg: SipMessage, methodClass: string): string {
  return `${msg.uri}\n${msg.from.tag ?? ''}\n${msg.callId}\n${msg.cseq.seq}\n${msg.topVia.raw}\n${methodClass}`
}

/** To tag of the last response a server transaction sent (rare path: RFC 2543 ACK matching). */
function responseToTag(tx: ServerTransaction): string | undefined {
  if (tx.toTag !== null) return tx.toTag
  const r = tx.lastResponse
  if (r === null) return undefined
  try {
    return parseMessage(typeof r === 'string' ? Buffer.from(r, 'latin1') : Array.isArray(r) ? Buffer.concat(r) : r).to.tag
  } catch {
    return undefined
  }
}
