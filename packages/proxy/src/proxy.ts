// The stateful proxy core (RFC 3261 §16): one instance per worker, one TransactionLayer inside.
// docs/proxy.md walks through a request with pointers into this file; the §16 steps are quoted
// where the decision is made.
//
// Buffers: `receive` may be handed a view that is only valid during the call (ring memory). A
// request that creates a transaction is copied once, before parsing (its bytes are kept by the
// server transaction and spliced into the forwarded copies). ACKs and responses are handled on
// the view synchronously; whatever outlives the call (a response kept for retransmission, the
// best response held during failover) is copied at that point.
import {
  MessageEditor, SipParseError, buildResponse, formatUri, parseUri, randomTag, tryParseMessage, callIdHashOf,
  type NameAddr, type SipMessage, type SipUri,
} from '@sipedge/sip'
import {
  TransactionLayer, responseDestination,
  type ClientTransaction, type InviteClientTransaction, type InviteServerTransaction, type NonInviteServerTransaction, type ServerTransaction, type TimeoutReason,
} from '@sipedge/transaction'
import type { FrozenConfig } from '@sipedge/config'
import { LocalIdentity, defaultPort, type Listener } from './local.js'
import { BranchFactory, isLoop, loopHash, BRANCH_MARK } from './loop.js'
import { compileRoutes, type CompiledRule, type RouteTable } from './routing.js'
import { Dispatcher, DispatchDestination, type DispatchSet, type DestState } from './dispatcher/index.js'
import { Resolver, hopOf, type Hop } from './resolver.js'
import { UnconfiguredRegistrar, isLookupFailure, type LookupFailure, type Registrar } from './registrar-api.js'
import { H_ROUTE_ID } from './sipids.js'
import { DialogTracker, DialogTokens, tokenOf, TOKEN_PARAM, type DialogRecord } from './dialog/index.js'
import type { ControlMessage, Destination, ProxyLogger, Source, Target, TransportName } from './types.js'

export interface ProxyOptions {
  config: FrozenConfig
  workerIndex: number
  /** Hands bytes to the transport (stream destinations without connId: open or reuse a connection). */
  send(dest: Destination, data: Buffer | Buffer[]): void
  /** ms; the same clock as Source.recvTime. */
  now(): number
  log: ProxyLogger
  /** Upward control messages (e.g. dispatcher-state), when the host offers a channel. */
  postControl?(msg: ControlMessage): void
  /** The registrar/location service; default: register -> 501, lookup -> 404. */
  registrar?: Registrar
  /** Workers sharing probing (default config.workers; 0 counts as 1). */
  workers?: number
  /** Tests: drive the timer wheel with proxy.layer.tick() instead of a native interval. */
  manualTimers?: boolean
  /** Tests: no OPTIONS probing even when configured. */
  probing?: boolean
  resolver?: Resolver
  /** Optional metrics sink (the worker thread's shared-memory counters); absent: no metrics cost. */
  metrics?: ProxyMetrics
}

/**
 * What the proxy reports to a metrics sink beyond what the worker counts on the wire. One
 * guarded call per response and per probe; no allocation.
 */
export interface ProxyMetrics {
  /**
   * A response is being handed to a server transaction: `forwarded` (relayed from a backend) or
   * generated here. `prevStatus` is the transaction's last status before it (0: none), so the
   * sink can time the first provisional and the final. `recvTime`: Source.recvTime of the request.
   */
  serverResponse(method: string, recvTime: number, prevStatus: number, status: number, forwarded: boolean): void
  /** A dispatcher probe ended: result 0 ok, 1 unexpected code, 2 timeout. */
  probe(set: string, uri: string, result: number): void
}

/** Metrics of one proxy instance (monotonic). */
export class ProxyCounters {
  requestsIn = 0
  responsesIn = 0
  parseErrors = 0
  /** Requests answered by the proxy itself (OPTIONS to us, errors, rejects). */
  localReplies = 0
  optionsLocal = 0
  forwardedRequests = 0
  forwardedResponses = 0
  tooManyHops = 0
  loops = 0
  spirals = 0
  noRoute = 0
  rejected = 0
  failovers = 0
  timeouts = 0
  cancels = 0
  cancelNoMatch = 0
  acksForwarded = 0
  acksDropped = 0
  strayForwarded = 0
  strayDropped = 0
  drainRefused = 0
  dnsWaits = 0
  probesSent = 0
  probeFailures = 0
  /** In-dialog requests whose Record-Route dialog parameter failed its HMAC check (403 / ACK dropped). */
  dialogTokenInvalid = 0
  /** In-dialog requests sent to their dialog's destination (sticky), and of those routed by the RR parameter alone. */
  dialogSticky = 0
  dialogByToken = 0
  byeOnTimeout = 0
}

const RR_METHODS = new Set(['INVITE', 'SUBSCRIBE', 'REFER', 'NOTIFY'])
const ALLOW = 'INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, PRACK, REFER, NOTIFY, SUBSCRIBE, MESSAGE, REGISTER'
const GENERATED = null

/** What a forwarding attempt needs from a next hop (a dispatcher destination or a Target). */
interface HopLike {
  readonly uri: string
  readonly hop: Hop
  address: string | null
}

class NextHop implements HopLike {
  readonly uri: string
  readonly hop: Hop
  address: string | null
  readonly requestUri: string | undefined
  readonly flow: Destination | undefined
  readonly headers: ReadonlyArray<readonly [string, string]> | undefined
  /** §16.6 step 6/7: the next hop is a strict router (Route without lr). */
  readonly strict: boolean
  constructor(uri: string, hop: Hop, requestUri: string | undefined, flow: Destination | undefined, headers: ReadonlyArray<readonly [string, string]> | undefined, strict: boolean) {
    this.uri = uri
    this.hop = hop
    this.address = null
    this.requestUri = requestUri
    this.flow = flow
    this.headers = headers
    this.strict = strict
  }
}

/** Per-request state of a stateful forward (the "response context" of §16.7). Stable shape. */
class RequestContext {
  readonly server: ServerTransaction
  readonly req: SipMessage
  readonly source: Source
  readonly inListener: Listener | undefined
  /** Request-URI after strict-router repair (§16.4); what is forwarded unless a hop replaces it. */
  ruri: string
  ruriChanged: boolean
  /** Our own Route values at the top (removed when forwarding), and whether the last one goes (strict repair). */
  ourRoutes: number
  dropLastRoute: boolean
  hash: string
  recordRoute: boolean
  rule: CompiledRule | null
  set: DispatchSet | null
  hops: HopLike[]
  next: number
  current: ClientTransaction | null
  currentHop: HopLike | null
  /** Best final response so far (§16.7 step 6): a copied message, or GENERATED with bestStatus. */
  best: SipMessage | null
  bestStatus: number
  cancelled: boolean
  done: boolean
  /** The dialog this dialog-creating request opens (dispatched + record-routed), or null. */
  dialog: DialogRecord | null

