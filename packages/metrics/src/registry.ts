// Every sipedge series, defined in one place. Values come from three kinds of source:
//  - the workers' SharedArrayBuffer blocks, summed by the MetricsAggregator at scrape time;
//  - callbacks into the primary (engine counters, rings, connections, store counts), called at
//    scrape time only (MetricsSources);
//  - setters on the returned object (configuration generation, reloads, readiness).
// Metrics are prom-client "collected" metrics: objects with get() that the Registry formats;
// nothing is stored per label set between scrapes.
import { readdirSync } from 'node:fs'
import { Registry } from 'prom-client'
import {
  BAN_REASONS, BanReason, CODE_SLOTS, DESTINATION_STATES, DROP_REASONS, KEEPALIVE_RESULTS, MAX_DESTINATIONS, METHODS, PROBE_RESULTS, RESPONSE_DIRECTIONS,
  RETRANSMISSION_LABELS, TransactionEvent,
  TRANSACTION_KINDS, TRANSPORTS, codeSlotLabels,
} from './catalog.js'
import { CLUSTER_SLOTS, HISTOGRAMS, METRICS_LAYOUT, THREAD_SLOTS, type HistogramSlots } from './layout.js'
import type { MetricsAggregator } from './aggregator.js'

export type MetricType = 'counter' | 'gauge' | 'histogram'
type Labels = Record<string, string>
export interface Sample { value: number; labels?: Labels; metricName?: string }

export interface RingStat {
  /** Worker index (0-based). */
  worker: number
  /** in: primary -> worker; out: worker -> primary. */
  direction: 'in' | 'out'
  used: number
  capacity: number
  /** Bytes of the ring ever written (resident memory). Optional for callers that predate it. */
  reach?: number
  pushed: number
  refused: number
  wakeups: number
}
export interface DestinationStatus { set: string; uri: string; state: string }

/** Scrape-time callbacks into the primary. All optional; an absent one reports zeros or nothing. */
export interface MetricsSources {
  /** Ring.stats() of every inbound/outbound ring. */
  rings?(): readonly RingStat[]
  /** Open connections by transport (udp: 0 or omitted). */
  connections?(): Readonly<Partial<Record<string, number>>>
  /** The engine's Counters object (field names of @sipedge/transport src/counters.ts). */
  engineCounters?(): Readonly<Record<string, number>>
  /**
   * Called at the start of every scrape, before any block is read: asks every thread to write its
   * thread gauges (busy time, heap, event-loop delay, the handler's gauges) now. Threads sample
   * only when asked (no timer while idle); a thread that does not answer in time keeps its last
   * sample. Bounded by sourceTimeoutMs; a failure is counted as source `threads`.
   */
  sampleThreads?(): Promise<void> | void
  /** Worker threads currently running. */
  workersAlive?(): number
  /** Location store counts. */
  registrations?(): Promise<{ aors: number; bindings: number }> | { aors: number; bindings: number }
  /** Every dispatcher destination and its state (active, inactive, draining, probing). */
  dispatcher?(): Promise<readonly DestinationStatus[]> | readonly DestinationStatus[]
  /** Sources banned right now. */
  bansActive?(): Promise<number> | number
  /** The primary's stream keep-alives, arrays indexed like TRANSPORTS (added to the workers' UDP ones). */
  natKeepalives?(): { readonly sent: readonly number[]; readonly answered: readonly number[]; readonly failed: readonly number[]; readonly seconds: readonly number[] }
}

export interface MetricsRegistryOptions {
  aggregator?: MetricsAggregator | null
  sources?: MetricsSources
  /** sipedge version for sipedge_build_info. */
  version?: string
  /** An async source slower than this is skipped for this scrape (counted as a scrape error). Default 2000 ms. */
  sourceTimeoutMs?: number
}

export interface MetricDescription { name: string; type: MetricType; help: string; labels: readonly string[] }

