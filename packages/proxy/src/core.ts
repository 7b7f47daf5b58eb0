// The stateful proxy core (RFC 3261 §16): one instance per worker, one TransactionLayer inside.
// docs/proxy.md walks through a request; the §16 steps are quoted where the decision is made.
// Feature modules (module.ts) plug in through hooks; the core never imports one.
//
// Buffers: `receive` may be handed a view that is only valid during the call (ring memory). A
// request that creates a transaction is copied once, before parsing (its bytes are kept by the
// server transaction and spliced into the forwarded copies). ACKs and responses are handled on
// the view synchronously; whatever outlives the call (a response kept for retransmission, the
// best response held during failover) is copied at that point.
import { SipParseError, parseUri, tryParseMessage, type NameAddr, type SipMessage, type SipUri } from '@sipedge/sip'
import {
  TransactionLayer, DRIVER_SLEEP_MS, ownBytes,
  type ClientTransaction, type InviteClientTransaction, type InviteServerTransaction, type NonInviteServerTransaction, type ServerTransaction, type TimeoutReason,
} from '@sipedge/transaction'
import type { FrozenConfig } from '@sipedge/config'
import { RequestContext } from './context.js'
import { ProxyCounters, type ProxyMetrics } from './counters.js'
import { clientResponse, clientTimeout, finishCancelled, forward } from './forwarding.js'
import { H_ROUTE_ID } from './header-ids.js'
import { LocalIdentity } from './identity.js'
import type { CoreState, Hooks } from './internals.js'
import { BranchFactory, isLoop, loopHash } from './loop.js'
import { DROP, Reply, TargetHop, type ArrivalVerdict, type CoreApi, type HopPlan, type LoadedModule, type ModuleInstance, type OriginateOptions, type RouteAction } from './module.js'
import { originate } from './originate.js'
import { BranchSigner } from './secret.js'
import { reply, replyWith, statelessReply } from './replies.js'
import { Resolver, hopOf } from './resolver.js'
import { compileRoutes, type CompiledRule, type RouteTable } from './routing.js'
import { EMPTY_ROUTES, countOurRoutes, dialogDecision, forwardAck, forwardStray, isOurUri, restoreDecision } from './stateless.js'
import type { ControlMessage, Destination, ProxyLogger, Source } from './types.js'

export interface ProxyOptions {
  config: FrozenConfig
  workerIndex: number
  /** Hands bytes to the transport (stream destinations without connId: open or reuse a connection). */
  send(dest: Destination, data: Buffer | Buffer[]): void
  /** ms; the same clock as Source.recvTime. */
  now(): number
  /**
   * `now` is performance.timeOrigin + performance.now(), the monotonic clock Node's timers run on
   * (what the worker threads and the in-process host give): the transaction timers then sleep
   * until the next one is due instead of checking every second for a clock that jumped.
   */
  monotonicNow?: boolean
  log: ProxyLogger
  /** Upward control messages (e.g. dispatcher-state), when the host offers a channel. */
  postControl?(msg: ControlMessage): void
  /** Workers sharing the Call-ID space (default config.workers; 0 counts as 1). */
  workers?: number
  /** Tests: drive the timer wheel with proxy.layer.tick() instead of a native interval. */
  manualTimers?: boolean
  resolver?: Resolver
  /** Optional metrics sink (the worker thread's shared-memory counters); absent: no metrics cost. */
  metrics?: ProxyMetrics
}

const RR_METHODS = new Set(['INVITE', 'SUBSCRIBE', 'REFER', 'NOTIFY'])
const ALLOW = 'INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, PRACK, REFER, NOTIFY, SUBSCRIBE, MESSAGE, REGISTER'
const NO_ROUTE_LOG_FIELDS = 16

function isRespPrefix(b: Uint8Array, i: number): boolean {
  return b[i] === 0x53 && b[i + 1] === 0x49 && b[i + 2] === 0x50 && b[i + 3] === 0x2f // "SIP/"
}
function isAckPrefix(b: Uint8Array, i: number): boolean {
  return b[i] === 0x41 && b[i + 1] === 0x43 && b[i + 2] === 0x4b && b[i + 3] === 0x20 // "ACK "
}
function isInvitePrefix(b: Uint8Array, i: number): boolean {
  return b[i] === 0x49 && b[i + 1] === 0x4e && b[i + 2] === 0x56 && b[i + 3] === 0x49 && b[i + 4] === 0x54 && b[i + 5] === 0x45 && b[i + 6] === 0x20 // "INVITE "
}