  constructor(server: ServerTransaction, req: SipMessage, source: Source, inListener: Listener | undefined) {
    this.server = server
    this.req = req
    this.source = source
    this.inListener = inListener
    this.ruri = req.uri
    this.ruriChanged = false
    this.ourRoutes = 0
    this.dropLastRoute = false
    this.hash = ''
    this.recordRoute = false
    this.rule = null
    this.set = null
    this.hops = []
    this.next = 0
    this.current = null
    this.currentHop = null
    this.best = null
    this.bestStatus = 0
    this.cancelled = false
    this.done = false
    this.dialog = null
  }
}

class ProbeContext {
  readonly set: DispatchSet
  readonly dest: DispatchDestination
  readonly seq: number
  constructor(set: DispatchSet, dest: DispatchDestination, seq: number) { this.set = set; this.dest = dest; this.seq = seq }
}

function isRespPrefix(b: Uint8Array, i: number): boolean {
  return b[i] === 0x53 && b[i + 1] === 0x49 && b[i + 2] === 0x50 && b[i + 3] === 0x2f // "SIP/"
}
function isAckPrefix(b: Uint8Array, i: number): boolean {
  return b[i] === 0x41 && b[i + 1] === 0x43 && b[i + 2] === 0x4b && b[i + 3] === 0x20 // "ACK "
}

/** §16.7 step 6: 6xx wins; otherwise the lowest class; first seen wins within a class. */
export function betterFinal(candidate: number, current: number): boolean {
  if (current === 0) return true
  const c6 = candidate >= 600
  const b6 = current >= 600
  if (c6 !== b6) return c6
  return Math.floor(candidate / 100) < Math.floor(current / 100)
}

export class Proxy {
  readonly counters: ProxyCounters
  readonly layer: TransactionLayer
  readonly workerIndex: number
  config: FrozenConfig
  local: LocalIdentity
  routes: RouteTable
  dispatcher: Dispatcher
  /** Dialog table (docs/dispatcher.md "Dialog tracking") and the Record-Route token signer. */
  readonly dialogs: DialogTracker
  readonly tokens: DialogTokens
  private readonly testHooks: boolean
  readonly resolver: Resolver
  registrar: Registrar
  private readonly opts: ProxyOptions
  private readonly sendFn: (dest: Destination, data: Buffer | Buffer[]) => void
  private readonly branches: BranchFactory
  private readonly log: ProxyLogger
  private draining: boolean
  private inflight: number
  private localHeaders: Array<[string, string]>
  private optionsHeaders: Array<[string, string]>
  private readonly maxSize: number
  private readonly workers: number
  private readonly metrics: ProxyMetrics | undefined
  // Bound once: transaction callbacks carry the per-request state in tx.context, no closure per message.
  private readonly onClientResponse: (msg: SipMessage, tx: ClientTransaction) => void
  private readonly onClientTimeout: (tx: ClientTransaction, reason: TimeoutReason) => void
  private readonly onProbeResponse: (msg: SipMessage, tx: ClientTransaction) => void
  private readonly onProbeTimeout: (tx: ClientTransaction) => void
  private readonly sendProbe: (set: DispatchSet, d: DispatchDestination, seq: number) => void

  constructor(opts: ProxyOptions) {
    this.opts = opts
    this.counters = new ProxyCounters()
    this.workerIndex = opts.workerIndex
    this.config = opts.config
    this.log = opts.log
    this.sendFn = opts.send
    this.draining = false
    this.inflight = 0
    this.branches = new BranchFactory(opts.workerIndex)
    this.resolver = opts.resolver ?? new Resolver()
    this.registrar = opts.registrar ?? new UnconfiguredRegistrar()
    this.maxSize = opts.config.limits.max_message_size
    this.workers = Math.max(1, opts.workers ?? opts.config.workers)
    this.metrics = opts.metrics
    const t = opts.config.timers
    this.layer = new TransactionLayer({
      send: opts.send,
      clock: { now: opts.now },
      t1: t.t1, t2: t.t2, t4: t.t4, timerC: t.timer_c, timerB: t.timer_b, timerF: t.timer_f,
      onStrayResponse: (msg, source) => this.forwardStray(msg, source),
      manualTimers: opts.manualTimers ?? false,
    })
    this.onClientResponse = (msg, tx) => this.clientResponse(msg, tx)
    this.onClientTimeout = (tx, reason) => this.clientTimeout(tx, reason)
    this.onProbeResponse = (msg, tx) => {
      const p = tx.context as ProbeContext
      if (msg.status >= 200 && this.metrics !== undefined) this.metrics.probe(p.set.name, p.dest.uri, p.set.okCodes.has(msg.status) ? 0 : 1)
      if (msg.status >= 200) this.dispatcher.probeResult(p.set, p.dest, p.seq, msg.status)
    }
    this.onProbeTimeout = tx => {
      const p = tx.context as ProbeContext
      this.counters.probeFailures++
      if (this.metrics !== undefined) this.metrics.probe(p.set.name, p.dest.uri, 2)
      this.dispatcher.probeResult(p.set, p.dest, p.seq, 0)
    }
    this.sendProbe = (set, d, seq) => this.probe(set, d, seq)
    this.local = new LocalIdentity(opts.config)
    this.dispatcher = this.makeDispatcher(opts.config)
    this.tokens = new DialogTokens(opts.config.dialog.secret)
    this.testHooks = process.env['SIPEDGE_TEST_HOOKS'] === '1'
    this.dialogs = new DialogTracker({
      workerIndex: opts.workerIndex, timeoutMs: opts.config.dialog.timeout, now: opts.now, log: opts.log,
      onTimeout: rec => this.byeOnTimeout(rec), manualTimers: opts.manualTimers ?? false,
    })
    this.routes = compileRoutes(opts.config, this.dispatcher)
    this.localHeaders = []
    this.optionsHeaders = []
    this.setLocalHeaders(opts.config)
    if (opts.probing !== false) this.dispatcher.startProbing(this.sendProbe)
  }

  private makeDispatcher(config: FrozenConfig): Dispatcher {
    return new Dispatcher(config, {
      workerIndex: this.workerIndex,
      workers: this.workers,
      now: this.opts.now,
      resolver: this.resolver,
      onDestinationState: (set, uri, state) => this.onDestinationState(set, uri, state),
    })
  }

  private setLocalHeaders(config: FrozenConfig): void {
    const server = config.proxy.server_header
    this.localHeaders = server === null ? [] : [['Server', server]]
    this.optionsHeaders = [['Allow', ALLOW], ['Accept', 'application/sdp'], ['Supported', ''], ...this.localHeaders]
  }

  /**
   * Seam for dispatcher state changes seen by this worker (probe results, passive marks). Sent
   * upward as `{ type: 'dispatcher-state', set, uri, state }` when the host has a control channel;
   * a relay in the primary can hand it to the other workers (`onControl`). Passive marks are
   * local only (every worker sees its own timeouts).
   */
  onDestinationState(set: string, uri: string, state: DestState): void {
    if (this.log !== undefined) this.log.info('dispatcher destination state', { set, uri, state, worker: this.workerIndex })
    const d = this.dispatcher?.get(set)?.destinations.find(x => x.uri === uri)
    // Only probe verdicts travel: a passive suspicion is this worker's own observation.
    if (d !== undefined && d.probeState === state && this.dispatcher.isProber(d)) {
      this.opts.postControl?.({ type: 'dispatcher-state', set, uri, state, workerIndex: this.workerIndex })
    }
  }

