// The proxy's metrics sink in a worker thread, and the scrape-time views the worker answers
// queries with. The sink's calls are per response: a few comparisons and array writes into the
// thread's shared metrics block, no allocation. Everything else here runs once a second (gauges)
// or per admin query.
import type { FrozenConfig } from '@sipedge/config'
import type { Proxy, ProxyMetrics } from '@sipedge/proxy'
import type { AuthModule, ClusterModule, DialogModule, DispatcherModule, NatModule, SecurityModule } from '@sipedge/modules'
import { BanReason, CLUSTER_SLOTS, DestinationSlots, DropReason, KeepaliveResult, TransactionEvent, TransactionKind, METRICS_LAYOUT, type WorkerMetrics } from '@sipedge/metrics'
import type { HandlerMetrics } from './types.js'

const O = METRICS_LAYOUT.offsets

export class ProxyMetricsSink implements ProxyMetrics {
  private readonly hm: HandlerMetrics
  private readonly w: WorkerMetrics
  dest: DestinationSlots

  constructor(hm: HandlerMetrics, config: FrozenConfig) {
    this.hm = hm
    this.w = hm.writer
    this.dest = new DestinationSlots(config.dispatcher.sets)
  }

  setConfig(config: FrozenConfig): void {
    this.dest = new DestinationSlots(config.dispatcher.sets)
  }

  serverResponse(method: string, recvTime: number, prevStatus: number, status: number, forwarded: boolean): void {
    // The worker entry counts the response when it goes out; this says which direction it was.
    if (forwarded) this.hm.forwardedNext = true
    if (recvTime <= 0) return
    if (method === 'INVITE') {
      if (status > 100 && status < 200) {
        if (prevStatus <= 100) this.w.inviteProvisional(elapsed(recvTime))
      } else if (status >= 200 && prevStatus < 200) {
        this.w.inviteFinal(elapsed(recvTime))
      }
    } else if (status >= 200 && prevStatus < 200) {
      this.w.nonInviteFinal(elapsed(recvTime))
    }
  }

  /** A dispatcher probe ended: result 0 ok, 1 unexpected code, 2 timeout. */
  probe(set: string, uri: string, result: number): void {
    this.w.probe(this.dest.slot(set, uri), result)
  }
}

function elapsed(recvTime: number): number {
  return Math.max(0, performance.timeOrigin + performance.now() - recvTime) / 1000
}

/** Duck-typed view of a dispatcher destination (the dispatcher is being extended in parallel). */
interface DestLike {
  uri: string
  weight: number
  priority: number
  configState: string
  adminState?: string | null
  probeState: string
  suspectUntil: number
  dialogs?: number
  lastProbeStatus?: number
  lastProbeAt?: number
}

function stateOf(d: DestLike): string {
  const admin = d.adminState ?? d.configState
  if (admin !== 'active') return admin
  return d.probeState === 'inactive' ? 'inactive' : 'active'
}

/** `dispatcher` query answered from the dispatcher's objects (when the proxy has no query of its own). */
export function dispatcherInfo(proxy: Proxy): { sets: Array<{ name: string; algorithm: string; destinations: Array<Record<string, unknown>> }> } {
  const sets: Array<{ name: string; algorithm: string; destinations: Array<Record<string, unknown>> }> = []
  const d = proxy.module<DispatcherModule>('dispatcher')
  if (d === undefined) return { sets }
  for (const s of d.dispatcher.sets.values()) {
    sets.push({
      name: s.name,
      algorithm: s.algorithm,
      destinations: (s.destinations as unknown as readonly DestLike[]).map(d => ({
        uri: d.uri, state: stateOf(d), weight: d.weight, priority: d.priority,
        ...(typeof d.dialogs === 'number' ? { activeDialogs: d.dialogs } : {}),
      })),
    })
  }
  return { sets }
}

