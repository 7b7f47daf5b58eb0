// The `dispatcher` module's declaration and instance: the route action `dispatch` (a set's
// destinations in the order to try), `match.source: SET` (the set's addresses), probing with
// requests the core originates, passive failure marks from real traffic, and the operator
// actions of the admin API. Probe verdicts travel to the other workers as control messages.
import { randomTag, type SipMessage } from '@sipedge/sip'
import type { TimeoutReason } from '@sipedge/transaction'
import {
  Reply,
  type CoreApi, type ModuleContext, type ModuleDeclaration, type ModuleInstance, type NextHop, type RequestView, type RouteAction, type CompiledAction, type ControlMessage,
} from '@sipedge/proxy'
import type { FrozenConfig } from '@sipedge/config'
import { DispatchDestination, Dispatcher, type DestState, type DispatchSet } from './dispatcher.js'

export class DispatcherCounters {
  probesSent = 0
  probeFailures = 0
}

class ProbeContext {
  readonly set: DispatchSet
  readonly dest: DispatchDestination
  readonly seq: number
  constructor(set: DispatchSet, dest: DispatchDestination, seq: number) { this.set = set; this.dest = dest; this.seq = seq }
}

/** The host's probe observer (metrics): result 0 ok, 1 unexpected code, 2 timeout. */
export type ProbeObserver = (set: string, uri: string, result: number) => void

const UNKNOWN_SET = new Reply(500, 'Unknown Dispatcher Set')
const NO_DESTINATION = new Reply(503, 'No Destination Available', [['Retry-After', '5']])

export class DispatcherModule implements ModuleInstance {
  dispatcher: Dispatcher
  readonly counters: DispatcherCounters
  readonly actions: Readonly<Record<string, RouteAction>>
  /** Set by the host to count probes in its metrics. */
  probeObserver: ProbeObserver | null
  private readonly core: CoreApi
  private readonly sendProbe: (set: DispatchSet, d: DispatchDestination, seq: number) => void
  private readonly onProbeResponse: (msg: SipMessage, context: unknown) => void
  private readonly onProbeTimeout: (reason: TimeoutReason, context: unknown) => void

  constructor(ctx: ModuleContext) {
    this.core = ctx.core
    this.counters = new DispatcherCounters()
    this.probeObserver = null
    this.onProbeResponse = (msg, context) => {
      const p = context as ProbeContext
      if (msg.status < 200) return
      this.probeObserver?.(p.set.name, p.dest.uri, p.set.okCodes.has(msg.status) ? 0 : 1)
      this.dispatcher.probeResult(p.set, p.dest, p.seq, msg.status)
    }
    this.onProbeTimeout = (_reason, context) => {
      const p = context as ProbeContext
      this.counters.probeFailures++
      this.probeObserver?.(p.set.name, p.dest.uri, 2)
      this.dispatcher.probeResult(p.set, p.dest, p.seq, 0)
    }
    this.sendProbe = (set, d, seq) => this.probe(set, d, seq)
    this.dispatcher = this.make(ctx.config)
    this.actions = {
      dispatch: { kind: 'targets', run: (req: SipMessage, _source, action: CompiledAction) => this.plan(req, action) },
    }
    if (!ctx.core.manualTimers) this.dispatcher.startProbing(this.sendProbe)
  }

  private make(config: FrozenConfig): Dispatcher {
    return new Dispatcher(config, {
      workerIndex: this.core.workerIndex,
      workers: this.core.workers,
      now: () => this.core.now(),
      resolver: this.core.resolver,
      onDestinationState: (set, uri, state) => this.onDestinationState(set, uri, state),
    })
  }

  private plan(req: SipMessage, action: CompiledAction): { hops: NextHop[]; failover: DispatchSet } | Reply {
    if (action.type !== 'dispatch') return UNKNOWN_SET
    const set = this.dispatcher.get(action.set)
    if (set === undefined) return UNKNOWN_SET
    const plan = this.dispatcher.plan(set, req)
    if (plan.length === 0) return NO_DESTINATION
    return { hops: plan, failover: set }
  }

  sourceSet(name: string): ReadonlySet<string> | undefined {
    return this.dispatcher.get(name) === undefined ? undefined : this.dispatcher.sourceSet(name)
  }

  // ------------------------------------------------------------------------------ passive detection

  onForward(view: RequestView): void {
    const h = view.currentHop
    if (h instanceof DispatchDestination) h.sent++
  }