  // ================================================================================ entry

  /**
   * One SIP message from the network. `buf` may be a transient view (ring memory): it is copied
   * here when a transaction keeps it. Never throws for bad input.
   */
  receive(buf: Buffer, source: Source): void {
    let i = 0
    while (i < buf.length && (buf[i] === 13 || buf[i] === 10)) i++
    const transient = isRespPrefix(buf, i) || isAckPrefix(buf, i)
    const data = transient ? buf : Buffer.from(buf) // copy: the transaction keeps these bytes
    const msg = tryParseMessage(data, { maxSize: this.maxSize })
    if (msg instanceof SipParseError) {
      this.counters.parseErrors++
      return
    }
    try {
      if (msg.isRequest) this.request(msg, source)
      else this.response(msg, source)
    } catch (err) {
      if (!(err instanceof SipParseError)) throw err
      // A header needed for a decision did not decode: answer when we can, otherwise drop.
      this.counters.parseErrors++
      if (msg.isRequest && msg.method !== 'ACK') this.statelessReply(msg, source, err.status, err.reason)
    }
  }

  private response(msg: SipMessage, source: Source): void {
    this.counters.responsesIn++
    msg.topVia // decodes or throws: a response without a usable Via is dropped
    this.layer.receiveResponse(msg, source)
  }

  private request(msg: SipMessage, source: Source): void {
    this.counters.requestsIn++
    try {
      msg.validate()
    } catch (err) {
      if (!(err instanceof SipParseError)) throw err
      this.counters.parseErrors++
      if (msg.method !== 'ACK') this.statelessReply(msg, source, err.status, err.reason)
      return
    }
    if (msg.method === 'ACK') {
      const r = this.layer.receiveRequest(msg, source)
      if (r.kind === 'ack-2xx') this.forwardAck(msg, source)
      return
    }
    if (this.draining && this.layer.findServerTransaction(msg) === undefined) {
      this.counters.drainRefused++
      this.statelessReply(msg, source, 503, 'Service Unavailable', [['Retry-After', '5']])
      return
    }
    const r = this.layer.receiveRequest(msg, source)
    switch (r.kind) {
      case 'new': this.newRequest(r.tx, msg, source); break
      case 'cancel': this.cancel(r.tx, r.invite); break
      default: break // retransmission: the server transaction resent its last response
    }
  }

  // ================================================================================ requests

  /** §16.3 request validation, §16.4 route information preprocessing, §16.5 target determination. */
  private newRequest(tx: ServerTransaction, msg: SipMessage, source: Source): void {
    const ctx = new RequestContext(tx, msg, source, this.local.listenerOf(source.socketId, source.transport))
    tx.context = ctx
    this.inflight++
    let ruri = msg.requestUri
    const method = msg.method

    // §16.4: "If the Request-URI contains a value this proxy previously placed into a
    // Record-Route header field, the proxy MUST replace the Request-URI in the request with the
    // last value from the Route header field, and remove that value from the Route header field."
    // (the previous hop is a strict router).
    const hasRoute = msg.indexOf(H_ROUTE_ID) >= 0
    const routes: NameAddr[] = hasRoute ? msg.routes : EMPTY_ROUTES
    let nRoutes = routes.length
    if (nRoutes > 0 && ruri.user === undefined && this.isOurUri(ruri)) {
      const last = routes[nRoutes - 1]!
      ctx.ruri = last.uri
      ctx.ruriChanged = true
      ctx.dropLastRoute = true
      nRoutes--
      ruri = parseUri(last.uri)
    }
    // §16.4: "If the first value in the Route header field indicates this proxy, the proxy MUST
    // remove that value from the request." Two of ours in a row: our double Record-Route (RFC 5658).
    let ours = 0
    while (ours < nRoutes && this.isOurUri(parseRouteUri(routes[ours]!))) ours++
    ctx.ourRoutes = ours
    const remaining = nRoutes - ours

    // §16.3 step 3: Max-Forwards. 0: answer 483, except OPTIONS, which we answer ourselves (§11).
    const mf = msg.maxForwards
    const forUs = remaining === 0 && (ruri.user === undefined || ruri.user === '') && this.local.isLocalHost(ruri.host)
    if (method === 'OPTIONS' && (forUs || mf === 0)) {
      this.counters.optionsLocal++
      this.reply(ctx, 200, 'OK', this.optionsHeaders)
      return
    }
    if (mf === 0) {
      this.counters.tooManyHops++
      this.reply(ctx, 483, 'Too Many Hops')
      return
    }

    // §16.3 step 4: loop detection (see loop.ts for the hash).
    ctx.hash = loopHash(msg, ctx.ruri, ours)
    if (isLoop(msg, ctx.hash, this.local)) {
      this.counters.loops++
      this.reply(ctx, 482, 'Loop Detected')
      return
    }

    // §16.3 step 5: "If the request contains a Proxy-Require header field with one or more
    // option-tags this element does not understand, the element MUST return a 420".
    const pr = msg.header('proxy-require')
    if (pr !== undefined && pr.trim() !== '') {
      this.reply(ctx, 420, 'Bad Extension', [['Unsupported', pr], ...this.localHeaders])
      return
    }

    // In-dialog requests that come through our Record-Route follow their route set (§16.4, §16.5).
    const inDialog = msg.to.tag !== undefined
    if (inDialog && (ours > 0 || ctx.dropLastRoute)) {
      // Sticky dialogs (docs/dispatcher.md): requests from the caller go to the dialog's
      // destination (table, else the signed Record-Route parameter); the other direction follows
      // the Request-URI as usual. A parameter that fails its HMAC: 403, never routed.
      const sd = this.dialogOf(msg, routes, ours)
      if (sd === FORGED) {
        this.counters.dialogTokenInvalid++
        this.reply(ctx, 403, 'Invalid Dialog Route')
        return
      }
      if (sd !== null) {
        const fromCaller = sd.fromTag === msg.from.tag
        this.dialogs.request(sd, msg, fromCaller)
        if (fromCaller) {
          this.counters.dialogSticky++
          ctx.hops.push(this.stickyHop(sd))
          this.forward(ctx)
          return
        }
      }
      if (remaining > 0) {
        ctx.hops.push(this.routeHop(routes[ours]!))
      } else if (ruri.user === undefined && this.isOurUri(ruri)) {
        // Addressed to the proxy itself inside a dialog: we are no UA (§16.5: the target is us).
        this.reply(ctx, 481, 'Call/Transaction Does Not Exist')
        return
      } else {
        ctx.hops.push(this.uriHop(ctx.ruri, ruri))
      }
      this.forward(ctx)
      return
    }
    if (inDialog && remaining === 0 && ruri.user === undefined && this.isOurUri(ruri)) {
      this.reply(ctx, 481, 'Call/Transaction Does Not Exist')
      return
    }

    // Digest authentication of requests from phones (auth.methods; REGISTER is the registrar's
    // own 401 flow). The registrar decides who must authenticate: application servers are trusted.
    if (method !== 'REGISTER' && this.registrar.authorize !== undefined) {
      const a = this.registrar.authorize(msg, source)
      if (a instanceof Promise) {
        a.then(v => {
          if (ctx.done) return
          if (v === null) this.routeNew(ctx, tx, msg, ruri, source, method, inDialog)
          else this.reply(ctx, v.status, v.reason, [...v.headers, ...this.localHeaders])
        }, () => { if (!ctx.done) this.reply(ctx, 500, 'Authentication Unavailable') })
        return
      }
      if (a !== null) { this.reply(ctx, a.status, a.reason, [...a.headers, ...this.localHeaders]); return }
    }
    this.routeNew(ctx, tx, msg, ruri, source, method, inDialog)
  }