/** Once a second: gauges and policy counters the proxy keeps as plain numbers. */
export function publishProxyGauges(proxy: Proxy, m: WorkerMetrics, sink: ProxyMetricsSink | null): void {
  const st = proxy.layer.stats()
  const a = st.active
  m.setTransactions(TransactionKind.ServerInvite, a.ist)
  m.setTransactions(TransactionKind.ServerNonInvite, a.nist)
  m.setTransactions(TransactionKind.ClientInvite, a.ict)
  m.setTransactions(TransactionKind.ClientNonInvite, a.nict)
  // Drops and the transaction layer's counters: they live as long as this thread, so the slots
  // hold their values (the primary folds a dead worker's block into the retired totals).
  const c = proxy.counters
  const f = m.f
  const tx = O.transactionEvents
  f[tx + TransactionEvent.RequestRetransmitted] = st.retransmissions.requests
  f[tx + TransactionEvent.ResponseRetransmitted] = st.retransmissions.responses
  f[tx + TransactionEvent.RequestRetransmissionReceived] = st.absorbed.requests
  f[tx + TransactionEvent.ResponseRetransmissionReceived] = st.absorbed.responses
  f[tx + TransactionEvent.Timeout] = st.timeouts
  f[tx + TransactionEvent.ResponseWithheld] = st.withheldResponses
  f[O.drops + DropReason.ParseError] = c.parseErrors
  // responses missing Via/To/From/Call-ID/CSeq (or with one that does not parse), or with no Via left
  // below ours (§16.7 step 3): failed the sanity check
  f[O.drops + DropReason.Sanity] = c.badResponses
  f[O.drops + DropReason.MaxForwards] = c.tooManyHops
  f[O.drops + DropReason.Loop] = c.loops
  f[O.drops + DropReason.NoRoute] = c.noRoute
  f[O.drops + DropReason.StrayResponse] = c.strayDropped
  // Scanners dropped on arrival (security.drop_user_agents) count as `other`.
  f[O.drops + DropReason.Other] = c.rejected + c.acksDropped + c.drainRefused + (proxy.module<SecurityModule>('security')?.scannersDropped ?? 0)
  const auth = proxy.module<AuthModule>('auth')
  if (auth !== undefined) {
    f[O.drops + DropReason.AuthFailed] = auth.forbiddenTotal
    f[O.drops + DropReason.Banned] = auth.bannedDropped
    f[O.bans + BanReason.AuthFailures] = auth.bansReported
  }
  // Dialogs not dispatched (lookup, forward): the set="none" series.
  const dlg = proxy.module<DialogModule>('dialog')
  if (dlg !== undefined) m.setDialogs(0, dlg.undispatched)
  // NAT keep-alives this worker sent (UDP) and bindings it removed: plain counters, published whole.
  const nat = proxy.module<NatModule>('nat')
  if (nat !== undefined) {
    const n = nat.counters
    for (let x = 0; x < n.pingsSent.length; x++) {
      m.setKeepalive(x, KeepaliveResult.Sent, n.pingsSent[x]!)
      m.setKeepalive(x, KeepaliveResult.Answered, n.pingsAnswered[x]!)
      m.setKeepalive(x, KeepaliveResult.Failed, n.pingsFailed[x]!)
      m.setKeepaliveSeconds(x, n.pingSeconds[x]!)
    }
    m.setBindingsRemoved(n.bindingsRemoved)
  }
  // issue 15: the cluster module of worker 0 (the others leave the slots at 0, the sum is its value)
  const cl = proxy.module<ClusterModule>('cluster')
  if (cl !== undefined && cl.beats) {
    f[O.cluster + CLUSTER_SLOTS.bindingsOwned] = cl.bindingsOwned
    f[O.cluster + CLUSTER_SLOTS.liveNodes] = cl.liveNodes().length
  }
  // Dialogs per destination, when the dispatcher keeps them.
  const disp = proxy.module<DispatcherModule>('dispatcher')
  if (sink !== null && disp !== undefined) {
    const slots = sink.dest
    for (const s of disp.dispatcher.sets.values()) {
      for (const d of s.destinations as unknown as readonly DestLike[]) {
        if (typeof d.dialogs !== 'number') continue
        const slot = slots.slot(s.name, d.uri)
        if (slot > 0) m.setDialogs(slot, d.dialogs)
      }
    }
  }
}
