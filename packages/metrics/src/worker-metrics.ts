// The writer side: what a worker (or the primary, for its own block) calls on the hot path.
// Every method is a few array operations on precomputed offsets: no string lookup, no
// allocation, no message. Indices come from catalog.ts (methodIndex, transportIndex, codeSlot
// happens inside response()) and DestinationSlots.
import { performance } from 'node:perf_hooks'
import { getHeapStatistics } from 'node:v8'
import { CODE_SLOTS, KEEPALIVE_RESULTS, PROBE_RESULTS, TRANSPORTS, codeSlot } from './catalog.js'
import { HISTOGRAMS, METRICS_LAYOUT, THREAD_SLOTS, type HistogramSlots } from './layout.js'
import { SharedCounters } from './shared-counters.js'

const O = METRICS_LAYOUT.offsets
const NT = TRANSPORTS.length
const NP = PROBE_RESULTS.length
const NK = KEEPALIVE_RESULTS.length
/** Samples the event-loop delay gauges are computed over (a power of two). */
const LAG_WINDOW = 64

/** The query a worker answers by sampling its thread gauges (the primary sends it on a scrape). */
export const THREAD_SAMPLE = 'threadSample'

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
  private started = false
  private eluBase = 0
  /** ms this thread spent blocked on purpose (Ring.waitSync) inside event-loop callbacks */
  private blockedMs = 0
  private intervalMs = 1000
  private expectedAt = 0
  private onSample: (() => void) | null = null
  /** lateness (s) of the last LAG_WINDOW sampler ticks, a ring */
  private readonly lags = new Float64Array(LAG_WINDOW)
  private lagAt = 0
  private lagN = 0
  private readonly sorted: number[] = []

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
   * No fixed background work (issue 17): the thread gauges (busy time, heap, event-loop delay)
   * and the handler's own (`onSample`) are written when someone asks, i.e. when Prometheus
   * scrapes: the primary asks every worker for a sample (`requestSample`) and reads the blocks
   * after they answer. `intervalMs` > 0 adds one unref'd timer that samples on its own, for a
   * thread nobody asks (tests, embedders); 0 (what sipedge runs) arms nothing.
   *
   * Event-loop delay is how late the thread served a sample request: the time from the request
   * (`requestedAt`, ms on the performance.timeOrigin clock) to the sample, or the lateness of the
   * timer; lagP99 and lagMax are the 99th percentile and the largest over the last LAG_WINDOW
   * samples. It replaces perf_hooks.monitorEventLoopDelay, whose 10 ms sampling timer woke every
   * thread 100 times a second whether traffic flowed or not (most of the idle cost). A blocked
   * loop still shows: the request waits as long as the loop is blocked.
   */
  startSampler(intervalMs = 0, onSample?: () => void): this {
    if (this.started) return this
    this.started = true
    this.intervalMs = intervalMs
    this.onSample = onSample ?? null
    this.eluBase = this.f[O.threadCounters + THREAD_SLOTS.busySeconds]! - performance.eventLoopUtilization().active / 1000
    this.sample()
    if (intervalMs > 0) {
      this.expectedAt = performance.now() + intervalMs
      this.sampler = setInterval(this.tick, intervalMs)
      this.sampler.unref()
    }
    return this
  }

  /**
   * A sample asked for at `requestedAt` (ms, performance.timeOrigin + performance.now() of the
   * asking thread): records the delay as event-loop delay, then samples, handler gauges included.
   */
  requestSample(requestedAt: number): void {
    const late = performance.timeOrigin + performance.now() - requestedAt
    this.recordLag(late > 0 ? late / 1000 : 0)
    this.sample()
    if (this.onSample !== null) this.onSample()
  }

  private recordLag(seconds: number): void {
    this.lags[this.lagAt++ & (LAG_WINDOW - 1)] = seconds
    if (this.lagN < LAG_WINDOW) this.lagN++
  }

  private readonly tick = (): void => {
    const now = performance.now()
    const late = Math.max(0, now - this.expectedAt)
    this.expectedAt = now + this.intervalMs
    this.recordLag(late / 1000)
    this.sample()
    if (this.onSample !== null) this.onSample()
  }

  /**
   * Time (ms) the thread spent blocked in a wait inside a callback (Ring.waitSync): the event loop
   * counts it as active, the busy-time counter must not.
   */
  blocked(ms: number): void { this.blockedMs += ms }

  /** Takes one sample now (also called by the sampler timer). */
  sample(): void {
    const f = this.f
    const g = O.threadGauges
    if (this.lagN > 0) {
      const xs = this.sorted
      xs.length = 0
      for (let i = 0; i < this.lagN; i++) xs.push(this.lags[i]!)
      xs.sort((a, b) => a - b)
      f[g + THREAD_SLOTS.lagP99] = xs[Math.min(xs.length - 1, Math.ceil(xs.length * 0.99) - 1)]!
      f[g + THREAD_SLOTS.lagMax] = xs[xs.length - 1]!
    }
    f[O.threadCounters + THREAD_SLOTS.busySeconds] = this.eluBase + (performance.eventLoopUtilization().active - this.blockedMs) / 1000
    const h = getHeapStatistics()
    f[g + THREAD_SLOTS.heapUsed] = h.used_heap_size
    f[g + THREAD_SLOTS.heapCommitted] = h.total_heap_size
    f[g + THREAD_SLOTS.sampledAt] = Date.now() / 1000
  }

  stopSampler(): void {
    if (this.sampler !== null) clearInterval(this.sampler)
    this.sampler = null
    this.started = false
  }
}