  /** Rule matching and the rule's action for a request that is not following our Route set. */
  private routeNew(ctx: RequestContext, tx: ServerTransaction, msg: SipMessage, ruri: SipUri, source: Source, method: string, inDialog: boolean): void {
    // Out of dialog (or in-dialog without our Route: not a dialog we record-routed): a rule must
    // match. Never an open relay: foreign pre-loaded Routes alone do not get a request anywhere;
    // the rule's target wins and they stay in the message for that next hop.
    const rule = this.routes.match(msg, ruri, source)
    if (rule === null) {
      this.counters.noRoute++
      this.reply(ctx, 403, 'No Route For Request')
      return
    }
    ctx.rule = rule
    ctx.recordRoute = this.config.proxy.record_route && RR_METHODS.has(method) && !inDialog
    const a = rule.action
    switch (a.type) {
      case 'reject':
        this.counters.rejected++
        this.reply(ctx, a.code, a.reason)
        return
      case 'register':
        ctx.done = true
        this.inflight--
        this.registrar.handleRegister(msg, tx, source)
        return
      case 'lookup': {
        const r = this.registrar.lookup(msg)
        if (r instanceof Promise) {
          r.then(v => this.lookedUp(ctx, v), () => this.lookedUp(ctx, LOOKUP_ERROR))
        } else {
          this.lookedUp(ctx, r)
        }
        return
      }
      case 'dispatch': {
        const set = this.dispatcher.get(a.set)
        if (set === undefined) { this.reply(ctx, 500, 'Unknown Dispatcher Set'); return }
        ctx.set = set
        const plan = this.dispatcher.plan(set, msg)
        if (plan.length === 0) {
          this.reply(ctx, 503, 'No Destination Available', [['Retry-After', '5'], ...this.localHeaders])
          return
        }
        for (let i = 0; i < plan.length; i++) ctx.hops.push(plan[i]!)
        this.forward(ctx)
        return
      }
      case 'forward':
        ctx.hops.push(this.uriHop(a.uri, parseUri(a.uri)))
        this.forward(ctx)
        return
    }
  }

  private lookedUp(ctx: RequestContext, r: Target[] | LookupFailure): void {
    if (ctx.done) return
    if (ctx.cancelled) { this.reply(ctx, 487, 'Request Terminated'); return }
    if (isLookupFailure(r)) { this.reply(ctx, r.status, r.reason); return }
    if (r.length === 0) { this.reply(ctx, 480, 'Temporarily Unavailable'); return }
    for (const t of r) {
      let hop: Hop
      try {
        hop = t.flow !== undefined ? { transport: t.flow.transport, host: t.flow.address, port: t.flow.port } : hopOf(parseUri(t.uri))
      } catch {
        continue
      }
      ctx.hops.push(new NextHop(t.uri, hop, t.requestUri, t.flow, t.headers, false))
    }
    this.forward(ctx)
  }

  private routeHop(r: NameAddr): NextHop {
    const u = parseRouteUri(r)
    // §16.6 step 6: a Route without lr names a strict router (the URI becomes the Request-URI).
    return new NextHop(r.uri, hopOf(u), undefined, undefined, undefined, !u.params.has('lr'))
  }

  private uriHop(uri: string, u: SipUri): NextHop {
    return new NextHop(uri, hopOf(u), undefined, undefined, undefined, false)
  }

  /** Our listener (host and port) or a bare local domain: a Route/Request-URI naming this proxy. */
  private isOurUri(u: SipUri): boolean {
    const tp = u.params.get('transport')
    return this.local.isLocalHostPort(u.host, u.port, typeof tp === 'string' ? tp.toLowerCase() : 'udp', u.scheme)
  }

  // ================================================================================ forwarding

  /** §16.6: try the hops in order (sequential failover); when none is left, answer the best final. */
  private forward(ctx: RequestContext): void {
    if (ctx.cancelled) { this.finishCancelled(ctx); return }
    while (ctx.next < ctx.hops.length) {
      const h = ctx.hops[ctx.next++]!
      let address = h.address
      if (address === null) {
        const a = this.resolver.peek(h.hop.host)
        if (a === undefined) {
          // The one await of the request path: an unknown host name (cached from then on).
          this.counters.dnsWaits++
          ctx.next--
          this.resolver.resolve(h.hop.host).then(
            r => { if (r === null) { ctx.next++; this.keepGenerated(ctx, 503) } else if (!(h instanceof DispatchDestination)) h.address = r; this.forward(ctx) },
            () => { ctx.next++; this.keepGenerated(ctx, 503); this.forward(ctx) },
          )
          return
        }
        if (a === null) { this.keepGenerated(ctx, 503); continue }
        address = a
      }
      const flow = h instanceof NextHop ? h.flow : undefined
      const listener = this.local.listenerFor(h.hop.transport)
      if (listener === undefined && flow === undefined) { this.keepGenerated(ctx, 503); continue }
      this.sendAttempt(ctx, h, listener ?? this.local.listenerFor(flow!.transport)!, address, flow)
      return
    }
    this.sendBest(ctx)
  }

