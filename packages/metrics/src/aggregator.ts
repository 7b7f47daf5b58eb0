// The reader side, in the primary: owns the SharedArrayBuffer, hands each worker its block, and
// sums the blocks when Prometheus scrapes. No message per SIP request, no message at all in fact:
// the workers' numbers are read in place.
import { DestinationSlots, METRICS_LAYOUT, type MetricsGroup } from './layout.js'
import { SharedCounters } from './shared-counters.js'
import { WorkerMetrics, type WorkerMetricsData } from './worker-metrics.js'

export interface AggregatorOptions {
  /** Worker threads (blocks 1..workers); block 0 is the primary's own. */
  workers: number
}

export class MetricsAggregator {
  readonly counters: SharedCounters<MetricsGroup>
  /** Worker blocks (the primary's block 0 not included). */
  readonly workers: number
  private dest: DestinationSlots = new DestinationSlots([])
  private readonly totalsBuf: Float64Array
  private totalsValid = false
  private mainWriter: WorkerMetrics | null = null

  static create(opts: AggregatorOptions): MetricsAggregator {
    return new MetricsAggregator(SharedCounters.allocate(METRICS_LAYOUT, opts.workers + 1))
  }

  constructor(buffer: SharedArrayBuffer) {
    this.counters = new SharedCounters(METRICS_LAYOUT, buffer)
    this.workers = this.counters.blocks - 1
    this.totalsBuf = new Float64Array(METRICS_LAYOUT.blockSize)
  }

  get buffer(): SharedArrayBuffer { return this.counters.buffer }

  /** Put this in worker `index`'s workerData; the worker calls WorkerMetrics.attach(workerData). */
  workerData(index: number): WorkerMetricsData {
    if (!Number.isInteger(index) || index < 0 || index >= this.workers) throw new RangeError(`worker index ${index} out of range 0..${this.workers - 1}`)
    return { metricsBuffer: this.counters.buffer, metricsBlock: index + 1 }
  }

  /** The primary's own writer (block 0): in-process handling (workers: 0), its sampler. */
  main(): WorkerMetrics {
    this.mainWriter ??= new WorkerMetrics(this.counters, 0)
    return this.mainWriter
  }

  /** Worker `index` exited: fold its counters into the retired totals, zero its block. */
  retireWorker(index: number): void {
    this.counters.retire(index + 1)
    this.totalsValid = false
  }

  /** Label values for the per-destination slots; call on start and on every config reload. */
  setDestinations(d: DestinationSlots): void { this.dest = d }
  get destinations(): DestinationSlots { return this.dest }

  /** `thread` label of a block. */
  threadLabel(block: number): string { return block === 0 ? 'main' : `worker${block - 1}` }

  /**
   * All slots summed over the blocks. Computed once per scrape: the result is cached until the
   * event loop turns, and every metric of one scrape is collected in the same turn.
   */
  totals(): Float64Array {
    if (!this.totalsValid) {
      this.counters.sumInto(this.totalsBuf)
      this.totalsValid = true
      setImmediate(() => { this.totalsValid = false })
    }
    return this.totalsBuf
  }

  /** One slot of one block (per-thread series). */
  read(block: number, slot: number): number {
    return this.counters.words[this.counters.base(block) + slot]!
  }
}