function emptyHooks(): Hooks {
  return {
    onArrival: [], onRequest: [], onRestore: [], onDialogRequest: [], onForward: [], onForwardAck: [], onResponse: [], onAttemptFailed: [], onReply: [], onFinished: [], trusts: [], onStrayResponse: [], onSelectRule: [],
  }
}

export class Proxy implements CoreState, CoreApi {
  readonly counters: ProxyCounters
  readonly layer: TransactionLayer
  readonly workerIndex: number
  readonly workers: number
  readonly manualTimers: boolean
  config: FrozenConfig
  local: LocalIdentity
  routes: RouteTable
  readonly resolver: Resolver
  readonly branches: BranchFactory
  readonly signer: BranchSigner
  readonly log: ProxyLogger
  readonly metrics: ProxyMetrics | undefined
  hooks: Hooks
  localHeaders: Array<[string, string]>
  inflight: number
  /** Loaded modules, in load order. */
  modules: readonly LoadedModule[]
  private readonly opts: ProxyOptions
  private actions: Map<string, RouteAction>
  private draining: boolean
  private optionsHeaders: Array<[string, string]>
  private readonly maxSize: number
  private timerErrorLoggedAt = 0
  readonly sendFn: (dest: Destination, data: Buffer | Buffer[]) => void
  // Bound once: transaction callbacks carry the per-request state in tx.context, no closure per message.
  readonly onClientResponse: (msg: SipMessage, tx: ClientTransaction) => void
  readonly onClientTimeout: (tx: ClientTransaction, reason: TimeoutReason) => void

  constructor(opts: ProxyOptions) {
    this.opts = opts
    this.counters = new ProxyCounters()
    this.workerIndex = opts.workerIndex
    this.workers = Math.max(1, opts.workers ?? opts.config.workers)
    this.manualTimers = opts.manualTimers ?? false
    this.config = opts.config
    this.log = opts.log
    this.sendFn = opts.send
    this.draining = false
    this.inflight = 0
    this.branches = new BranchFactory(opts.workerIndex)
    this.signer = new BranchSigner(opts.config.dialog.secret)
    this.resolver = opts.resolver ?? new Resolver()
    this.maxSize = opts.config.limits.max_message_size
    this.metrics = opts.metrics
    this.hooks = emptyHooks()
    this.modules = []
    this.actions = new Map()
    const t = opts.config.timers
    this.layer = new TransactionLayer({
      send: opts.send,
      clock: { now: opts.now },
      t1: t.t1, t2: t.t2, t4: t.t4, timerC: t.timer_c, timerB: t.timer_b, timerF: t.timer_f,
      onStrayResponse: (msg, source) => { if (!this.ownStray(msg, source)) forwardStray(this, msg, source) },
      manualTimers: opts.manualTimers ?? false,
      maxSleepMs: opts.monotonicNow === true ? DRIVER_SLEEP_MS.monotonic : DRIVER_SLEEP_MS.anyClock,
      forceRport: opts.config.nat.force_rport,
      // One failing callback must not stop every other timer of this thread, nor end the thread
      // (with workers: 0, the process): logged at most every 10 s, counted in stats.
      onTimerError: err => {
        this.counters.timerErrors++
        const now = Date.now()
        if (now - this.timerErrorLoggedAt >= 10_000) {
          this.timerErrorLoggedAt = now
          this.log.error('transaction timer callback threw', { err: err instanceof Error ? (err.stack ?? err.message) : String(err), timerErrors: this.counters.timerErrors })
        }
      },
    })
    this.onClientResponse = (msg, tx) => clientResponse(this, msg, tx)
    this.onClientTimeout = (tx, reason) => clientTimeout(this, tx, reason)
    this.local = new LocalIdentity(opts.config)
    this.localHeaders = []
    this.optionsHeaders = []
    this.setLocalHeaders(opts.config)
    this.routes = compileRoutes(opts.config, { sourceSet: name => this.sourceSet(name) })
  }

  now(): number {
    return this.opts.now()
  }