  private sendAttempt(ctx: RequestContext, h: HopLike, out: Listener, address: string, flow: Destination | undefined): void {
    const req = ctx.req
    const ed = new MessageEditor(req)
    const src = ctx.source
    // §18.2.1 / RFC 3581 §4: received (and rport when asked for) on the Via we got.
    const via = req.topVia
    if (via.rport !== undefined) ed.setTopViaParams({ received: src.address, rport: src.port })
    else if (via.host !== src.address) ed.setTopViaParams({ received: src.address })

    // Request-URI and Route set (§16.4 and §16.6 steps 2, 6, 7).
    let ruri = ctx.ruri
    let changed = ctx.ruriChanged
    const nh = h instanceof NextHop ? h : null
    if (nh !== null && nh.requestUri !== undefined) { ruri = nh.requestUri; changed = true }
    const rw = ctx.rule?.rewriteHost
    if (rw !== null && rw !== undefined) {
      const u = parseUri(ruri)
      u.host = rw.host
      if (rw.port !== null) u.port = rw.port
      ruri = formatUri(u)
      changed = true
    }
    const skip = ctx.ourRoutes
    if (nh !== null && nh.strict) {
      // Strict next hop: its URI becomes the Request-URI, the Request-URI goes to the end of Route.
      const all = req.routes
      const keep: string[] = []
      for (let i = skip + 1; i < all.length - (ctx.dropLastRoute ? 1 : 0); i++) keep.push(all[i]!.raw)
      keep.push('<' + ruri + '>')
      ed.replaceHeader('Route', keep.join(', '))
      ruri = nh.uri
      changed = true
    } else if (skip > 0 || ctx.dropLastRoute) {
      if (skip === 1 && !ctx.dropLastRoute) {
        ed.removeFirstRoute()
      } else {
        const all = req.routes
        const end = all.length - (ctx.dropLastRoute ? 1 : 0)
        if (end <= skip) ed.removeHeader('Route')
        else {
          const keep: string[] = []
          for (let i = skip; i < end; i++) keep.push(all[i]!.raw)
          ed.replaceHeader('Route', keep.join(', '))
        }
      }
    }
    if (changed) ed.setRequestUri(ruri)

    // §16.6 step 3: Max-Forwards.
    const mf = req.maxForwards
    ed.setMaxForwards(mf < 0 ? this.config.proxy.max_forwards : mf - 1)

    // §16.6 step 4: Record-Route; RFC 5658: two entries when the request changes listener
    // (transport or interface), the lower one facing the side it came from.
    if (ctx.recordRoute) {
      const inL = ctx.inListener
      if (ctx.set !== null && h instanceof DispatchDestination) {
        // Sticky dialogs: our Record-Route carries the destination, signed (dialog/token.ts).
        const token = this.tokens.sign(ctx.set.name, h.uri, req.callId, req.from.tag ?? '')
        const m = req.method
        if (this.config.dialog.enabled && (m === 'INVITE' || m === 'SUBSCRIBE' || m === 'REFER')) {
          if (ctx.dialog === null) ctx.dialog = this.dialogs.begin(m === 'INVITE' ? 'invite' : 'subscribe', req, ctx.set.name, h, token, ctx.source)
          else this.dialogs.retarget(ctx.dialog, h, token)
        }
        const p = ';' + TOKEN_PARAM + '=' + token + '>'
        if (inL !== undefined && inL !== out) ed.prependRecordRoute(inL.recordRoute.slice(0, -1) + p)
        ed.prependRecordRoute(out.recordRoute.slice(0, -1) + p)
      } else {
        if (inL !== undefined && inL !== out) ed.prependRecordRoute(inL.recordRoute)
        ed.prependRecordRoute(out.recordRoute)
      }
    }

    // §16.6 step 8: our Via, its branch carrying the loop hash.
    const branch = this.branches.next(ctx.hash)
    ed.prependVia(out.viaPrefix + branch)
    const add = ctx.rule?.addHeaders
    if (add !== undefined) for (let i = 0; i < add.length; i++) ed.addHeader(add[i]![0], add[i]![1])
    if (nh !== null && nh.headers !== undefined) for (const [n, v] of nh.headers) ed.addHeader(n, v)
    const transport: TransportName = flow?.transport ?? h.hop.transport
    if (transport !== 'udp') ed.ensureContentLength()

    const dest: Destination = flow ?? { transport, address, port: h.hop.port, socketId: out.socketId }
    ctx.currentHop = h
    if (h instanceof DispatchDestination) h.sent++
    this.counters.forwardedRequests++
    // §16.6 step 10 / 11: a new client transaction (Timer C for INVITE is the layer's).
    ctx.current = this.layer.createClient({
      request: ed.toBuffers(),
      method: req.method,
      branch,
      dest,
      onResponse: this.onClientResponse,
      onTimeout: this.onClientTimeout,
      context: ctx,
    })
  }

  // ================================================================================ responses

  /** §16.7: a response on one of our client transactions. */
  private clientResponse(resp: SipMessage, tx: ClientTransaction): void {
    const ctx = tx.context as RequestContext
    const status = resp.status
    if (status >= 200 && status < 300) {
      // §16.7 step 5 / RFC 6026: every 2xx is forwarded at once, retransmissions and 2xx of an
      // earlier attempt included (a dialog the UAC must ACK).
      if (ctx.currentHop instanceof DispatchDestination && tx === ctx.current) this.dispatcher.markAlive(ctx.currentHop)
      if (ctx.dialog !== null) this.dialogs.confirm(ctx.dialog, resp)
      this.forwardResponse(ctx, resp)
      this.settle(ctx)
      return
    }
    if (tx !== ctx.current || ctx.done) return // a late non-2xx of an abandoned attempt
    const hop = ctx.currentHop
    if (status < 200) {
      // §16.7 step 5: provisional responses other than 100 are forwarded immediately.
      if (hop instanceof DispatchDestination) this.dispatcher.markAlive(hop)
      if (ctx.dialog !== null && status > 100) this.dialogs.provisional(ctx.dialog, resp)
      if (status > 100) this.forwardResponse(ctx, resp)
      return
    }
    // 3xx-6xx
    if (hop instanceof DispatchDestination) {
      if (status === 503) this.dispatcher.markFailed(hop)
      else this.dispatcher.markAlive(hop)
    }
    if (betterFinal(status, ctx.bestStatus)) {
      // Kept past this call: copy (the message may sit in ring memory).
      ctx.best = copyMessage(resp)
      ctx.bestStatus = status
    }
    if (status >= 600) { this.sendBest(ctx); return } // §16.7 step 5: 6xx ends the search
    if (!ctx.cancelled && this.failoverOnStatus(ctx, status) && ctx.next < ctx.hops.length) {
      this.counters.failovers++
      this.forward(ctx)
      return
    }
    this.sendBest(ctx)
  }

  private failoverOnStatus(ctx: RequestContext, status: number): boolean {
    if (ctx.set !== null) return ctx.set.failoverCodes.has(status)
    return status >= 500 || status === 408 // lookup/forward targets: next contact on server errors
  }

  private clientTimeout(tx: ClientTransaction, reason: TimeoutReason): void {
    const ctx = tx.context as RequestContext
    if (tx !== ctx.current || ctx.done) return
    this.counters.timeouts++
    const hop = ctx.currentHop
    if (reason === 'cancel-timeout' || ctx.cancelled) { this.finishCancelled(ctx); return }
    if (hop instanceof DispatchDestination) this.dispatcher.markFailed(hop)
    // §16.8: Timer C without provisional: "behave as if the transaction received a 408".
    this.keepGenerated(ctx, 408)
    const failover = ctx.set !== null ? ctx.set.failoverOnTimeout : true
    if (failover && ctx.next < ctx.hops.length) {
      this.counters.failovers++
      this.forward(ctx)
      return
    }
    this.sendBest(ctx)
  }

  private keepGenerated(ctx: RequestContext, status: number): void {
    if (betterFinal(status, ctx.bestStatus)) { ctx.best = GENERATED; ctx.bestStatus = status }
  }

