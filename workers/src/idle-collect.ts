// A garbage collection when a handler thread goes quiet after a burst (issue 17, memory).
//
// V8 collects the old generation when it fills up, not when the program stops allocating. After a
// registration storm (100,000 REGISTERs in ~25 s) the heap holds the storm's transactions until
// Timer J ends them (64·T1 = 32 s), and then their garbage: ~100 MB that no GC reclaims on a
// node that has gone quiet, because a quiet node allocates too little to trigger one (V8's own
// memory reducer runs its few GCs within seconds of the last major GC, while the transactions are
// still alive). Measured with `bench:memory`: the heap used stayed at 107 MB for 45 s at rest.
//
// IdleCollector runs one major GC (incremental, `execution: 'async'`: the thread keeps serving
// messages while V8 marks) once the thread has been quiet for `quietMs` — long enough for the
// transactions of the burst to end — and only if the heap used has grown by `growthBytes` since
// the last collection, or — after a busy window — if the heap commits `slackBytes` more than it
// uses, or if the isolate's ArrayBuffer memory has grown by `externalBytes` (off the V8 heap,
// freed only when a GC collects the objects that own it). (Not after start alone: the start
// leaves ~31 MB committed for ~14 MB used per isolate with `workers: 2`, and compacting that in
// the first minute took an idle `workers: 2` node from 0.43% to 0.95% of a core over
// `bench:idle`'s 60 s window starting 10 s after start: one run each.)
// "Quiet" is fewer than `quietMessages` messages per `windowMs` window, not
// silence: a node that probes its peers every few seconds or serves a handful of phones is quiet.
// Its cost under traffic is one counter increment per message and one timer per window; once it
// has decided for a quiet period it arms nothing until `quietMessages` more messages arrive, so an
// idle node wakes up for it at most `quietMs / windowMs` times after its last burst.
//
// The collection compacts the whole old generation (`--compact-on-every-full-gc`, set for its
// length only). A regular major GC frees the burst's objects but leaves the survivors spread over
// the pages the burst filled: measured after 100,000 REGISTERs with `workers: 2`, each worker
// kept ~31 MB committed for ~12.5 MB used, and V8's own memory reducer never ran (it judged the
// allocation rate "high" from the burst: it samples the rate at GCs, and a quiet thread runs
// none). Compacting moves the survivors together and gives the emptied pages back (the worker
// then commits ~15 MB); it costs the copy of what is alive (~12 MB: tens of ms, once per quiet
// period). V8 flags are per process: the threads share a counter (`compaction`) so the flag goes
// off when the last collection running ends.
import { setFlagsFromString, getHeapStatistics } from 'node:v8'
import { runInNewContext } from 'node:vm'
import type { HandlerLogger } from './types.js'

export interface IdleCollectOptions {
  /** Window the message rate is judged over (ms). Default 5,000. */
  windowMs?: number
  /** A window with fewer messages than this is quiet. Default 50 (10 per second). */
  quietMessages?: number
  /** Quiet time before a collection (ms): the longest non-INVITE transaction (64·T1 = 32 s) and a window. Default 40,000. */
  quietMs?: number
  /** Collect if the heap used has grown by this much since the last collection (bytes). Default 24 MiB. */
  growthBytes?: number
  /** After a busy window, collect also if the heap commits this much more than it uses (bytes): the burst's pages left half empty. Default 8 MiB. */
  slackBytes?: number
  /**
   * After a busy window, collect also if this isolate's ArrayBuffer memory (`process.memoryUsage()
   * .arrayBuffers`: Buffers, the transaction layer's parked slabs) has grown by this much since
   * the last collection (bytes). Default 24 MiB. Off-heap memory is freed only when a GC collects
   * the objects that own it: after a REGISTER burst the Completed transactions sit in parked
   * slabs (~60 MB for 100,000), which Timer J empties, and nothing on the V8 heap grew to call for
   * a GC (`bench:memory`, session 20: 94.8 MB of anonymous memory in one run at rest, 33.7 in
   * another).
   */
  externalBytes?: number
  /** Shared counter of the collections running in the process (createCompactionGate()); default: one for this thread alone. */
  compaction?: SharedArrayBuffer
  /** Called after each collection with the heap used before and after, and the heap committed before and after (bytes). */
  onCollect?: (before: number, after: number, ms: number, committedBefore: number, committedAfter: number) => void
}

/** The counter the threads of one process share so that the compaction flag goes off after the last collection. */
export function createCompactionGate(): SharedArrayBuffer {
  return new SharedArrayBuffer(4)
}

function compactOn(gate: Int32Array): void {
  Atomics.add(gate, 0, 1)
  try { setFlagsFromString('--compact-on-every-full-gc') } catch { /* a V8 without the flag: a regular GC */ }
}

function compactOff(gate: Int32Array): void {
  if (Atomics.sub(gate, 0, 1) === 1) {
    try { setFlagsFromString('--no-compact-on-every-full-gc') } catch { /* as above */ }
  }
}

type GcFn = (opts: { type: 'major'; execution: 'async' }) => Promise<void>

let gcFn: GcFn | null | undefined

/**
 * V8's `gc` for this isolate, without `--expose-gc` on the command line: the flag set at run time
 * takes effect for contexts created afterwards, so a fresh vm context has it. Null if V8 refuses.
 */
function gcFunction(): GcFn | null {
  if (gcFn !== undefined) return gcFn
  try {
    setFlagsFromString('--expose-gc')
    const f = runInNewContext('gc') as unknown
    gcFn = typeof f === 'function' ? f as GcFn : null
  } catch {
    gcFn = null
  }
  return gcFn
}