  /**
   * Installs the loaded modules (host.ts): one array per hook, the route actions, and the routes
   * compiled again now that the modules' named source sets exist.
   */
  install(modules: readonly LoadedModule[]): void {
    this.modules = modules
    const hooks = emptyHooks()
    const actions = new Map<string, RouteAction>()
    for (const m of modules) {
      const i = m.instance
      for (const k of Object.keys(hooks) as Array<keyof Hooks>) if (typeof i[k] === 'function') hooks[k].push(i)
      for (const [type, a] of Object.entries(i.actions ?? {})) actions.set(type, a)
    }
    this.hooks = hooks
    this.actions = actions
    this.routes = compileRoutes(this.config, { sourceSet: name => this.sourceSet(name) })
  }

  /** A loaded module's instance by name (hosts and tests; the core itself never needs one). */
  module<T extends ModuleInstance>(name: string): T | undefined {
    return this.modules.find(m => m.name === name)?.instance as T | undefined
  }

  private sourceSet(name: string): ReadonlySet<string> {
    for (const m of this.modules) {
      const s = m.instance.sourceSet?.(name)
      if (s !== undefined) return s
    }
    return EMPTY_SET
  }

  private setLocalHeaders(config: FrozenConfig): void {
    const server = config.proxy.server_header
    this.localHeaders = server === null ? [] : [['Server', server]]
    this.optionsHeaders = [['Allow', ALLOW], ['Accept', 'application/sdp'], ['Supported', ''], ...this.localHeaders]
  }

  originate(o: OriginateOptions): boolean {
    try {
      return originate(this, o)
    } catch (err) {
      this.log.warn('request not originated', { method: o.method, uri: o.uri, err: String(err) })
      return false
    }
  }

  postControl(msg: ControlMessage): void {
    this.opts.postControl?.(msg)
  }

  send(dest: Destination, data: Buffer | Buffer[]): void {
    this.sendFn(dest, data)
  }