  /** §16.7 step 6/7: forward the best final, 503 turned into 500, generated ones built here. */
  private sendBest(ctx: RequestContext): void {
    if (ctx.done) return
    if (ctx.cancelled && ctx.bestStatus === 0) { this.finishCancelled(ctx); return }
    const best = ctx.best
    const status = ctx.bestStatus
    if (best === null || status === 503) {
      // §16.7 step 6: "If the selected response is 503 (Service Unavailable), the proxy MUST
      // generate a 500 (Server Internal Error)"; our own 408/503 keep their code.
      const code = status === 0 ? 500 : best !== null ? 500 : status
      this.reply(ctx, code, code === 408 ? 'Request Timeout' : code === 503 ? 'Service Unavailable' : 'Server Internal Error')
      return
    }
    this.forwardResponse(ctx, best)
    this.settle(ctx)
  }

  private finishCancelled(ctx: RequestContext): void {
    if (ctx.done) return
    this.reply(ctx, 487, 'Request Terminated')
  }

  /** §16.7 step 9: remove our Via, hand the response to the server transaction. */
  private forwardResponse(ctx: RequestContext, resp: SipMessage): void {
    const ed = new MessageEditor(resp)
    ed.removeTopVia()
    if (ctx.server.reliable) ed.ensureContentLength()
    this.counters.forwardedResponses++
    if (this.metrics !== undefined) this.metrics.serverResponse(ctx.req.method, ctx.source.recvTime, ctx.server.lastStatus, resp.status, true)
    // toBuffer copies: the server transaction keeps the bytes for retransmission.
    ctx.server.sendResponse(ed.toBuffer(), resp.status)
  }

  private settle(ctx: RequestContext): void {
    // A dialog-creating request that ended without a 2xx opened no dialog.
    if (ctx.dialog !== null && ctx.dialog.state === 'early') this.dialogs.fail(ctx.dialog)
    if (!ctx.done) { ctx.done = true; this.inflight-- }
  }

  /** A local final (or provisional) response through the server transaction; finals settle the request. */
  private reply(ctx: RequestContext, status: number, reason?: string, headers?: Array<[string, string]>): void {
    this.counters.localReplies++
    if (this.metrics !== undefined) this.metrics.serverResponse(ctx.req.method, ctx.source.recvTime, ctx.server.lastStatus, status, false)
    const h = headers ?? this.localHeaders
    ctx.server.respond(status, reason, h.length > 0 ? { headers: h } : undefined)
    if (status >= 200) this.settle(ctx)
  }

  /** No transaction (bad request, draining): build and send once. */
  private statelessReply(msg: SipMessage, source: Source, status: number, reason: string, extra?: Array<[string, string]>): void {
    let bytes: Buffer
    let dest: Destination
    try {
      bytes = buildResponse(msg, status, reason, { headers: extra !== undefined ? [...extra, ...this.localHeaders] : this.localHeaders, source })
      dest = responseDestination(msg, source, this.layer.isReliable(source.transport))
    } catch {
      return
    }
    this.counters.localReplies++
    this.sendFn(dest, bytes)
  }

  // ================================================================================ CANCEL

  /** §16.10: answer the CANCEL hop by hop, then cancel the pending client transaction. */
  private cancel(tx: NonInviteServerTransaction, invite: InviteServerTransaction | undefined): void {
    this.counters.cancels++
    if (invite === undefined) {
      // "If a response context is not found, the element does not have any knowledge of the
      // request to apply the CANCEL to" — we forward everything statefully, so: 481.
      this.counters.cancelNoMatch++
      tx.respond(481, 'Call/Transaction Does Not Exist', this.localHeaders.length > 0 ? { headers: this.localHeaders } : undefined)
      return
    }
    tx.respond(200, 'OK', this.localHeaders.length > 0 ? { headers: this.localHeaders } : undefined)
    const ctx = invite.context as RequestContext | undefined
    if (ctx === undefined || ctx.done) return
    ctx.cancelled = true
    const c = ctx.current
    // The layer sends the CANCEL once a provisional arrived (§9.1); the 487 comes back as a final.
    if (c !== null && c.kind === 'ict') (c as InviteClientTransaction).cancel()
    else if (c === null && ctx.hops.length === 0) { /* lookup / DNS in flight: answered 487 when it ends */ }
  }

  // ================================================================================ stateless paths

  /** ACK for a 2xx (§16.6 / §17.2.3 / RFC 6026 §7.1): forwarded statelessly along its Route set. */
  private forwardAck(msg: SipMessage, source: Source): void {
    const mf = msg.maxForwards
    if (mf === 0) { this.counters.acksDropped++; return }
    const routes = msg.indexOf(H_ROUTE_ID) >= 0 ? msg.routes : EMPTY_ROUTES
    let ours = 0
    while (ours < routes.length && this.isOurUri(parseRouteUri(routes[ours]!))) ours++
    // Only ACKs of dialogs we record-routed (our Route on top); anything else is not ours to relay.
    if (ours === 0) { this.counters.acksDropped++; return }
    const sd = this.dialogOf(msg, routes, ours)
    if (sd === FORGED) { this.counters.dialogTokenInvalid++; this.counters.acksDropped++; return }
    let sticky: HopLike | null = null
    if (sd !== null && sd.fromTag === msg.from.tag) {
      this.dialogs.request(sd, msg, true)
      sticky = this.stickyHop(sd)
      this.counters.dialogSticky++
    }
    let hop: Hop
    let strict = false
    let nextUri = ''
    if (ours < routes.length) {
      const u = parseRouteUri(routes[ours]!)
      hop = hopOf(u)
      strict = !u.params.has('lr')
      nextUri = routes[ours]!.uri
    } else {
      const u = msg.requestUri
      if (u.user === undefined && this.isOurUri(u)) { this.counters.acksDropped++; return }
      hop = hopOf(u)
    }
    if (sticky !== null) hop = sticky.hop
    const address = this.resolver.peek(hop.host)
    if (address === undefined || address === null) {
      // Not resolved yet: warm the cache; the UAC retransmits its ACK with the next 2xx.
      if (address === undefined) void this.resolver.resolve(hop.host)
      this.counters.acksDropped++
      return
    }
    const out = this.local.listenerFor(hop.transport)
    if (out === undefined) { this.counters.acksDropped++; return }
    const ed = new MessageEditor(msg)
    const via = msg.topVia
    if (via.rport !== undefined) ed.setTopViaParams({ received: source.address, rport: source.port })
    else if (via.host !== source.address) ed.setTopViaParams({ received: source.address })
    if (strict) {
      const keep: string[] = []
      for (let i = ours + 1; i < routes.length; i++) keep.push(routes[i]!.raw)
      keep.push('<' + msg.uri + '>')
      ed.replaceHeader('Route', keep.join(', '))
      ed.setRequestUri(nextUri)
    } else if (ours === 1) {
      ed.removeFirstRoute()
    } else if (ours === routes.length) {
      ed.removeHeader('Route')
    } else {
      const keep: string[] = []
      for (let i = ours; i < routes.length; i++) keep.push(routes[i]!.raw)
      ed.replaceHeader('Route', keep.join(', '))
    }
    ed.setMaxForwards(mf < 0 ? this.config.proxy.max_forwards : mf - 1)
    // Deterministic per UAC branch, so a retransmitted ACK carries the same branch as the first.
    const b = via.branch ?? msg.callId
    ed.prependVia(out.viaPrefix + BRANCH_MARK + '00000000.a' + (callIdHashOf(b) >>> 0).toString(36) + this.workerIndex.toString(36))
    if (hop.transport !== 'udp') ed.ensureContentLength()
    this.counters.acksForwarded++
    this.sendFn({ transport: hop.transport, address, port: hop.port, socketId: out.socketId }, ed.toBuffers())
  }