export class IdleCollector {
  readonly #windowMs: number
  readonly #quietMessages: number
  readonly #quietWindows: number
  readonly #growth: number
  readonly #slack: number
  readonly #external: number
  readonly #gate: Int32Array
  readonly #onCollect: NonNullable<IdleCollectOptions['onCollect']> | null
  readonly #gc: GcFn | null
  /** Messages seen (the per-message cost: one increment and one compare). */
  #seen = 0
  /** #seen at which a sleeping collector arms its window timer again. */
  #wakeAt = 0
  #seenAtWindow = 0
  #quietRun = 0
  /** A window with quietMessages or more messages since the last decision (a burst to clean up after). */
  #busySeen = false
  #timer: ReturnType<typeof setTimeout> | null = null
  #baseline: number
  /** ArrayBuffer bytes after the last collection (or at start), followed down. */
  #externalBaseline: number
  #collecting = false
  #closed = false
  /** Collections run (for tests and the log). */
  collections = 0

  constructor(opts: IdleCollectOptions = {}) {
    this.#windowMs = opts.windowMs ?? 5_000
    this.#quietMessages = opts.quietMessages ?? 50
    this.#quietWindows = Math.max(1, Math.ceil((opts.quietMs ?? 40_000) / this.#windowMs))
    this.#growth = opts.growthBytes ?? 24 * 1024 * 1024
    this.#slack = opts.slackBytes ?? 8 * 1024 * 1024
    this.#external = opts.externalBytes ?? 24 * 1024 * 1024
    this.#gate = new Int32Array(opts.compaction ?? createCompactionGate())
    this.#onCollect = opts.onCollect ?? null
    this.#gc = gcFunction()
    this.#baseline = getHeapStatistics().used_heap_size
    this.#externalBaseline = process.memoryUsage().arrayBuffers
  }

  /** Whether V8 gave a `gc` function (if not, the collector does nothing). */
  get available(): boolean { return this.#gc !== null }

  /** One message handled by this thread. */
  note(): void {
    if (++this.#seen >= this.#wakeAt && this.#timer === null && !this.#closed) this.#arm()
  }

  close(): void {
    this.#closed = true
    if (this.#timer !== null) { clearTimeout(this.#timer); this.#timer = null }
  }

  #arm(): void {
    if (this.#gc === null) { this.#wakeAt = Number.POSITIVE_INFINITY; return }
    this.#seenAtWindow = this.#seen
    this.#timer = setTimeout(this.#onWindow, this.#windowMs)
    this.#timer.unref()
  }

  readonly #onWindow = (): void => {
    this.#timer = null
    if (this.#closed) return
    const n = this.#seen - this.#seenAtWindow
    if (n >= this.#quietMessages) {
      // busy: V8 collects on its own; watch for the end of the burst
      this.#quietRun = 0
      this.#busySeen = true
      this.#arm()
      return
    }
    if (++this.#quietRun < this.#quietWindows) {
      this.#arm()
      return
    }
    // quiet for quietMs: decide once, then sleep until traffic returns
    this.#quietRun = 0
    this.#wakeAt = this.#seen + this.#quietMessages
    const h = getHeapStatistics()
    const used = h.used_heap_size
    const afterBurst = this.#busySeen
    this.#busySeen = false
    const external = process.memoryUsage().arrayBuffers
    const grew = used >= this.#baseline + this.#growth
    const slack = afterBurst && h.total_heap_size - used >= this.#slack
    const offHeap = afterBurst && external >= this.#externalBaseline + this.#external
    if (this.#collecting || !(grew || slack || offHeap)) {
      // the heap also shrinks on its own: follow it down so that growth is measured from there
      if (used < this.#baseline) this.#baseline = used
      if (external < this.#externalBaseline) this.#externalBaseline = external
      return
    }
    this.#collect(used, h.total_heap_size)
  }

  #collect(before: number, committedBefore: number): void {
    this.#collecting = true
    const t0 = performance.now()
    compactOn(this.#gate)
    let open = true
    const end = (): void => {
      if (open) { open = false; compactOff(this.#gate) }
      this.#collecting = false
    }
    const done = (): void => {
      end()
      this.collections++
      const h = getHeapStatistics()
      this.#baseline = h.used_heap_size
      this.#externalBaseline = process.memoryUsage().arrayBuffers
      if (this.#onCollect !== null) this.#onCollect(before, h.used_heap_size, performance.now() - t0, committedBefore, h.total_heap_size)
    }
    let p: Promise<void> | undefined
    try {
      p = this.#gc!({ type: 'major', execution: 'async' })
    } catch {
      end()
      return
    }
    if (p !== undefined && typeof p.then === 'function') p.then(done, end)
    else done()
  }
}

const MB = (b: number): number => Math.round(b / 104857.6) / 10

/** IdleCollectOptions.onCollect that writes one info line per collection to the thread's log. */
export function logCollection(log: HandlerLogger): NonNullable<IdleCollectOptions['onCollect']> {
  return (before, after, ms, committedBefore, committedAfter) => log.info('heap collected and compacted (the thread went quiet)', {
    heapUsedBeforeMB: MB(before), heapUsedAfterMB: MB(after), heapCommittedBeforeMB: MB(committedBefore), heapCommittedAfterMB: MB(committedAfter), ms: Math.round(ms),
  })
}
