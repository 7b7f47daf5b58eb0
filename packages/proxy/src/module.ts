// The contract between the proxy core and feature modules (registrar, auth, dispatcher, dialog,
// nat, topology hiding, pike, ...), the way Kamailio's core exports a module interface: each
// module is one folder exporting one ModuleDeclaration; the host (the worker adapter) checks the
// declarations at load (host.ts), opens the stores a module asks for, creates the instances in
// dependency order and hands them to the core. The core never imports a module: it only calls
// the hooks below, and a hook that no module implements costs nothing per message (the core
// keeps one array per hook, filled at load).
import type { SipMessage, MessageEditor, SipUri } from '@sipedge/sip'
import type { ServerTransaction, TimeoutReason } from '@sipedge/transaction'
import type { FrozenConfig } from '@sipedge/config'
import type { CompiledAction, CompiledRule } from './routing.js'
import type { Hop, Resolver } from './resolver.js'
import type { Listener, LocalIdentity } from './identity.js'
import type { ControlMessage, Destination, ProxyLogger, Source } from './types.js'

/** What an on-arrival hook returns to have a request dropped without any answer. */
export const DROP: unique symbol = Symbol('drop')
export type ArrivalVerdict = Reply | typeof DROP | null

/** A final (or provisional) answer a hook wants sent instead of routing the request. */
export class Reply {
  readonly status: number
  readonly reason: string
  readonly headers: ReadonlyArray<readonly [string, string]>
  constructor(status: number, reason: string, headers: ReadonlyArray<readonly [string, string]> = []) {
    this.status = status
    this.reason = reason
    this.headers = headers
  }
}

/**
 * A next hop of a forwarded request. Dispatcher destinations implement it directly (and are kept
 * across requests, so `address` caches the resolution); other hops are `TargetHop`s.
 */
export interface NextHop {
  /** The SIP URI the hop came from (Route, destination, contact). */
  readonly uri: string
  readonly hop: Hop
  /** Resolved IP address (null: not resolved yet). */
  address: string | null
  /** Replaces the Request-URI when set (a registered contact). */
  readonly requestUri?: string | undefined
  /** Send over this existing flow (RFC 5626 / a registered connection) instead of resolving. */
  readonly flow?: Destination | undefined
  /** Header lines added to the forwarded request (e.g. Path as Route). */
  readonly headers?: ReadonlyArray<readonly [string, string]> | undefined
  /** §16.6 step 6/7: the hop is a strict router (Route without lr). */
  readonly strict?: boolean | undefined
  /**
   * The final status this hop stands for when its attempt ends in a transport error (0 or absent:
   * the core's 503). A registered flow that is gone: 480, or 430 Flow Failed for RFC 5626 Outbound.
   */
  readonly failStatus?: number | undefined
}

/** A hop built from a Route, a URI or a registered contact. Stable shape. */
export class TargetHop implements NextHop {
  readonly uri: string
  readonly hop: Hop
  address: string | null
  readonly requestUri: string | undefined
  readonly flow: Destination | undefined
  readonly headers: ReadonlyArray<readonly [string, string]> | undefined
  readonly strict: boolean
  readonly failStatus: number
  constructor(uri: string, hop: Hop, requestUri?: string, flow?: Destination, headers?: ReadonlyArray<readonly [string, string]>, strict = false, failStatus = 0) {
    this.uri = uri
    this.hop = hop
    this.address = null
    this.requestUri = requestUri
    this.flow = flow
    this.headers = headers
    this.strict = strict
    this.failStatus = failStatus
  }
}

/** When the core moves on to the next hop (sequential failover). */
export interface FailoverPolicy {
  readonly failoverCodes: ReadonlySet<number>
  readonly failoverOnTimeout: boolean
}

/** What a `targets` route action returns: hops in the order to try, and when to fail over. */
export interface HopPlan {
  readonly hops: readonly NextHop[]
  /** null: the core's default (next hop on 408 and 5xx, and on timeout). */
  readonly failover: FailoverPolicy | null
}

/** A route action implemented by a module (config `routes[].action`, by its `type`). */
export type RouteAction =
  | {
    /** Takes over the server transaction (REGISTER): no request context is built, no hook runs after it. */
    readonly kind: 'takeover'
    run(req: SipMessage, tx: ServerTransaction, source: Source, action: CompiledAction): void
  }
  | {
    /** Produces the hops to try (may resolve later; the core stays synchronous when it does not). */
    readonly kind: 'targets'
    run(req: SipMessage, source: Source, action: CompiledAction): HopPlan | Reply | Promise<HopPlan | Reply>
  }