export interface SipedgeMetrics {
  readonly registry: Registry
  /** Content-Type of metrics(): Prometheus text format 0.0.4. */
  readonly contentType: string
  readonly aggregator: MetricsAggregator | null
  /** The exposition text. */
  metrics(): Promise<string>
  /** Every metric defined, in exposition order. */
  describe(): readonly MetricDescription[]
  setConfigGeneration(generation: number): void
  /** Count a configuration reload attempt; a success also stamps the last-success time. */
  configReloaded(ok: boolean): void
  setReady(ready: boolean): void
}

/** Engine counter field -> [metric, labels]. Fields not listed are ignored. */
const ENGINE_COUNTERS: Readonly<Record<string, readonly [string, Labels]>> = {
  udpIn: ['sipedge_transport_messages_total', { direction: 'in', kind: 'datagram' }],
  udpOut: ['sipedge_transport_messages_total', { direction: 'out', kind: 'datagram' }],
  streamIn: ['sipedge_transport_messages_total', { direction: 'in', kind: 'stream' }],
  streamOut: ['sipedge_transport_messages_total', { direction: 'out', kind: 'stream' }],
  keepalivePings: ['sipedge_keepalives_received_total', {}],
  connAccepted: ['sipedge_connection_events_total', { event: 'accepted' }],
  connOpened: ['sipedge_connection_events_total', { event: 'opened' }],
  connReused: ['sipedge_connection_events_total', { event: 'reused' }],
  connRefused: ['sipedge_connection_events_total', { event: 'refused' }],
  connClosed: ['sipedge_connection_events_total', { event: 'closed' }],
  connRefusedPerSource: ['sipedge_connection_events_total', { event: 'refused_per_source' }],
  connIdleEvicted: ['sipedge_connection_events_total', { event: 'idle_evicted' }],
  connRefusedBanned: ['sipedge_connection_events_total', { event: 'refused_banned' }],
  connBannedClosed: ['sipedge_connection_events_total', { event: 'banned_closed' }],
  pikeDropped: ['sipedge_pike_dropped_total', {}],
  connIdleClosed: ['sipedge_connection_events_total', { event: 'idle_closed' }],
  connPartialTimeout: ['sipedge_connection_events_total', { event: 'partial_timeout' }],
  connOversize: ['sipedge_connection_events_total', { event: 'oversize' }],
  connBadStream: ['sipedge_connection_events_total', { event: 'bad_stream' }],
  connConnectFailed: ['sipedge_connection_events_total', { event: 'connect_failed' }],
  tlsHandshakeErrors: ['sipedge_tls_events_total', { event: 'handshake_error' }],
  tlsReloads: ['sipedge_tls_events_total', { event: 'reload' }],
  tlsReloadErrors: ['sipedge_tls_events_total', { event: 'reload_error' }],
  ringFull: ['sipedge_messages_lost_total', { reason: 'ring_full' }],
  udpOversize: ['sipedge_messages_lost_total', { reason: 'oversize' }],
  udpNoCallId: ['sipedge_messages_lost_total', { reason: 'no_call_id' }],
  streamNoCallId: ['sipedge_messages_lost_total', { reason: 'no_call_id' }],
  udpSendErrors: ['sipedge_messages_lost_total', { reason: 'send_error' }],
  sendNoConnection: ['sipedge_messages_lost_total', { reason: 'no_connection' }],
  sendUnsupported: ['sipedge_messages_lost_total', { reason: 'unsupported_transport' }],
  workerLostInFlight: ['sipedge_messages_lost_total', { reason: 'worker_exit' }],
  drainDropped: ['sipedge_messages_lost_total', { reason: 'shutdown' }],
  handlerErrors: ['sipedge_messages_lost_total', { reason: 'handler_error' }],
  ringFull503: ['sipedge_overload_replies_total', {}],
  workerCrashes: ['sipedge_worker_restarts_total', {}],
}