  /**
   * §16.11 / §16.7: a response matching no client transaction (a 2xx retransmission after Timer M,
   * a late response) is forwarded statelessly by Via — only when the top Via is ours and the
   * next one is sane (a parseable sent-by that does not point back at us).
   */
  private forwardStray(msg: SipMessage, _source: Destination): void {
    let vias
    try { vias = msg.vias } catch { this.counters.strayDropped++; return }
    if (vias.length < 2) { this.counters.strayDropped++; return }
    const top = vias[0]!
    if (top.branch === undefined || !top.branch.startsWith(BRANCH_MARK) || !this.local.isLocalHostPort(top.host, top.port, top.transport.toLowerCase())) {
      this.counters.strayDropped++
      return
    }
    const next = vias[1]!
    const transport = next.transport.toLowerCase() as TransportName
    const out = this.local.listenerFor(transport)
    const host = next.received ?? next.host
    const address = this.resolver.peek(host.startsWith('[') ? host.slice(1, -1) : host)
    const port = typeof next.rport === 'number' ? next.rport : next.port ?? defaultPort(transport)
    if (out === undefined || address === undefined || address === null || !(port > 0 && port < 65536) || this.local.isLocalHostPort(address, port, transport)) {
      this.counters.strayDropped++
      return
    }
    const ed = new MessageEditor(msg)
    ed.removeTopVia()
    if (transport !== 'udp') ed.ensureContentLength()
    this.counters.strayForwarded++
    this.sendFn({ transport, address, port, socketId: out.socketId }, ed.toBuffers())
  }

  // ================================================================================ probing

  private probe(set: DispatchSet, d: DispatchDestination, seq: number): void {
    const out = this.local.listenerFor(d.hop.transport)
    if (d.address === null || out === undefined) { this.dispatcher.probeResult(set, d, seq, 0); return }
    const method = set.probe.method
    const branch = this.branches.next('00000000')
    const text = method + ' ' + d.uri + ' SIP/2.0\r\n' +
      'Via: ' + out.viaPrefix + branch + '\r\n' +
      'Max-Forwards: 70\r\n' +
      'From: <sip:sipedge@' + out.host + '>;tag=' + randomTag() + '\r\n' +
      'To: <' + d.uri + '>\r\n' +
      'Call-ID: ' + this.probeCallId() + '\r\n' +
      'CSeq: 1 ' + method + '\r\n' +
      'User-Agent: ' + this.config.proxy.user_agent + '\r\n' +
      'Content-Length: 0\r\n\r\n'
    this.counters.probesSent++
    this.layer.createClient({
      request: Buffer.from(text, 'latin1'),
      method,
      branch,
      dest: { transport: d.hop.transport, address: d.address, port: d.hop.port, socketId: out.socketId },
      onResponse: this.onProbeResponse,
      onTimeout: this.onProbeTimeout,
      context: new ProbeContext(set, d, seq),
    })
  }

  /** A Call-ID that the primary shards to THIS worker, so the probe's response comes back here. */
  private probeCallId(): string {
    const n = this.workers
    for (let i = 0; i < 64 * n; i++) {
      const id = 'probe-' + randomTag() + '@sipedge'
      if (callIdHashOf(id) % n === this.workerIndex % n) return id
    }
    return 'probe-' + randomTag() + '@sipedge'
  }

  // ================================================================================ control

  onControl(msg: ControlMessage): void {
    if (msg.type === 'config') {
      this.applyConfig((msg as { config: unknown }).config as FrozenConfig)
    } else if (msg.type === 'dispatcher-state') {
      const m = msg as { set: string; uri: string; state: DestState; workerIndex?: number }
      if (m.workerIndex !== this.workerIndex) this.dispatcher.applyRemoteState(m.set, m.uri, m.state)
    } else if (msg.type === 'dispatcher-admin') {
      // Operator drain / enable / disable (admin API -> every worker); until the next reload.
      const m = msg as { set?: unknown; uri?: unknown; action?: unknown }
      const action = m.action
      if (typeof m.set === 'string' && typeof m.uri === 'string' && (action === 'drain' || action === 'enable' || action === 'disable')) {
        const n = this.dispatcher.admin(m.set, m.uri, action)
        this.log.info('dispatcher admin action', { worker: this.workerIndex, set: m.set, uri: m.uri, action, changed: n })
      }
    } else if (msg.type === 'dialog-admin') {
      // Test hook only (SIPEDGE_TEST_HOOKS=1): a forced loss of the dialog table.
      if (this.testHooks && (msg as { action?: unknown }).action === 'clear') {
        const n = this.dialogs.clear()
        this.log.warn('dialog table cleared (test hook)', { worker: this.workerIndex, dialogs: n })
      }
    }
  }

  /**
   * Admin/inspection queries (docs/contracts.md "Query results"): `dispatcher`, `dialogs`,
   * `dialog` ({ callId }). Synchronous plain data; undefined for a `what` the proxy does not know.
   */
  query(what: string, args: unknown): unknown {
    switch (what) {
      case 'dispatcher': return this.dispatcher.snapshot()
      case 'dialogs': return this.dialogs.counts()
      case 'dialog': {
        const callId = (args as { callId?: unknown } | null | undefined)?.callId
        if (typeof callId !== 'string' || callId === '') {
          throw Object.assign(new Error('query dialog needs args.callId (a string)'), { code: 'ERR_QUERY_BAD_ARGS' })
        }
        const all = this.dialogs.byCallId(callId)
        if (all.length === 0) return null
        return { ...all[0]!.toJSON(), workerIndex: this.workerIndex, others: all.slice(1).map(r => r.toJSON()) }
      }
      default: return undefined
    }
  }

  // ================================================================================ dialogs