/** The request being forwarded, as modules see it (the core's response context, §16). */
export interface RequestView {
  readonly req: SipMessage
  readonly source: Source
  /** Our Record-Route goes on the forwarded request. */
  readonly recordRoute: boolean
  /** The routing rule that matched (null: the request followed our Route set or a module's hop). */
  readonly rule: CompiledRule | null
  /** The listener the request arrived on, and the one the current attempt leaves from. */
  readonly inListener: Listener | undefined
  readonly outListener: Listener | undefined
  /** The hop of the current attempt (null before the first). */
  readonly currentHop: NextHop | null
  /** Parameters (";name=value") appended to our Record-Route entries for the current attempt. */
  rrParams: string
  /**
   * Set by an on-forward hook: only the Record-Route entry facing the next hop, never the RFC 5658
   * pair (a module that rewrites Record-Route towards the previous hop itself: topology hiding).
   * Reset to false before every attempt.
   */
  singleRecordRoute: boolean
  /**
   * Set by an on-forward hook that removed the previous hops' Vias and puts them back on the
   * responses it relays (topology hiding): a response with only our Via is then expected, not
   * refused (RFC 3261 §16.7 step 3). Reset to false before every attempt.
   */
  restoresVias: boolean
  /** Per-module state of this request, by ModuleContext.slot. */
  getState(slot: number): unknown
  setState(slot: number, value: unknown): void
}

/** An in-dialog request (or an ACK for a 2xx) that came through our Record-Route. */
export interface DialogRequestInfo {
  /** Route values of the request (parsed), and how many at the top name us. */
  readonly routes: readonly { readonly uri: string; readonly raw: string }[]
  readonly ours: number
  readonly source: Source
  /** The Request-URI when it was one of our Record-Route values (§16.4 strict-router repair), else null. */
  readonly requestUri: string | null
}

/**
 * What an on-restore hook returns for a request addressed to one of its edge URIs (topology
 * hiding): the request as it would have arrived without the hiding (Request-URI, Route set and
 * Call-ID restored, parsed from a copy), and where it goes unless an on-dialog-request hook names
 * another hop. The server transaction keeps the request as received; the core forwards `req`.
 */
export interface Restored {
  readonly req: SipMessage
  readonly target: NextHop
  /**
   * The Route values the on-dialog-request hooks see instead of the received ones (e.g. our
   * entry with the parameters a module signed, which the hiding kept from one side); same length.
   */
  readonly routes?: DialogRequestInfo['routes'] | undefined
}

/** The core's services, for module instances. Stable for the life of the core. */
export interface CoreApi {
  readonly workerIndex: number
  /** Workers sharing the Call-ID space (for Call-IDs that must come back to this worker). */
  readonly workers: number
  /** Tests: timers are driven by hand (no native timers in modules either). */
  readonly manualTimers: boolean
  now(): number
  readonly log: ProxyLogger
  readonly resolver: Resolver
  /** The configuration in force (replaced on reload). */
  readonly config: FrozenConfig
  /** Our listeners and domains (replaced on reload). */
  readonly local: LocalIdentity
  /** Server header lines for locally generated responses (empty unless configured). */
  readonly localHeaders: ReadonlyArray<readonly [string, string]>
  /** Sends a request this proxy originates (probe, BYE) on a new client transaction. */
  originate(o: OriginateOptions): boolean
  /**
   * Hands bytes to the transport without a transaction (NAT keep-alives: a CRLF datagram, or an
   * OPTIONS whose answer comes back through `onStrayResponse`). Stream destinations need a connId.
   */
  send(dest: Destination, data: Buffer | Buffer[]): void
  /** Upward control message (relayed by the primary to the other workers). */
  postControl(msg: ControlMessage): void
}

export interface OriginateOptions {
  method: string
  /** Request-URI. */
  uri: string
  dest: Destination
  from: string
  to: string
  /** Default: a fresh one; `pinned: true` makes one that the primary shards back to this worker. */
  callId?: string
  pinned?: boolean
  cseq?: number
  headers?: ReadonlyArray<readonly [string, string]>
  onResponse?(msg: SipMessage, context: unknown): void
  onTimeout?(reason: TimeoutReason, context: unknown): void
  context?: unknown
}

/** What the host gives a module when it creates it. */
export interface ModuleContext<Stores = unknown> {
  readonly config: FrozenConfig
  readonly core: CoreApi
  /** This module's index for RequestView.getState/setState. */
  readonly slot: number
  /** The stores the declaration asked for (`store`), opened by the host; null when none. */
  readonly stores: Stores | null
  /** A loaded module this one `requires` (or `uses`, then possibly undefined). */
  module<T extends ModuleInstance>(name: string): T | undefined
}

/** One feature module. Exported once per module folder. */
export interface ModuleDeclaration<I extends ModuleInstance = ModuleInstance, Stores = unknown> {
  readonly name: string
  /** The top-level configuration section it reads (null: none); checked against the config at load. */
  readonly configSection: string | null
  /** Modules that must be loaded and enabled (startup error naming both otherwise). */
  readonly requires: readonly string[]
  /** Modules used when enabled. */
  readonly uses: readonly string[]
  /** Route action types it implements (at most one module per type). */
  readonly actions: readonly string[]
  /** Metric names (docs/metrics.md) fed from its counters; checked against the catalog by a test. */
  readonly metrics: readonly string[]
  /** Whether this configuration needs it. */
  enabled(config: FrozenConfig): boolean
  /**
   * The store URL it needs, if any. `required`: opened before create (a failure stops the start);
   * otherwise opened in the background and handed over with `storeReady`.
   */
  store?(config: FrozenConfig): { url: string; required: boolean } | null
  create(ctx: ModuleContext<Stores>): I | Promise<I>
}