class CollectedMetric {
  readonly aggregator = 'sum'
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: MetricType,
    readonly labelNames: readonly string[],
    private readonly collect: () => Sample[] | Promise<Sample[]>,
  ) {}

  async get(): Promise<{ name: string; help: string; type: MetricType; values: Sample[]; aggregator: string }> {
    return { name: this.name, help: this.help, type: this.type, values: await this.collect(), aggregator: this.aggregator }
  }

  reset(): void {}
}

function fmtBound(b: number): string { return String(b) }

function histogramSamples(name: string, h: HistogramSlots, t: Float64Array): Sample[] {
  const out: Sample[] = []
  let cum = 0
  for (let i = 0; i < h.bounds.length; i++) {
    cum += t[h.offset + i]!
    out.push({ metricName: `${name}_bucket`, labels: { le: fmtBound(h.bounds[i]!) }, value: cum })
  }
  cum += t[h.offset + h.bounds.length]!
  out.push({ metricName: `${name}_bucket`, labels: { le: '+Inf' }, value: cum })
  out.push({ metricName: `${name}_sum`, value: t[h.offset + h.bounds.length + 1]! })
  // The count is the +Inf bucket by construction, so the three never disagree within a scrape.
  out.push({ metricName: `${name}_count`, value: cum })
  return out
}