  /**
   * The dialog of an in-dialog request that came through our Route: the table entry, else one
   * rebuilt from our signed Record-Route parameter; null when neither exists; FORGED when a
   * parameter is present and fails its check (also when the table knows the dialog).
   */
  private dialogOf(msg: SipMessage, routes: NameAddr[], ours: number): DialogRecord | null | typeof FORGED {
    let token: string | null = null
    for (let i = 0; i < ours && token === null; i++) token = tokenOf(routes[i]!.uri)
    const callId = msg.callId
    const ft = msg.from.tag
    const tt = msg.to.tag
    const rec = this.dialogs.find(callId, ft, tt)
    if (rec !== undefined && (token === null || token === rec.token)) return rec
    if (token === null) return null
    const claim = this.tokens.verify(token, callId, ft, tt)
    if (claim === null) return FORGED
    if (rec !== undefined) return rec
    this.counters.dialogByToken++
    const m = msg.method
    const insert = this.config.dialog.enabled && m !== 'BYE' && m !== 'ACK' && m !== 'CANCEL'
    const other = claim.ftag === ft ? tt ?? '' : ft ?? ''
    return this.dialogs.recover(callId, claim.ftag, other, claim.set, claim.uri, this.dispatcher.find(claim.set, claim.uri) ?? null, token, insert)
  }

  /** Where requests from the caller of `rec` go: its destination (also when no longer configured). */
  private stickyHop(rec: DialogRecord): HopLike {
    const d = rec.dest ?? this.dispatcher.find(rec.setName, rec.destUri)
    if (d !== undefined && d !== null) return d
    return this.uriHop(rec.destUri, parseUri(rec.destUri))
  }

  /** dialog.send_bye_on_timeout: BYE to both sides of a confirmed INVITE dialog that timed out. */
  private byeOnTimeout(rec: DialogRecord): void {
    if (!this.config.dialog.send_bye_on_timeout || rec.kind !== 'invite' || rec.state !== 'confirmed' || rec.recovered) return
    const h = this.stickyHop(rec)
    const address = h.address ?? this.resolver.peek(h.hop.host) ?? null
    const outB = this.local.listenerFor(h.hop.transport)
    if (rec.calleeContact !== '' && rec.calleeTo !== '' && address !== null && outB !== undefined) {
      this.originateBye(rec, rec.calleeContact, rec.callerFrom, rec.calleeTo, rec.callerCseq + 1, outB,
        { transport: h.hop.transport, address, port: h.hop.port, socketId: outB.socketId })
    }
    const src = rec.callerSource
    if (rec.callerContact !== '' && rec.calleeTo !== '' && src !== null) {
      const outA = this.local.listenerOf(src.socketId, src.transport)
      if (outA !== undefined) {
        this.originateBye(rec, rec.callerContact, rec.calleeTo, rec.callerFrom, Math.max(1, rec.calleeCseq + 1), outA,
          { transport: src.transport, address: src.address, port: src.port, socketId: outA.socketId, ...(src.connId !== undefined ? { connId: src.connId } : {}) })
      }
    }
  }

  private originateBye(rec: DialogRecord, ruri: string, from: string, to: string, cseq: number, out: Listener, dest: Destination): void {
    const branch = this.branches.next('00000000')
    const text = 'BYE ' + ruri + ' SIP/2.0\r\n' +
      'Via: ' + out.viaPrefix + branch + '\r\n' +
      'Max-Forwards: 70\r\n' +
      'From: ' + from + '\r\n' +
      'To: ' + to + '\r\n' +
      'Call-ID: ' + rec.callId + '\r\n' +
      'CSeq: ' + cseq + ' BYE\r\n' +
      'Reason: SIP;cause=408;text="Dialog timeout"\r\n' +
      'User-Agent: ' + this.config.proxy.user_agent + '\r\n' +
      'Content-Length: 0\r\n\r\n'
    this.counters.byeOnTimeout++
    try {
      this.layer.createClient({ request: Buffer.from(text, 'utf8'), method: 'BYE', branch, dest, onResponse: NOOP, onTimeout: NOOP, context: null })
    } catch (err) {
      this.log.warn('BYE on dialog timeout not sent', { err: String(err), callId: rec.callId })
    }
  }

  /**
   * A new configuration: listeners, routes and dispatcher are rebuilt (requests in flight keep
   * the objects they hold). Transaction timers keep their values until restart.
   */
  applyConfig(config: FrozenConfig): void {
    this.config = config
    this.registrar.applyConfig?.(config)
    this.local = new LocalIdentity(config)
    const old = this.dispatcher
    this.dispatcher = this.makeDispatcher(config)
    // Keep what passive detection and probes learned about destinations that still exist; the
    // file's operator states win (admin overrides end here: docs/dispatcher.md "Reload semantics").
    this.dispatcher.inherit(old)
    old.close()
    this.dialogs.relink(this.dispatcher)
    this.dialogs.setTimeout(config.dialog.timeout)
    this.tokens.rekey(config.dialog.secret)
    this.routes = compileRoutes(config, this.dispatcher)
    this.setLocalHeaders(config)
    if (this.opts.probing !== false) this.dispatcher.startProbing(this.sendProbe)
    this.log.info('proxy configuration applied', { worker: this.workerIndex, routes: this.routes.rules.length, sets: this.dispatcher.sets.size })
  }

  // ================================================================================ lifecycle

  /** Requests forwarded or being routed that have no final response yet. */
  get pending(): number {
    return this.inflight
  }

  /**
   * Drain: new requests get 503 (retransmissions of known ones are still absorbed), requests in
   * flight get until `timeoutMs` to finish; then timers and probes stop.
   */
  async close(timeoutMs = 4_000): Promise<void> {
    this.draining = true
    this.dispatcher.close()
    const until = this.opts.now() + timeoutMs
    while (this.inflight > 0 && this.opts.now() < until) {
      if (this.opts.manualTimers === true) this.layer.tick()
      await new Promise<void>(r => setTimeout(r, 20))
    }
    this.layer.close()
    await this.dialogs.close()
    await this.registrar.close?.()
  }

  stats(): { proxy: ProxyCounters; transactions: ReturnType<TransactionLayer['stats']>; pending: number; routes: Array<{ rule: string; hits: number }>; destinations: Array<{ set: string; uri: string; state: string; suspect: boolean; sent: number; failed: number }> } {
    const now = this.opts.now()
    const destinations: Array<{ set: string; uri: string; state: string; suspect: boolean; sent: number; failed: number }> = []
    for (const s of this.dispatcher.sets.values()) for (const d of s.destinations) destinations.push({ set: s.name, uri: d.uri, state: d.state, suspect: d.suspectUntil > now, sent: d.sent, failed: d.failed })
    return {
      proxy: { ...this.counters },
      transactions: this.layer.stats(),
      pending: this.inflight,
      routes: this.routes.rules.map(r => ({ rule: r.label, hits: r.hits })),
      destinations,
    }
  }
}

const EMPTY_ROUTES: NameAddr[] = []
const FORGED = Symbol('forged dialog token')
const NOOP = (): void => {}
const LOOKUP_ERROR: LookupFailure = Object.freeze({ status: 500, reason: 'Location Lookup Failed' })

function parseRouteUri(r: NameAddr): SipUri {
  return parseUri(r.uri)
}

function copyMessage(m: SipMessage): SipMessage {
  const r = tryParseMessage(Buffer.from(m.buf.subarray(m.startLineStart, m.end)))
  return r instanceof SipParseError ? m : r
}

export function createProxy(opts: ProxyOptions): Proxy {
  return new Proxy(opts)
}
