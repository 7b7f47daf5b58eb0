// The writer side: what a worker (or the primary, for its own block) calls on the hot path.
// Every method is a few array operations on precomputed offsets: no string lookup, no
// allocation, no message. Indices come from catalog.ts (methodIndex, transportIndex, codeSlot
// happens inside response()) and DestinationSlots.
import { monitorEventLoopDelay, performance, type IntervalHistogram } from 'node:perf_hooks'
import { getHeapStatistics } from 'node:v8'
import { CODE_SLOTS, KEEPALIVE_RESULTS, PROBE_RESULTS, TRANSPORTS, codeSlot } from './catalog.js'
import { HISTOGRAMS, METRICS_LAYOUT, THREAD_SLOTS, type HistogramSlots } from './layout.js'
import { SharedCounters } from './shared-counters.js'

const O = METRICS_LAYOUT.offsets
const NT = TRANSPORTS.length
const NP = PROBE_RESULTS.length
const NK = KEEPALIVE_RESULTS.length

/** What a worker needs in workerData to write its metrics block. */
export interface WorkerMetricsData {
  readonly metricsBuffer: SharedArrayBuffer
  readonly metricsBlock: number
}

export class WorkerMetrics {
  /** This thread's block: index with METRICS_LAYOUT offsets (for slots without a helper). */
  readonly f: Float64Array
  readonly block: number
  private sampler: NodeJS.Timeout | null = null
  private lag: IntervalHistogram | null = null
  private eluBase = 0

  constructor(counters: SharedCounters, block: number) {
    this.f = counters.view(block)
    this.block = block
  }

  /** Attach in a worker thread from workerData ({ metricsBuffer, metricsBlock }). */
  static attach(data: WorkerMetricsData): WorkerMetrics {
    return new WorkerMetrics(new SharedCounters(METRICS_LAYOUT, data.metricsBuffer), data.metricsBlock)
  }

  // ---- generic: absolute slot = METRICS_LAYOUT.offsets[group] + index
  inc(slot: number, n = 1): void { this.f[slot]! += n }
  set(slot: number, v: number): void { this.f[slot] = v }

  /** Linear scan over <= 16 bounds beats a binary search at this size. */
  observe(h: HistogramSlots, seconds: number): void {
    const b = h.bounds
    let i = 0
    while (i < b.length && seconds > b[i]!) i++
    const f = this.f
    f[h.offset + i]! += 1
    f[h.offset + b.length + 1]! += seconds
  }

  // ---- SIP traffic
  /** method: methodIndex(); transport: transportIndex(). */
  requestReceived(method: number, transport: number): void { this.f[O.reqIn + method * NT + transport]! += 1 }
  requestSent(method: number, transport: number): void { this.f[O.reqOut + method * NT + transport]! += 1 }
  /** direction: ResponseDirection.*; code: the status code (100..699; anything else is ignored). */
  response(direction: number, code: number): void {
    const s = codeSlot(code)
    if (s >= 0) this.f[O.responses + direction * CODE_SLOTS + s]! += 1
  }

  // ---- transactions (durations in seconds, e.g. (performance.now() - start) / 1000)
  inviteProvisional(seconds: number): void { this.observe(HISTOGRAMS.inviteProvisional, seconds) }
  inviteFinal(seconds: number): void { this.observe(HISTOGRAMS.inviteFinal, seconds) }
  nonInviteFinal(seconds: number): void { this.observe(HISTOGRAMS.nonInvite, seconds) }
  /** kind: TransactionKind.* */
  transactionStarted(kind: number): void { this.f[O.transactions + kind]! += 1 }
  transactionEnded(kind: number): void { this.f[O.transactions + kind]! -= 1 }
  setTransactions(kind: number, n: number): void { this.f[O.transactions + kind] = n }

  // ---- dialogs and dispatcher (dest: DestinationSlots.slot(); 0 = not dispatched)
  dialogStarted(dest: number): void { this.f[O.dialogs + dest]! += 1 }
  dialogEnded(dest: number): void { this.f[O.dialogs + dest]! -= 1 }
  setDialogs(dest: number, n: number): void { this.f[O.dialogs + dest] = n }
  /** result: ProbeResult.* */
  probe(dest: number, result: number): void { this.f[O.probes + dest * NP + result]! += 1 }

  // ---- policy
  /** reason: DropReason.* */
  drop(reason: number): void { this.f[O.drops + reason]! += 1 }
  /** reason: BanReason.* */
  ban(reason: number): void { this.f[O.bans + reason]! += 1 }
  // ---- NAT keep-alives (transport: transportIndex(); result: KeepaliveResult.*)
  keepalive(transport: number, result: number, n = 1): void { this.f[O.natKeepalives + transport * NK + result]! += n }
  keepaliveSeconds(transport: number, seconds: number): void { this.f[O.natKeepaliveSeconds + transport]! += seconds }
  bindingsRemoved(n = 1): void { this.f[O.natBindingsRemoved]! += n }
  /** Absolute values, for a thread that keeps its own counters and publishes them once a second. */
  setKeepalive(transport: number, result: number, n: number): void { this.f[O.natKeepalives + transport * NK + result] = n }
  setKeepaliveSeconds(transport: number, seconds: number): void { this.f[O.natKeepaliveSeconds + transport] = seconds }
  setBindingsRemoved(n: number): void { this.f[O.natBindingsRemoved] = n }

  /** Frames handled by this thread (balance across workers). */
  messages(n = 1): void { this.f[O.threadCounters + THREAD_SLOTS.messages]! += n }

  /**
   * Samples this thread's event-loop lag (p99 and max over the interval), busy time and heap
   * every `intervalMs`, into the thread slots. The timer is unref'd: it never keeps a thread alive.
   */
  startSampler(intervalMs = 1000): this {
    if (this.sampler !== null) return this
    const h = monitorEventLoopDelay({ resolution: 10 })
    h.enable()
    this.lag = h
    this.eluBase = this.f[O.threadCounters + THREAD_SLOTS.busySeconds]! - performance.eventLoopUtilization().active / 1000
    this.sample()
    this.sampler = setInterval(() => this.sample(), intervalMs)
    this.sampler.unref()
    return this
  }

  /** Takes one sample now (also called by the sampler timer). */
  sample(): void {
    const f = this.f
    const g = O.threadGauges
    if (this.lag !== null && this.lag.count > 0) {
      f[g + THREAD_SLOTS.lagP99] = this.lag.percentile(99) / 1e9
      f[g + THREAD_SLOTS.lagMax] = this.lag.max / 1e9
      this.lag.reset()
    }
    f[O.threadCounters + THREAD_SLOTS.busySeconds] = this.eluBase + performance.eventLoopUtilization().active / 1000
    f[g + THREAD_SLOTS.heapUsed] = getHeapStatistics().used_heap_size
    f[g + THREAD_SLOTS.sampledAt] = Date.now() / 1000
  }

  stopSampler(): void {
    if (this.sampler !== null) clearInterval(this.sampler)
    this.sampler = null
    this.lag?.disable()
    this.lag = null
  }
}