  /** A stray response a module sent the request for (keep-alive OPTIONS): consumed there. */
  private ownStray(msg: SipMessage, source: Destination): boolean {
    const hooks = this.hooks.onStrayResponse
    for (let i = 0; i < hooks.length; i++) if (hooks[i]!.onStrayResponse!(msg, source as Source)) return true
    return false
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
    // copy: the transaction keeps these bytes; an INVITE's for 32 s after its final, in its own store
    const data = transient ? buf : isInvitePrefix(buf, i) ? ownBytes(buf) : Buffer.from(buf)
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
      // A header needed for a decision did not decode (validate() leaves lower Vias, Record-Route
      // and other Contacts to whoever reads them): answer when we can, otherwise drop. When the
      // server transaction exists already, answer through it, so it ends properly.
      this.counters.parseErrors++
      if (!msg.isRequest || msg.method === 'ACK') return
      const tx = this.layer.findServerTransaction(msg, source.transport)
      if (tx === undefined) { statelessReply(this, msg, source, err.status, err.reason); return }
      const ctx = tx.context as RequestContext | undefined
      if (ctx !== undefined) { if (!ctx.done) reply(this, ctx, err.status, err.reason) }
      else if (tx.lastStatus < 200) this.answer(tx, msg, source, err.status, err.reason)
    }
  }

  /** The transport could not reach `dest` (connection refused/reset, TLS failure): fail its transactions now. */
  transportError(dest: Destination): number {
    return this.layer.transportError(dest)
  }

  private response(msg: SipMessage, source: Source): void {
    this.counters.responsesIn++
    // A response without a usable Via, To, From, Call-ID or CSeq (RFC 3261 §8.1.1: all mandatory)
    // is dropped here, before it can match a client transaction: once matched, a final response
    // that the forwarding path cannot read would end the client transaction and leave the server
    // transaction without an answer (and without a timer), open forever.
    try {
      void msg.topVia
      void msg.cseq
      void msg.callId
      void msg.from
      void msg.to
    } catch (err) {
      if (!(err instanceof SipParseError)) throw err
      this.counters.badResponses++
      return
    }
    this.layer.receiveResponse(msg, source)
  }

  private request(msg: SipMessage, source: Source): void {
    this.counters.requestsIn++
    try {
      msg.validate()
    } catch (err) {
      if (!(err instanceof SipParseError)) throw err
      this.counters.parseErrors++
      if (msg.method !== 'ACK') statelessReply(this, msg, source, err.status, err.reason)
      return
    }
    const arrival = this.hooks.onArrival
    if (msg.method === 'ACK') {
      for (let i = 0; i < arrival.length; i++) if (arrival[i]!.onArrival!(msg, source) === DROP) { this.counters.arrivalDropped++; return }
      const r = this.layer.receiveRequest(msg, source)
      if (r.kind === 'ack-2xx') forwardAck(this, msg, source)
      return
    }
    if (arrival.length > 0 && !this.layer.hasServerTransaction(msg, source.transport)) this.arrive(0, msg, source)
    else this.admit(msg, source)
  }

  /** The on-arrival hooks from `start` (before any transaction exists), then admit. */
  private arrive(start: number, msg: SipMessage, source: Source): void {
    const hooks = this.hooks.onArrival
    for (let i = start; i < hooks.length; i++) {
      const v = hooks[i]!.onArrival!(msg, source)
      if (v === null) continue
      if (v instanceof Promise) {
        v.then(r => this.arrived(i + 1, msg, source, r), () => this.arrived(i + 1, msg, source, CHECK_FAILED))
        return
      }
      this.arrived(i + 1, msg, source, v)
      return
    }
    this.admit(msg, source)
  }

  private arrived(next: number, msg: SipMessage, source: Source, v: ArrivalVerdict): void {
    if (v === null) { this.arrive(next, msg, source); return }
    if (v === DROP) { this.counters.arrivalDropped++; return }
    this.counters.arrivalReplies++
    statelessReply(this, msg, source, v.status, v.reason, v.headers as Array<[string, string]>)
  }

  /** A request past the arrival hooks: the server transaction (new, retransmission or CANCEL). */
  private admit(msg: SipMessage, source: Source): void {
    if (this.draining && !this.layer.hasServerTransaction(msg, source.transport)) {
      this.counters.drainRefused++
      statelessReply(this, msg, source, 503, 'Service Unavailable', [['Retry-After', '5']])
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
    this.inflight++
    let ruri = msg.requestUri
    const method = msg.method

    // §16.4: "If the Request-URI contains a value this proxy previously placed into a
    // Record-Route header field, the proxy MUST replace the Request-URI in the request with the
    // last value from the Route header field, and remove that value from the Route header field."
    // (the previous hop is a strict router).
    const routes: NameAddr[] = msg.indexOf(H_ROUTE_ID) >= 0 ? msg.routes : EMPTY_ROUTES
    let nRoutes = routes.length
    let newRuri: string | null = null
    if (nRoutes > 0 && isOurRecordRoute(this, ruri)) {
      const last = routes[nRoutes - 1]!
      newRuri = last.uri
      nRoutes--
      ruri = parseUri(last.uri)
    }
    // §16.4: "If the first value in the Route header field indicates this proxy, the proxy MUST
    // remove that value from the request." Two of ours in a row: our double Record-Route (RFC 5658).
    const ours = countOurRoutes(this, routes, nRoutes)
    const remaining = nRoutes - ours

    // §16.3 step 3: Max-Forwards. 0: answer 483, except OPTIONS, which we answer ourselves (§11).
    const mf = msg.maxForwards
    const forUs = remaining === 0 && (ruri.user === undefined || ruri.user === '') && this.local.isLocalHost(ruri.host)
    if (method === 'OPTIONS' && (forUs || mf === 0)) {
      this.counters.optionsLocal++
      this.answer(tx, msg, source, 200, 'OK', this.optionsHeaders)
      return
    }
    if (mf === 0) {
      this.counters.tooManyHops++
      this.answer(tx, msg, source, 483, 'Too Many Hops')
      return
    }

    // §16.3 step 4: loop detection (see loop.ts for the hash).
    const hash = loopHash(msg, newRuri ?? msg.uri, ours)
    if (isLoop(msg, hash, this.local)) {
      this.counters.loops++
      this.answer(tx, msg, source, 482, 'Loop Detected')
      return
    }

    // §16.3 step 5: "If the request contains a Proxy-Require header field with one or more
    // option-tags this element does not understand, the element MUST return a 420".
    const pr = msg.header('proxy-require')
    if (pr !== undefined && pr.trim() !== '') {
      this.answer(tx, msg, source, 420, 'Bad Extension', [['Unsupported', pr], ...this.localHeaders])
      return
    }

    const inDialog = msg.to.tag !== undefined
    // An in-dialog request addressed to a URI of ours with a user part may carry an edge URI a
    // module minted (topology hiding): the module restores the request before anything routes
    // it (the server transaction keeps the request as received; the restored one is forwarded).
    const restored = inDialog && this.hooks.onRestore.length > 0 && ruri.user !== undefined && isOurUri(this, ruri)
      ? restoreDecision(this, msg, ruri, routes, ours, source, newRuri !== null ? msg.uri : null) : null
    if (inDialog && (ours > 0 || newRuri !== null || restored !== null)) {
      // In-dialog requests that come through our Record-Route follow their route set (§16.4,
      // §16.5), unless a module (sticky dialogs) names the hop or refuses the request.
      const r = restored instanceof Reply ? null : restored
      const ctx = r === null ? this.context(tx, msg, source, newRuri, ours, hash) : this.context(tx, r.req, source, null, 0, hash)
      const d = restored instanceof Reply ? restored
        : ours > 0 || newRuri !== null ? dialogDecision(this, ctx.req, r?.routes ?? routes, ours, source, newRuri !== null ? msg.uri : null) : null
      if (d instanceof Reply) { this.counters.moduleRefused++; replyWith(this, ctx, d.status, d.reason, d.headers); return }
      if (d !== null) { ctx.hops.push(d); forward(this, ctx); return }
      if (r !== null) { ctx.hops.push(r.target); forward(this, ctx); return }
      if (remaining > 0) {
        ctx.hops.push(routeHop(routes[ours]!))
      } else if (ruri.user === undefined && isOurUri(this, ruri)) {
        // Addressed to the proxy itself inside a dialog: we are no UA (§16.5: the target is us).
        reply(this, ctx, 481, 'Call/Transaction Does Not Exist')
        return
      } else {
        ctx.hops.push(new TargetHop(ctx.ruri, hopOf(ruri)))
      }
      forward(this, ctx)
      return
    }
    if (inDialog && remaining === 0 && ruri.user === undefined && isOurUri(this, ruri)) {
      this.answer(tx, msg, source, 481, 'Call/Transaction Does Not Exist')
      return
    }

    // On request hooks (digest authentication, ...): before any rule is looked at.
    this.checks(0, tx, msg, source, ruri, newRuri, ours, hash, inDialog, null)
  }

  /**
   * The on-request hooks from `start`, then the rules. A hook that answers later gets a request
   * context first, so a CANCEL arriving meanwhile finds it (and the 487 is sent when it ends).
   */
  private checks(start: number, tx: ServerTransaction, msg: SipMessage, source: Source, ruri: SipUri, newRuri: string | null, ours: number, hash: string, inDialog: boolean, pending: RequestContext | null): void {
    const hooks = this.hooks.onRequest
    for (let i = start; i < hooks.length; i++) {
      const v = hooks[i]!.onRequest!(msg, source)
      if (v === null) continue
      if (v instanceof Promise) {
        const ctx = pending ?? this.context(tx, msg, source, newRuri, ours, hash)
        const next = (r: Reply | null): void => {
          if (ctx.done) return
          if (r !== null) { this.counters.moduleRefused++; replyWith(this, ctx, r.status, r.reason, r.headers); return }
          if (ctx.cancelled) { finishCancelled(this, ctx); return }
          this.checks(i + 1, tx, msg, source, ruri, newRuri, ours, hash, inDialog, ctx)
        }
        v.then(next, () => next(CHECK_FAILED))
        return
      }
      this.counters.moduleRefused++
      if (pending !== null) replyWith(this, pending, v.status, v.reason, v.headers)
      else this.answer(tx, msg, source, v.status, v.reason, v.headers.length === 0 ? this.localHeaders : [...v.headers, ...this.localHeaders])
      return
    }
    this.routeNew(tx, msg, source, ruri, newRuri, ours, hash, inDialog, pending)
  }

  /** Rule matching and the rule's action for a request that is not following our Route set. */
  private routeNew(tx: ServerTransaction, msg: SipMessage, source: Source, ruri: SipUri, newRuri: string | null, ours: number, hash: string, inDialog: boolean, pending: RequestContext | null): void {
    // Out of dialog (or in-dialog without our Route: not a dialog we record-routed): a rule must
    // match. Never an open relay: foreign pre-loaded Routes alone do not get a request anywhere;
    // the rule's target wins and they stay in the message for that next hop.
    // issue 15: a module may pick the rule itself (a request another node of the cluster relayed
    // here for a binding whose connection this node holds); otherwise the routing rules.
    const rule = (this.hooks.onSelectRule.length > 0 ? this.selectRule(msg, source) : null) ?? this.routes.match(msg, ruri, source)
    if (rule === null) {
      this.counters.noRoute++
      if (this.log.isLevelEnabled !== undefined && this.log.isLevelEnabled('debug')) this.logNoRoute(msg, ruri, source)
      if (pending !== null) reply(this, pending, 403, 'No Route For Request')
      else this.answer(tx, msg, source, 403, 'No Route For Request')
      return
    }
    const a = rule.action
    if (a.type === 'reject') {
      this.counters.rejected++
      if (pending !== null) reply(this, pending, a.code, a.reason)
      else this.answer(tx, msg, source, a.code, a.reason)
      return
    }
    const action = a.type === 'forward' ? undefined : this.actions.get(a.type)
    if (action !== undefined && action.kind === 'takeover') {
      // The module owns the transaction from here (the registrar): no request context (one made
      // while a check was pending is retired without an answer of ours).
      if (pending !== null) { pending.done = true; tx.context = undefined }
      this.inflight--
      action.run(msg, tx, source, a)
      return
    }
    const ctx = pending ?? this.context(tx, msg, source, newRuri, ours, hash)
    ctx.rule = rule
    ctx.recordRoute = this.config.proxy.record_route && RR_METHODS.has(msg.method) && !inDialog
    if (a.type === 'forward') {
      ctx.hops.push(new TargetHop(a.uri, hopOf(parseUri(a.uri))))
      forward(this, ctx)
      return
    }
    if (action === undefined) { reply(this, ctx, 500, 'Route Action Not Available'); return }
    const r = action.run(msg, source, a)
    if (r instanceof Promise) r.then(v => this.planned(ctx, v), () => this.planned(ctx, ACTION_FAILED))
    else this.planned(ctx, r)
  }

  private selectRule(msg: SipMessage, source: Source): CompiledRule | null {
    const hooks = this.hooks.onSelectRule
    for (let i = 0; i < hooks.length; i++) {
      const r = hooks[i]!.onSelectRule!(msg, source)
      if (r !== null) return r
    }
    return null
  }

  private planned(ctx: RequestContext, r: HopPlan | Reply): void {
    if (ctx.done) return
    if (ctx.cancelled) { finishCancelled(this, ctx); return }
    if (r instanceof Reply) { replyWith(this, ctx, r.status, r.reason, r.headers); return }
    ctx.failover = r.failover
    for (let i = 0; i < r.hops.length; i++) ctx.hops.push(r.hops[i]!)
    forward(this, ctx)
  }

  private context(tx: ServerTransaction, msg: SipMessage, source: Source, newRuri: string | null, ours: number, hash: string): RequestContext {
    const ctx = new RequestContext(tx, msg, source, this.local.listenerOf(source.socketId, source.transport))
    tx.context = ctx
    if (newRuri !== null) { ctx.ruri = newRuri; ctx.ruriChanged = true; ctx.dropLastRoute = true }
    ctx.ourRoutes = ours
    ctx.hash = hash
    return ctx
  }

  /** A local answer before any request context exists (§16.3 checks, refusals, no route). */
  private answer(tx: ServerTransaction, msg: SipMessage, source: Source, status: number, reason?: string, headers?: ReadonlyArray<readonly [string, string]>): void {
    reply(this, this.context(tx, msg, source, null, 0, ''), status, reason, headers)
  }

  /** docs/proxy.md: a 403 No Route is logged (debug) with what it was matched against. */
  private logNoRoute(msg: SipMessage, ruri: SipUri, source: Source): void {
    const rules = this.routes.rules
    this.log.debug('no route for request', {
      method: msg.method, ruri: msg.uri, domain: ruri.host, user: ruri.user, callId: msg.callId,
      source: source.address + ':' + source.port, transport: source.transport,
      rules: rules.slice(0, NO_ROUTE_LOG_FIELDS).map(r => r.label), more: Math.max(0, rules.length - NO_ROUTE_LOG_FIELDS),
    })
  }

  // ================================================================================ CANCEL

  /** §16.10: answer the CANCEL hop by hop, then cancel the pending client transaction. */
  private cancel(tx: NonInviteServerTransaction, invite: InviteServerTransaction | undefined): void {
    this.counters.cancels++
    const h = this.localHeaders.length > 0 ? { headers: this.localHeaders } : undefined
    if (invite === undefined) {
      // "If a response context is not found, the element does not have any knowledge of the
      // request to apply the CANCEL to" — we forward everything statefully, so: 481.
      this.counters.cancelNoMatch++
      tx.respond(481, 'Call/Transaction Does Not Exist', h)
      return
    }
    tx.respond(200, 'OK', h)
    const ctx = invite.context as RequestContext | undefined
    if (ctx === undefined || ctx.done) return
    ctx.cancelled = true
    const c = ctx.current
    // The layer sends the CANCEL once a provisional arrived (§9.1); the 487 comes back as a final.
    // With no attempt yet (lookup / DNS in flight) the 487 is sent when that ends.
    if (c !== null && c.kind === 'ict') (c as InviteClientTransaction).cancel()
  }

  // ================================================================================ control

  onControl(msg: ControlMessage): void {
    if (msg.type === 'config') {
      this.applyConfig((msg as { config: unknown }).config as FrozenConfig)
      return
    }
    for (const m of this.modules) m.instance.onControl?.(msg)
  }

  /**
   * Admin/inspection queries (docs/contracts.md "Query results"): answered by the first module
   * that knows `what`; undefined when none does.
   */
  query(what: string, args: unknown): unknown {
    for (const m of this.modules) {
      const r = m.instance.onQuery?.(what, args)
      if (r !== undefined) return r
    }
    return undefined
  }

  /**
   * A new configuration: listeners and routes are rebuilt, modules take theirs (requests in
   * flight keep the objects they hold). Transaction timers keep their values until restart.
   */
  applyConfig(config: FrozenConfig): void {
    this.config = config
    this.local = new LocalIdentity(config)
    this.signer.rekey(config.dialog.secret)
    this.layer.forceRport = config.nat.force_rport
    for (const m of this.modules) m.instance.applyConfig?.(config)
    this.routes = compileRoutes(config, { sourceSet: name => this.sourceSet(name) })
    this.setLocalHeaders(config)
    this.log.info('proxy configuration applied', { worker: this.workerIndex, routes: this.routes.rules.length, modules: this.modules.map(m => m.name) })
  }

  // ================================================================================ lifecycle

  /** Requests forwarded or being routed that have no final response yet. */
  get pending(): number {
    return this.inflight
  }

  /**
   * Drain: new requests get 503 (retransmissions of known ones are still absorbed), requests in
   * flight get until `timeoutMs` to finish; then timers stop and modules close.
   */
  async close(timeoutMs = 4_000): Promise<void> {
    this.draining = true
    const until = this.opts.now() + timeoutMs
    while (this.inflight > 0 && this.opts.now() < until) {
      if (this.opts.manualTimers === true) this.layer.tick()
      await new Promise<void>(r => setTimeout(r, 20))
    }
    this.layer.close()
    for (let i = this.modules.length - 1; i >= 0; i--) {
      const m = this.modules[i]!
      try { await m.instance.close?.() } catch (err) { this.log.warn('module close failed', { module: m.name, err: String(err) }) }
    }
  }

  stats(): Record<string, unknown> & { proxy: ProxyCounters; pending: number } {
    const out: Record<string, unknown> & { proxy: ProxyCounters; pending: number } = {
      proxy: { ...this.counters },
      transactions: this.layer.stats(),
      pending: this.inflight,
      routes: this.routes.rules.map((r: CompiledRule) => ({ rule: r.label, hits: r.hits })),
    }
    for (const m of this.modules) if (m.instance.stats !== undefined) Object.assign(out, m.instance.stats())
    return out
  }
}

const EMPTY_SET: ReadonlySet<string> = new Set()

/**
 * §16.4: "a value this proxy previously placed into a Record-Route header field": our
 * Record-Route URIs have no user part, an explicit port of one of our listeners and `lr`. A bare
 * domain of ours (an outbound-proxy REGISTER's `sip:example.com`) is not one (issue: a phone with
 * an outbound proxy could not register).
 */
function isOurRecordRoute(core: Proxy, u: SipUri): boolean {
  return u.user === undefined && u.port !== undefined && u.params.has('lr') && isOurUri(core, u)
}
const ACTION_FAILED = new Reply(500, 'Route Action Failed')
const CHECK_FAILED = new Reply(500, 'Server Internal Error (request check failed)')

function routeHop(r: NameAddr): TargetHop {
  const u = parseUri(r.uri)
  // §16.6 step 6: a Route without lr names a strict router (the URI becomes the Request-URI).
  return new TargetHop(r.uri, hopOf(u), undefined, undefined, undefined, !u.params.has('lr'))
}

export function createProxy(opts: ProxyOptions): Proxy {
  return new Proxy(opts)
}