/** A module instance: every hook optional. */
export interface ModuleInstance {
  /** Route actions, by action type (must match the declaration's `actions`). */
  readonly actions?: Readonly<Record<string, RouteAction>>
  /**
   * On arrival: a request (ACK included) that is not a retransmission of a known transaction,
   * before any transaction exists. DROP: ignored, no answer (scanners); a Reply: answered once,
   * statelessly, never retransmitted (challenges to unauthenticated sources: no reflection, no
   * transaction state for a forged source); null: go on. For an ACK only DROP counts.
   */
  onArrival?(req: SipMessage, source: Source): ArrivalVerdict | Promise<ArrivalVerdict>
  /** `match.source: NAME`: the addresses ("ip:port" and "ip") of a named set this module keeps; undefined: not mine. */
  sourceSet?(name: string): ReadonlySet<string> | undefined
  /**
   * On request: a new request about to be routed by the rules (not one following our
   * Record-Route). null: go on; a Reply: answer it and stop.
   */
  onRequest?(req: SipMessage, source: Source): Reply | null | Promise<Reply | null>
  /**
   * On restore: an in-dialog request or ACK whose Request-URI (after §16.4 strict-router repair:
   * `edge`) names this proxy and has a user part, i.e. may be an edge URI a module minted. A
   * Restored (the core routes `restored.req`: the on-dialog-request hooks see it when the request
   * came through our Route, otherwise `restored.target` is the hop), a Reply (refused: forged;
   * an ACK is dropped) or null (not mine). Runs before the on-dialog-request hooks.
   */
  onRestore?(req: SipMessage, edge: SipUri, info: DialogRequestInfo): Restored | Reply | null
  /**
   * An in-dialog request through our Record-Route: a hop to send it to, a Reply (refused; for an
   * ACK: dropped), or null (not mine: the next module, then the Route set / Request-URI).
   */
  onDialogRequest?(req: SipMessage, info: DialogRequestInfo): NextHop | Reply | null
  /**
   * A request is about to go to `view.currentHop` (stateful). `ed` holds the edits of the
   * forwarded copy so far (Route, Request-URI, Max-Forwards); the core adds Record-Route, its Via
   * and the route's headers after the hooks.
   */
  onForward?(view: RequestView, ed: MessageEditor): void
  /**
   * An ACK for a 2xx forwarded statelessly (after the core's Route, Request-URI and Max-Forwards
   * edits, before its Via): `ack` is what is forwarded (a Restored request when one was made).
   */
  onForwardAck?(ed: MessageEditor, ack: SipMessage, source: Source, out: Listener): void
  /** On response: a response to an attempt; `current`: of the attempt in progress. */
  onResponse?(resp: SipMessage, view: RequestView, hop: NextHop | null, current: boolean): void
  /** The current attempt got no response (timeout, transport error). */
  onAttemptFailed?(view: RequestView, hop: NextHop, reason: TimeoutReason): void
  /** On reply to the UA: a response about to be relayed upstream (edits go into `ed`). */
  onReply?(ed: MessageEditor, resp: SipMessage, view: RequestView): void
  /** The request has its final answer (`status`: the final status sent). */
  onFinished?(view: RequestView, status: number): void
  /**
   * Whether this module vouches for the source of `req` (a configured peer, or credentials that
   * verified on arrival). Asked only when the core answers a request over UDP itself: responses to
   * sources nobody vouches for are not retransmitted beyond 3x the request bytes (replies.ts).
   */
  trusts?(req: SipMessage, source: Source): boolean
  /**
   * A response that matches no client transaction (before the core relays it by Via, §16.11):
   * true when it answers something the module sent itself (a keep-alive OPTIONS sent with
   * CoreApi.send) and is consumed.
   */
  onStrayResponse?(resp: SipMessage, source: Source): boolean
  /**
   * Select rule (issue 15): a new request not following our Route, before the routing rules: a
   * rule (its action is run as if it had matched) or null (the rules decide). Used for requests
   * another node of the cluster relayed here (docs/ha.md).
   */
  onSelectRule?(req: SipMessage, source: Source): CompiledRule | null
  /** On control: a control message from the primary (not `config`: see applyConfig). */
  onControl?(msg: ControlMessage): void
  /** On query: an admin/inspection question; undefined: not mine. */
  onQuery?(what: string, args: unknown): unknown
  /** A new configuration (reload). */
  applyConfig?(config: FrozenConfig): void
  /** An optional store the declaration asked for is open. */
  storeReady?(stores: unknown): void
  /** Plain-data statistics merged into the worker's `stats` answer. */
  stats?(): Record<string, unknown>
  /** Drain / shutdown. */
  close?(): void | Promise<void>
}

/** A created module, in load order (host.ts). */
export interface LoadedModule {
  readonly name: string
  readonly declaration: ModuleDeclaration
  readonly instance: ModuleInstance
  readonly slot: number
}