export function createMetricsRegistry(opts: MetricsRegistryOptions = {}): SipedgeMetrics {
  const agg = opts.aggregator ?? null
  const src = opts.sources ?? {}
  const timeoutMs = opts.sourceTimeoutMs ?? 2000
  const registry = new Registry()
  const defs: CollectedMetric[] = []
  const O = METRICS_LAYOUT.offsets

  let configGeneration = 0
  let ready = 0
  const reloads = { ok: 0, error: 0 }
  let lastReloadOk = 0
  const scrapeErrors = new Map<string, number>()

  const def = (name: string, type: MetricType, labels: readonly string[], help: string, collect: () => Sample[] | Promise<Sample[]>): void => {
    const m = new CollectedMetric(name, help, type, labels, collect)
    defs.push(m)
    registry.registerMetric(m as never)
  }
  const totals = (): Float64Array | null => (agg === null ? null : agg.totals())

  /** Calls an optional source with a deadline; a failure yields undefined and is counted. */
  async function call<T>(name: string, fn: (() => T | Promise<T>) | undefined): Promise<T | undefined> {
    if (fn === undefined) return undefined
    let timer: NodeJS.Timeout | undefined
    try {
      const r = fn()
      if (!(r instanceof Promise)) return r
      return await Promise.race([r, new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('timeout')), timeoutMs)
      })])
    } catch {
      scrapeErrors.set(name, (scrapeErrors.get(name) ?? 0) + 1)
      return undefined
    } finally {
      if (timer !== undefined) clearTimeout(timer)
    }
  }
  // Sync sources are called once per scrape per metric family; the engine ones are cheap reads.
  const engine = (): Readonly<Record<string, number>> => {
    try {
      return src.engineCounters?.() ?? {}
    } catch {
      scrapeErrors.set('engine', (scrapeErrors.get('engine') ?? 0) + 1)
      return {}
    }
  }
  const fromEngine = (metric: string, allLabels: readonly Labels[]): (() => Sample[]) => () => {
    const c = engine()
    const out = allLabels.map(l => ({ labels: l, value: 0 }))
    for (const [field, [m, labels]] of Object.entries(ENGINE_COUNTERS)) {
      if (m !== metric) continue
      const v = c[field]
      if (typeof v !== 'number') continue
      const s = out.find(o => Object.keys(labels).every(k => o.labels[k] === labels[k]))
      if (s !== undefined) s.value += v
    }
    return out
  }
  const engineLabels = (metric: string): Labels[] => {
    const seen = new Map<string, Labels>()
    for (const [m, labels] of Object.values(ENGINE_COUNTERS)) if (m === metric) seen.set(JSON.stringify(labels), labels)
    return [...seen.values()]
  }
  const perThread = (slot: number, always: boolean): (() => Sample[]) => () => {
    if (agg === null) return []
    const out: Sample[] = []
    for (let b = 0; b <= agg.workers; b++) {
      if (agg.read(b, O.threadGauges + THREAD_SLOTS.sampledAt) === 0 && !(always && b === 0)) continue
      out.push({ labels: { thread: agg.threadLabel(b) }, value: agg.read(b, slot) })
    }
    return out
  }

  // ------------------------------------------------------------------ SIP traffic (workers)
  const methodTransport = (offset: number) => (): Sample[] => {
    const t = totals()
    if (t === null) return []
    const out: Sample[] = []
    for (let m = 0; m < METHODS.length; m++) {
      for (let x = 0; x < TRANSPORTS.length; x++) {
        const v = t[offset + m * TRANSPORTS.length + x]!
        if (v !== 0) out.push({ labels: { method: METHODS[m]!, transport: TRANSPORTS[x]! }, value: v })
      }
    }
    return out
  }
  def('sipedge_requests_received_total', 'counter', ['method', 'transport'],
    'SIP requests received, by method (known methods, else "other") and transport.', methodTransport(O.reqIn))
  def('sipedge_requests_sent_total', 'counter', ['method', 'transport'],
    'SIP requests sent (forwarded or generated), by method and transport.', methodTransport(O.reqOut))
  def('sipedge_responses_total', 'counter', ['direction', 'class', 'code'],
    'SIP responses. direction: received (from the network), forwarded (relayed on), local (generated by sipedge). code: standard codes, else "other".',
    () => {
      const t = totals()
      if (t === null) return []
      const out: Sample[] = []
      for (let d = 0; d < RESPONSE_DIRECTIONS.length; d++) {
        for (let s = 0; s < CODE_SLOTS; s++) {
          const v = t[O.responses + d * CODE_SLOTS + s]!
          if (v !== 0) out.push({ labels: { direction: RESPONSE_DIRECTIONS[d]!, ...codeSlotLabels(s) }, value: v })
        }
      }
      return out
    })
  const hist = (name: string, h: HistogramSlots, help: string): void =>
    def(name, 'histogram', [], help, () => {
      const t = totals()
      return histogramSamples(name, h, t ?? new Float64Array(METRICS_LAYOUT.blockSize))
    })
  hist('sipedge_transaction_invite_provisional_seconds', HISTOGRAMS.inviteProvisional,
    'Time from an INVITE received to the first provisional response (>100) sent back.')
  hist('sipedge_transaction_invite_final_seconds', HISTOGRAMS.inviteFinal,
    'Time from an INVITE received to its final response sent back (includes ringing).')
  hist('sipedge_transaction_non_invite_seconds', HISTOGRAMS.nonInvite,
    'Time from a non-INVITE request received to its final response sent back.')
  def('sipedge_transactions_active', 'gauge', ['kind'], 'Transactions in progress, by kind (server/client, INVITE/non-INVITE).', () => {
    const t = totals()
    return TRANSACTION_KINDS.map((k, i) => ({ labels: { kind: k }, value: t === null ? 0 : t[O.transactions + i]! }))
  })

  def('sipedge_retransmissions_total', 'counter', ['direction', 'message'],
    'SIP retransmissions. sent: by sipedge\'s own transactions (Timer A/E requests, Timer G and responses repeated for a retransmitted request); received: retransmissions of peers absorbed by a transaction. A rising rate is the first sign of loss or overload, on either side.', () => {
      const t = totals()
      return RETRANSMISSION_LABELS.map((l, i) => ({ labels: { direction: l.direction, message: l.message }, value: t === null ? 0 : t[O.transactionEvents + i]! }))
    })
  def('sipedge_transaction_timeouts_total', 'counter', [], 'Transactions that timed out: no final response (Timer B, F, C without a provisional, a CANCEL unanswered) or no ACK (Timer H).', () => {
    const t = totals()
    return [{ value: t === null ? 0 : t[O.transactionEvents + TransactionEvent.Timeout]! }]
  })
  def('sipedge_responses_withheld_total', 'counter', [], 'Response retransmissions not sent because their transaction had sent its byte limit towards an unproven UDP source (the reflection guard, docs/security.md).', () => {
    const t = totals()
    return [{ value: t === null ? 0 : t[O.transactionEvents + TransactionEvent.ResponseWithheld]! }]
  })

  // ------------------------------------------------------------------ dialogs, dispatcher
  def('sipedge_dialogs_active', 'gauge', ['set', 'destination'],
    'Dialogs tracked, by dispatcher set and destination ("none": not dispatched).', () => {
      if (agg === null) return []
      const t = agg.totals()
      const d = agg.destinations
      const out: Sample[] = [{ labels: d.labels(0), value: t[O.dialogs]! }]
      for (let s = 1; s <= d.list.length; s++) out.push({ labels: d.labels(s), value: t[O.dialogs + s]! })
      return out
    })
  def('sipedge_dispatcher_probes_total', 'counter', ['set', 'destination', 'result'],
    'Dispatcher health probes (OPTIONS) by destination and result.', () => {
      if (agg === null) return []
      const t = agg.totals()
      const d = agg.destinations
      const out: Sample[] = []
      for (let s = 1; s <= d.list.length; s++) {
        for (let r = 0; r < PROBE_RESULTS.length; r++) {
          out.push({ labels: { ...d.labels(s), result: PROBE_RESULTS[r]! }, value: t[O.probes + s * PROBE_RESULTS.length + r]! })
        }
      }
      return out
    })
  def('sipedge_dispatcher_destination_state', 'gauge', ['set', 'destination', 'state'],
    'Dispatcher destination state: 1 for the current state, 0 for the others.', async () => {
      const list = await call('dispatcher', src.dispatcher)
      if (list === undefined) return []
      const out: Sample[] = []
      for (const d of list) {
        for (const s of DESTINATION_STATES) out.push({ labels: { set: d.set, destination: d.uri, state: s }, value: d.state === s ? 1 : 0 })
      }
      return out
    })

  // ------------------------------------------------------------------ registrar, policy
  let regCache: Promise<{ aors: number; bindings: number } | undefined> | null = null
  const regs = (): Promise<{ aors: number; bindings: number } | undefined> => {
    // two metrics, one store query per scrape
    if (regCache === null) {
      regCache = call('registrations', src.registrations)
      setImmediate(() => { regCache = null })
    }
    return regCache
  }
  def('sipedge_registrations_aors', 'gauge', [], 'Addresses of record with at least one binding in the location store.', async () => {
    const r = await regs()
    return r === undefined ? [] : [{ value: r.aors }]
  })
  def('sipedge_registrations_bindings', 'gauge', [], 'Contact bindings in the location store.', async () => {
    const r = await regs()
    return r === undefined ? [] : [{ value: r.bindings }]
  })
  def('sipedge_messages_dropped_total', 'counter', ['reason'], 'Requests dropped or refused by policy in the workers, by reason.', () => {
    const t = totals()
    return DROP_REASONS.map((r, i) => ({ labels: { reason: r }, value: t === null ? 0 : t[O.drops + i]! }))
  })
  def('sipedge_bans_total', 'counter', ['reason'], 'Sources banned, by reason (flood: pike in the primary; auth_failures: the workers\' digest throttle).', () => {
    const t = totals()
    const flood = engine()['pikeFloodBans'] ?? 0
    return BAN_REASONS.map((r, i) => ({ labels: { reason: r }, value: (t === null ? 0 : t[O.bans + i]!) + (i === BanReason.Flood ? flood : 0) }))
  })
  def('sipedge_pike_dropped_total', 'counter', [], 'Datagrams and stream messages from banned sources dropped by the primary before any parsing (pike).', fromEngine('sipedge_pike_dropped_total', [{}]))
  def('sipedge_bans_active', 'gauge', [], 'Sources banned right now.', async () => {
    const n = await call('bans', src.bansActive)
    return n === undefined ? [] : [{ value: n }]
  })

  // ------------------------------------------------------------------ NAT (workers: UDP; primary: streams)
  const primaryKeepalives = (): ReturnType<NonNullable<MetricsSources['natKeepalives']>> | undefined => {
    try {
      return src.natKeepalives?.()
    } catch {
      scrapeErrors.set('nat', (scrapeErrors.get('nat') ?? 0) + 1)
      return undefined
    }
  }
  def('sipedge_nat_keepalives_total', 'counter', ['transport', 'result'],
    'NAT keep-alive pings to registered clients behind NAT, by transport and result (sent; answered: any response or pong; failed: none before the next ping).', () => {
      const t = totals()
      const p = primaryKeepalives()
      const out: Sample[] = []
      for (let x = 0; x < TRANSPORTS.length; x++) {
        for (let r = 0; r < KEEPALIVE_RESULTS.length; r++) {
          const own = p === undefined ? 0 : (r === 0 ? p.sent : r === 1 ? p.answered : p.failed)[x] ?? 0
          out.push({ labels: { transport: TRANSPORTS[x]!, result: KEEPALIVE_RESULTS[r]! }, value: own + (t === null ? 0 : t[O.natKeepalives + x * KEEPALIVE_RESULTS.length + r]!) })
        }
      }
      return out
    })
  def('sipedge_nat_keepalive_seconds_total', 'counter', ['transport'],
    'Thread time spent sending NAT keep-alives and handling their answers, by transport. CPU per 1,000 pings: 1000 * rate(this) / rate(sipedge_nat_keepalives_total{result="sent"}).', () => {
      const t = totals()
      const p = primaryKeepalives()
      return TRANSPORTS.map((x, i) => ({ labels: { transport: x }, value: (p?.seconds[i] ?? 0) + (t === null ? 0 : t[O.natKeepaliveSeconds + i]!) }))
    })
  def('sipedge_nat_bindings_removed_total', 'counter', [], 'Registrations removed because their client stopped answering NAT keep-alives (or its flow failed).', () => {
    const t = totals()
    return [{ value: t === null ? 0 : t[O.natBindingsRemoved]! }]
  })
  // ------------------------------------------------------------------ HA / cluster (issue 15, docs/ha.md)
  hist('sipedge_store_redis_rtt_seconds', HISTOGRAMS.storeRtt,
    'Round-trip time of the Redis store commands the workers send (answered ones; Redis store only).')
  def('sipedge_store_redis_errors_total', 'counter', [], 'Redis store commands from the workers that failed (unreachable, timed out, refused).', () => {
    const t = totals()
    return [{ value: t === null ? 0 : t[O.storeErrors]! }]
  })
  def('sipedge_node_dialogs', 'gauge', [], 'Dialogs this node tracks (all sets and destinations): what a drain waits for.', () => {
    const t = totals()
    if (t === null) return [{ value: 0 }]
    let n = 0
    for (let s = 0; s <= MAX_DESTINATIONS; s++) n += t[O.dialogs + s]!
    return [{ value: n }]
  })
  def('sipedge_node_bindings_owned', 'gauge', [], 'Bindings this node accepted (their nodeId is node.id; the only node that reaches their connection), counted every 30 s. Redis store only.', () => {
    const t = totals()
    return t === null ? [] : [{ value: t[O.cluster + CLUSTER_SLOTS.bindingsOwned]! }]
  })
  def('sipedge_node_live_nodes', 'gauge', [], 'Nodes this node sees alive through their liveness keys in Redis, itself included.', () => {
    const t = totals()
    return t === null ? [] : [{ value: t[O.cluster + CLUSTER_SLOTS.liveNodes]! }]
  })

  // ------------------------------------------------------------------ rings (primary)
  const ringMetric = (name: string, type: MetricType, help: string, pick: (r: RingStat) => number): void =>
    def(name, type, ['worker', 'direction'], help, () => {
      let rings: readonly RingStat[] = []
      try {
        rings = src.rings?.() ?? []
      } catch {
        scrapeErrors.set('rings', (scrapeErrors.get('rings') ?? 0) + 1)
      }
      return rings.map(r => ({ labels: { worker: String(r.worker), direction: r.direction }, value: pick(r) }))
    })
  ringMetric('sipedge_ring_used_bytes', 'gauge', 'Bytes waiting in a ring (in: primary to worker, out: worker to primary).', r => r.used)
  ringMetric('sipedge_ring_capacity_bytes', 'gauge', 'Ring capacity.', r => r.capacity)
  ringMetric('sipedge_ring_touched_bytes', 'gauge', 'Bytes of the ring written since it was created: the part that is resident memory. A consumer that keeps up keeps it near an eighth of the capacity (the producer starts again at the front of an empty ring); a backlog grows it up to the capacity, and it does not shrink.', r => r.reach ?? r.capacity)
  ringMetric('sipedge_ring_frames_total', 'counter', 'Frames pushed into a ring.', r => r.pushed)
  ringMetric('sipedge_ring_drops_total', 'counter', 'Frames refused because the ring was full.', r => r.refused)
  ringMetric('sipedge_ring_wakeups_total', 'counter', 'Times the consumer of a ring was woken up (Atomics.notify).', r => r.wakeups)

  // ------------------------------------------------------------------ transport (primary)
  def('sipedge_connections', 'gauge', ['transport'], 'Open connections by transport.', () => {
    let c: Readonly<Partial<Record<string, number>>> = {}
    try {
      c = src.connections?.() ?? {}
    } catch {
      scrapeErrors.set('connections', (scrapeErrors.get('connections') ?? 0) + 1)
    }
    return TRANSPORTS.filter(t => t !== 'udp').map(t => ({ labels: { transport: t }, value: c[t] ?? 0 }))
  })
  def('sipedge_connection_events_total', 'counter', ['event'], 'Connection events (accepted, opened, reused, refused, closed, timeouts, errors).',
    fromEngine('sipedge_connection_events_total', engineLabels('sipedge_connection_events_total')))
  def('sipedge_tls_events_total', 'counter', ['event'], 'TLS handshake errors and certificate reloads.',
    fromEngine('sipedge_tls_events_total', engineLabels('sipedge_tls_events_total')))
  def('sipedge_transport_messages_total', 'counter', ['direction', 'kind'], 'SIP messages read from and written to sockets by the primary (kind: datagram or stream).',
    fromEngine('sipedge_transport_messages_total', engineLabels('sipedge_transport_messages_total')))
  def('sipedge_keepalives_received_total', 'counter', [], 'Keep-alive pings (CRLF) received on stream connections.',
    fromEngine('sipedge_keepalives_received_total', [{}]))
  def('sipedge_messages_lost_total', 'counter', ['reason'], 'Messages the primary could not deliver to a worker or a socket, by reason.',
    fromEngine('sipedge_messages_lost_total', engineLabels('sipedge_messages_lost_total')))
  def('sipedge_overload_replies_total', 'counter', [], 'Requests answered 503 by the primary because the worker ring was full.',
    fromEngine('sipedge_overload_replies_total', [{}]))
  def('sipedge_worker_restarts_total', 'counter', [], 'Worker threads that died and were replaced.',
    fromEngine('sipedge_worker_restarts_total', [{}]))
  def('sipedge_workers_alive', 'gauge', [], 'Worker threads running (0 with workers: 0, where the primary thread runs the message handler).', () => {
    try {
      const n = src.workersAlive?.()
      return n === undefined ? [] : [{ value: n }]
    } catch {
      return []
    }
  })

  // ------------------------------------------------------------------ threads, process
  def('sipedge_thread_messages_total', 'counter', ['thread'], 'Frames handled per thread (balance of the Call-ID sharding).',
    perThread(O.threadCounters + THREAD_SLOTS.messages, true))
  def('sipedge_event_loop_lag_p99_seconds', 'gauge', ['thread'], '99th percentile of event-loop delay per thread: how late the thread served the sample request of a scrape, over the last 64 scrapes.',
    perThread(O.threadGauges + THREAD_SLOTS.lagP99, false))
  def('sipedge_event_loop_lag_max_seconds', 'gauge', ['thread'], 'Largest event-loop delay per thread: how late the thread served the sample request of a scrape, over the last 64 scrapes.',
    perThread(O.threadGauges + THREAD_SLOTS.lagMax, false))
  def('sipedge_thread_busy_seconds_total', 'counter', ['thread'], 'Time each thread\'s event loop spent busy (a per-thread CPU measure).',
    perThread(O.threadCounters + THREAD_SLOTS.busySeconds, false))
  def('sipedge_thread_heap_used_bytes', 'gauge', ['thread'], 'V8 heap used by each thread\'s isolate.',
    perThread(O.threadGauges + THREAD_SLOTS.heapUsed, false))
  def('sipedge_thread_heap_committed_bytes', 'gauge', ['thread'], 'V8 heap committed by each thread\'s isolate: the used heap plus the free pages it keeps (resident once touched), part of which a memory-reducing GC gives back.',
    perThread(O.threadGauges + THREAD_SLOTS.heapCommitted, false))
  def('sipedge_process_cpu_seconds_total', 'counter', ['mode'], 'CPU time of the whole process (all threads), user and system.', () => {
    const u = process.cpuUsage()
    return [{ labels: { mode: 'user' }, value: u.user / 1e6 }, { labels: { mode: 'system' }, value: u.system / 1e6 }]
  })
  def('sipedge_process_resident_memory_bytes', 'gauge', [], 'Resident set size of the process.', () => [{ value: process.memoryUsage.rss() }])
  def('sipedge_process_open_fds', 'gauge', [], 'Open file descriptors (sockets included); Linux only.', () => {
    try {
      return [{ value: readdirSync('/proc/self/fd').length }]
    } catch {
      return []
    }
  })
  const startTime = Math.round((Date.now() - process.uptime() * 1000) / 1000)
  def('sipedge_process_start_time_seconds', 'gauge', [], 'Start time of the process, in unix seconds.', () => [{ value: startTime }])

  // ------------------------------------------------------------------ lifecycle
  def('sipedge_config_generation', 'gauge', [], 'Generation of the configuration in force (1 at start, +1 per applied reload).', () => [{ value: configGeneration }])
  def('sipedge_config_reloads_total', 'counter', ['result'], 'Configuration reload attempts, by result (ok, error).',
    () => [{ labels: { result: 'ok' }, value: reloads.ok }, { labels: { result: 'error' }, value: reloads.error }])
  def('sipedge_config_last_reload_success_timestamp_seconds', 'gauge', [], 'Unix time of the last successful configuration load or reload.',
    () => [{ value: lastReloadOk }])
  def('sipedge_ready', 'gauge', [], '1 when the node accepts traffic (listeners up, workers running, not draining).', () => [{ value: ready }])
  const version = opts.version ?? '0.0.0'
  def('sipedge_build_info', 'gauge', ['version', 'node'], 'Always 1; labels carry the sipedge and Node.js versions.',
    () => [{ labels: { version, node: process.versions.node }, value: 1 }])
  def('sipedge_scrape_errors_total', 'counter', ['source'], 'Scrape-time sources that failed or timed out (the series they feed were left out).',
    () => [...scrapeErrors].map(([source, value]) => ({ labels: { source }, value })))

  const descriptions = Object.freeze(defs.map(d => Object.freeze({ name: d.name, type: d.type, help: d.help, labels: d.labelNames })))
  return {
    registry,
    contentType: registry.contentType,
    aggregator: agg,
    metrics: async () => {
      await call('threads', src.sampleThreads)
      return await registry.metrics()
    },
    describe: () => descriptions,
    setConfigGeneration(g: number) { configGeneration = g },
    configReloaded(ok: boolean) {
      if (ok) {
        reloads.ok++
        lastReloadOk = Date.now() / 1000
      } else {
        reloads.error++
      }
    },
    setReady(r: boolean) { ready = r ? 1 : 0 },
  }
}
