// The slot layout of one sipedge metrics block (one per thread: block 0 = primary, 1..N = workers).
import {
  BAN_REASONS, BUCKETS_INVITE_FINAL, BUCKETS_STORE_RTT, BUCKETS_INVITE_PROVISIONAL, BUCKETS_NON_INVITE, CODE_SLOTS, DROP_REASONS,
  KEEPALIVE_RESULTS, MAX_DESTINATIONS, METHODS, PROBE_RESULTS, RESPONSE_DIRECTIONS, TRANSACTION_EVENT_SLOTS, TRANSACTION_KINDS, TRANSPORTS,
} from './catalog.js'
import { CounterLayout } from './shared-counters.js'

/** Per-thread gauges/counters written by the thread's sampler (WorkerMetrics.startSampler). */
export const THREAD_SLOTS = Object.freeze({
  lagP99: 0, // seconds
  lagMax: 1, // seconds
  busySeconds: 2, // event-loop active time, cumulative (counter; a CPU proxy per thread)
  heapUsed: 3, // bytes, this thread's V8 isolate
  messages: 4, // frames handled (counter)
  sampledAt: 5, // unix seconds of the last sample (0 = thread never sampled: not reported)
  heapCommitted: 6, // bytes, this thread's V8 isolate: heap reserved in memory (used + free pages it keeps)
} as const)
const THREAD_GROUP_SIZE = 7

/** A histogram's slots: bucket counts (not cumulative; last = +Inf), then the sum. */
export interface HistogramSlots {
  readonly offset: number
  readonly bounds: readonly number[]
}

export const METRICS_LAYOUT = new CounterLayout({
  reqIn: { size: METHODS.length * TRANSPORTS.length, kind: 'counter' },
  reqOut: { size: METHODS.length * TRANSPORTS.length, kind: 'counter' },
  responses: { size: RESPONSE_DIRECTIONS.length * CODE_SLOTS, kind: 'counter' },
  hInviteProvisional: { size: BUCKETS_INVITE_PROVISIONAL.length + 2, kind: 'counter' },
  hInviteFinal: { size: BUCKETS_INVITE_FINAL.length + 2, kind: 'counter' },
  hNonInvite: { size: BUCKETS_NON_INVITE.length + 2, kind: 'counter' },
  transactions: { size: TRANSACTION_KINDS.length, kind: 'gauge' },
  /** The transaction layer's retransmissions, timeouts and withheld responses: TransactionEvent slots. */
  transactionEvents: { size: TRANSACTION_EVENT_SLOTS, kind: 'counter' },
  dialogs: { size: MAX_DESTINATIONS + 1, kind: 'gauge' },
  probes: { size: (MAX_DESTINATIONS + 1) * PROBE_RESULTS.length, kind: 'counter' },
  drops: { size: DROP_REASONS.length, kind: 'counter' },
  bans: { size: BAN_REASONS.length, kind: 'counter' },
  /** NAT keep-alives: transport × result (index transport * KEEPALIVE_RESULTS.length + result). */
  natKeepalives: { size: TRANSPORTS.length * KEEPALIVE_RESULTS.length, kind: 'counter' },
  /** Thread seconds spent on keep-alives, per transport. */
  natKeepaliveSeconds: { size: TRANSPORTS.length, kind: 'counter' },
  natBindingsRemoved: { size: 1, kind: 'counter' },
  /** issue 15: Redis command round trips (histogram) and failed commands, per worker. */
  hStoreRtt: { size: BUCKETS_STORE_RTT.length + 2, kind: 'counter' },
  storeErrors: { size: 1, kind: 'counter' },
  /** issue 15, written by worker 0's cluster module: CLUSTER_SLOTS. */
  cluster: { size: 2, kind: 'gauge' },
  threadCounters: { size: THREAD_GROUP_SIZE, kind: 'counter' },
  threadGauges: { size: THREAD_GROUP_SIZE, kind: 'gauge' },
})
export type MetricsGroup = keyof typeof METRICS_LAYOUT.offsets

export const HISTOGRAMS = Object.freeze({
  inviteProvisional: { offset: METRICS_LAYOUT.offsets.hInviteProvisional, bounds: BUCKETS_INVITE_PROVISIONAL } as HistogramSlots,
  inviteFinal: { offset: METRICS_LAYOUT.offsets.hInviteFinal, bounds: BUCKETS_INVITE_FINAL } as HistogramSlots,
  nonInvite: { offset: METRICS_LAYOUT.offsets.hNonInvite, bounds: BUCKETS_NON_INVITE } as HistogramSlots,
  storeRtt: { offset: METRICS_LAYOUT.offsets.hStoreRtt, bounds: BUCKETS_STORE_RTT } as HistogramSlots,
})

/** Slots of the `cluster` group (offset METRICS_LAYOUT.offsets.cluster + slot). */
export const CLUSTER_SLOTS = Object.freeze({ bindingsOwned: 0, liveNodes: 1 } as const)

/**
 * Slot numbers of the per-destination groups, derived from the dispatcher configuration in a
 * fixed order (sets in config order, destinations in set order), so the primary and every worker
 * compute the same numbering from the same config without talking. Slot 0 = no destination.
 * Destinations past MAX_DESTINATIONS share slot 0 (and are reported as set/destination "none").
 */
export class DestinationSlots {
  /** Index = slot - 1. */
  readonly list: ReadonlyArray<{ readonly set: string; readonly uri: string }>
  private readonly bySetUri: Map<string, number>

  constructor(sets: Readonly<Record<string, { readonly destinations: ReadonlyArray<{ readonly uri: string }> }>> | ReadonlyArray<{ readonly set: string; readonly uri: string }>) {
    const list: Array<{ set: string; uri: string }> = []
    if (Array.isArray(sets)) {
      for (const d of sets as ReadonlyArray<{ set: string; uri: string }>) list.push({ set: d.set, uri: d.uri })
    } else {
      const rec = sets as Readonly<Record<string, { readonly destinations: ReadonlyArray<{ readonly uri: string }> }>>
      for (const set of Object.keys(rec)) for (const d of rec[set]!.destinations) list.push({ set, uri: d.uri })
    }
    this.list = Object.freeze(list.slice(0, MAX_DESTINATIONS).map(d => Object.freeze(d)))
    this.bySetUri = new Map()
    this.list.forEach((d, i) => this.bySetUri.set(`${d.set}\n${d.uri}`, i + 1))
  }

  /** Slot of a destination (1..), or 0 if unknown. Resolve once per route decision, keep the number. */
  slot(set: string, uri: string): number {
    return this.bySetUri.get(`${set}\n${uri}`) ?? 0
  }

  labels(slot: number): { set: string; destination: string } {
    const d = slot >= 1 ? this.list[slot - 1] : undefined
    return d === undefined ? { set: 'none', destination: 'none' } : { set: d.set, destination: d.uri }
  }
}