  onResponse(resp: SipMessage, _view: RequestView, hop: NextHop | null, current: boolean): void {
    if (!current || !(hop instanceof DispatchDestination)) return
    if (resp.status === 503) this.dispatcher.markFailed(hop)
    else this.dispatcher.markAlive(hop)
  }

  onAttemptFailed(_view: RequestView, hop: NextHop): void {
    if (hop instanceof DispatchDestination) this.dispatcher.markFailed(hop)
  }

  // ------------------------------------------------------------------------------ probing

  private probe(set: DispatchSet, d: DispatchDestination, seq: number): void {
    const out = this.core.local.listenerFor(d.hop.transport)
    if (d.address === null || out === undefined) { this.dispatcher.probeResult(set, d, seq, 0); return }
    this.counters.probesSent++
    const sent = this.core.originate({
      method: set.probe.method,
      uri: d.uri,
      dest: { transport: d.hop.transport, address: d.address, port: d.hop.port, socketId: out.socketId },
      from: '<sip:sipedge@' + out.host + '>;tag=' + randomTag(),
      to: '<' + d.uri + '>',
      pinned: true,
      onResponse: this.onProbeResponse,
      onTimeout: this.onProbeTimeout,
      context: new ProbeContext(set, d, seq),
    })
    if (!sent) this.dispatcher.probeResult(set, d, seq, 0)
  }

  /**
   * A destination changed state on this worker. Only probe verdicts travel (as
   * `dispatcher-state`, relayed by the primary to the other workers): a passive suspicion is this
   * worker's own observation.
   */
  private onDestinationState(set: string, uri: string, state: DestState): void {
    this.core.log.info('dispatcher destination state', { set, uri, state, worker: this.core.workerIndex })
    const d = this.dispatcher?.get(set)?.destinations.find(x => x.uri === uri)
    if (d !== undefined && d.probeState === state && this.dispatcher.isProber(d)) {
      this.core.postControl({ type: 'dispatcher-state', set, uri, state, workerIndex: this.core.workerIndex })
    }
  }

  // ------------------------------------------------------------------------------ control

  onControl(msg: ControlMessage): void {
    if (msg.type === 'dispatcher-state') {
      const m = msg as { set: string; uri: string; state: DestState; workerIndex?: number }
      if (m.workerIndex !== this.core.workerIndex) this.dispatcher.applyRemoteState(m.set, m.uri, m.state)
    } else if (msg.type === 'dispatcher-admin') {
      // Operator drain / enable / disable (admin API -> every worker); until the next reload.
      const m = msg as { set?: unknown; uri?: unknown; action?: unknown }
      const action = m.action
      if (typeof m.set === 'string' && typeof m.uri === 'string' && (action === 'drain' || action === 'enable' || action === 'disable')) {
        const n = this.dispatcher.admin(m.set, m.uri, action)
        this.core.log.info('dispatcher admin action', { worker: this.core.workerIndex, set: m.set, uri: m.uri, action, changed: n })
      }
    }
  }

  onQuery(what: string): unknown {
    return what === 'dispatcher' ? this.dispatcher.snapshot() : undefined
  }

  /**
   * A new dispatcher from the new configuration. What passive detection and probes learned about
   * destinations that still exist is kept; the file's operator states win (admin overrides end
   * here: docs/dispatcher.md "Reload semantics").
   */
  applyConfig(config: FrozenConfig): void {
    const old = this.dispatcher
    this.dispatcher = this.make(config)
    this.dispatcher.inherit(old)
    old.close()
    if (!this.core.manualTimers) this.dispatcher.startProbing(this.sendProbe)
  }

  stats(): Record<string, unknown> {
    const now = this.core.now()
    const destinations: Array<{ set: string; uri: string; state: string; suspect: boolean; sent: number; failed: number }> = []
    for (const s of this.dispatcher.sets.values()) for (const d of s.destinations) destinations.push({ set: s.name, uri: d.uri, state: d.state, suspect: d.suspectUntil > now, sent: d.sent, failed: d.failed })
    return { destinations, dispatcherCounters: { ...this.counters } }
  }

  close(): void {
    this.dispatcher.close()
  }
}

export const dispatcherModule: ModuleDeclaration<DispatcherModule> = {
  name: 'dispatcher',
  configSection: 'dispatcher',
  requires: [],
  uses: [],
  actions: ['dispatch'],
  metrics: ['sipedge_dispatcher_destination_state', 'sipedge_dispatcher_probes_total'],
  // Always on: cheap without sets, and `match.source: SET` and sticky dialogs rely on it.
  enabled: () => true,
  create: ctx => new DispatcherModule(ctx),
}
