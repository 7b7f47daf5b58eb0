// The worker pool: N worker threads, each with an inbound ring (primary -> worker) and an
// outbound ring (worker -> primary). piscina's lifecycle, not its task queue (a queue cannot pin
// a Call-ID to a thread): start, replace a worker that dies (with back-off when it dies again at
// once), ask questions (query), drain on shutdown. Frames reach a worker by `hash % N`; the
// frames it produces are drained in batches into the OutboundSink. See docs/architecture.md
// "Worker crash and replacement".
import { Worker, MessagePort, type Transferable } from 'node:worker_threads'
import { setImmediate as setImmediateP } from 'node:timers/promises'
import { Ring, type FrameHandler } from '@sipedge/ring'
import type { FrameMeta } from '@sipedge/frame'
import { pack, unpack } from 'msgpackr'
import type { Counters } from './counters.js'
import type { Logger } from './log.js'
import type { FrameTarget } from './inbound.js'
import { transportError } from './options.js'

const MAX_RESTART_DELAY_MS = 5_000
/** A worker that dies within this long of its start counts as a quick crash (back-off). */
const QUICK_CRASH_MS = 2_000
const EMPTY = new Uint8Array(0)

/** A query a worker could not answer (or did not answer in time). */
export class QueryError extends Error {
  readonly code: string
  constructor(code: string, message: string) {
    super(message)
    this.name = 'QueryError'
    this.code = code
  }
}

/** Ring statistics of one worker and direction (in: primary -> worker, out: worker -> primary). */
export interface EngineRingStat {
  worker: number
  direction: 'in' | 'out'
  used: number
  capacity: number
  /** bytes of the ring ever written (its resident memory); see Ring.stats().reach */
  reach: number
  pushed: number
  refused: number
  drained: number
  wakeups: number
}

/** Where the frames the workers produce go (the outbound path). */
export interface OutboundSink {
  /** A batch of worker `worker`'s frames begins: every frame until endBatch is from it. */
  beginBatch(worker: number): void
  /** One frame (ring views, valid only during the call). */
  readonly onRingFrame: FrameHandler
  endBatch(): void
}

export interface PoolOptions {
  size: number
  workerUrl: URL | string
  handlerUrl: URL | string
  /** Bytes per ring, each direction. */
  ringBytes: number
  /** Frames drained per batch from an outbound ring before yielding to I/O. */
  batchSize: number
  /** The configuration a worker starting now gets (replacements get the latest). */
  config: () => unknown
  sink: OutboundSink
  counters: Counters
  log: Logger
  workerEnv?: NodeJS.ProcessEnv
  workerExecArgv?: string[]
  workerData?: (index: number) => Record<string, unknown>
  onWorkerExit?: (index: number, code: number) => void
  queryTimeoutMs?: number
  /** A control message one worker posted for the others (`broadcast`), seen by the primary too (pike takes `ban`). */
  onWorkerControl?: (msg: { type?: unknown; [k: string]: unknown }) => void
  /** true once the engine stops: no replacement is started. */
  stopped: () => boolean
}

interface PendingQuery { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }

class Slot {
  readonly index: number
  worker: Worker | null = null
  inbound: Ring | null = null
  outbound: Ring | null = null
  inSab: SharedArrayBuffer | null = null
  outSab: SharedArrayBuffer | null = null
  /** Ends the outbound drain loop of the current rings (they are being replaced or the pool stops). */
  retire: (() => void) | null = null
  startedAt = 0
  restarts = 0
  /** Consecutive quick crashes, for the restart back-off. */
  quickCrashes = 0
  ready: (() => void) | null = null
  drained: (() => void) | null = null
  stopping = false
  /** Queries sent to the current worker thread and not answered yet (id -> settle). */
  readonly queries = new Map<number, PendingQuery>()
  constructor(index: number) { this.index = index }
}

export class WorkerPool implements FrameTarget {
  readonly size: number
  readonly #o: PoolOptions
  readonly #slots: Slot[] = []
  #queryId = 0

  constructor(o: PoolOptions) {
    if (!(o.size > 0)) throw transportError('ERR_TRANSPORT_OPTIONS', 'a worker pool needs at least one worker')
    this.size = o.size
    this.#o = o
  }

  /** Starts every worker; resolves when all said ready (bounded: 15 s). */
  async start(): Promise<void> {
    const ready: Promise<void>[] = []
    for (let i = 0; i < this.size; i++) {
      const slot = new Slot(i)
      this.#slots.push(slot)
      this.#allocRings(slot)
      ready.push(this.#startWorker(slot))
    }
    await withTimeout(Promise.all(ready), 15_000, 'workers did not come up within 15 s')
  }

  // ------------------------------------------------------------------------------ frames

  deliver(hash: number, meta: FrameMeta, payload: Uint8Array): boolean {
    return this.#slots[(hash >>> 0) % this.size]!.inbound!.tryPush(meta, payload)
  }

  transportError(worker: number, meta: FrameMeta): boolean {
    const ring = this.#slots[worker]?.inbound
    return ring !== undefined && ring !== null && ring.tryPush(meta, EMPTY)
  }

  // ------------------------------------------------------------------------------ control

  /** Sends a control message to every worker (msgpackr on its MessagePort). */
  broadcast(msg: unknown): void {
    const bytes = pack(msg)
    for (const slot of this.#slots) this.#post(slot, bytes)
  }

  /**
   * A message to a worker, and a wake-up on its inbound ring: a worker may be blocked in
   * Ring.waitSync (its event loop stopped for a moment) and must come back to read the message.
   */
  #post(slot: Slot, bytes: Uint8Array): void {
    const w = slot.worker
    if (w === null) return
    w.postMessage(bytes)
    slot.inbound?.wake()
  }

  /** Asks worker `index`; rejects with QueryError (ERR_QUERY_TIMEOUT, ERR_QUERY_NO_WORKER, the worker's code). */
  query(index: number, what: string, args?: unknown): Promise<unknown> {
    const slot = this.#slots[index]
    if (slot === undefined) return Promise.reject(new QueryError('ERR_QUERY_NO_WORKER', `no worker ${index}`))
    const w = slot.worker
    if (w === null || slot.ready !== null) return Promise.reject(new QueryError('ERR_QUERY_NO_WORKER', `worker ${slot.index} is not running`))
    const id = ++this.#queryId
    const ms = this.#o.queryTimeoutMs ?? 2_000
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        slot.queries.delete(id)
        reject(new QueryError('ERR_QUERY_TIMEOUT', `worker ${slot.index} did not answer "${what}" within ${ms} ms`))
      }, ms)
      slot.queries.set(id, { resolve, reject, timer })
      this.#post(slot, pack({ type: 'query', id, what, args: args ?? null }))
    })
  }

  queryAll(what: string, args?: unknown): Promise<unknown[]> {
    return Promise.all(this.#slots.map(s => this.query(s.index, what, args)))
  }

  // ------------------------------------------------------------------------------ shutdown

  /**
   * Each worker finishes its inbound ring, closes its handler and answers `drained` (bounded by
   * `timeoutMs`); then the frames they produced are handed to the sink. Rejects on timeout,
   * after sending what there is.
   */
  async drain(timeoutMs: number): Promise<void> {
    const waits = this.#slots.map(slot => new Promise<void>(resolve => {
      slot.stopping = true
      if (slot.worker === null) { resolve(); return }
      slot.drained = resolve
      this.#post(slot, pack({ type: 'drain' }))
    }))
    try {
      await withTimeout(Promise.all(waits), timeoutMs, 'workers did not drain in time')
    } finally {
      for (const slot of this.#slots) this.#drainOutbound(slot)
    }
  }

  /** Ends every drain loop and terminates every worker thread. */
  async close(): Promise<void> {
    const exits: Promise<unknown>[] = []
    for (const slot of this.#slots) {
      slot.stopping = true
      slot.retire?.()
      if (slot.worker !== null) exits.push(slot.worker.terminate())
    }
    await Promise.allSettled(exits)
  }

  // ------------------------------------------------------------------------------ observation

  /** Worker threads running (started and ready). */
  get alive(): number {
    let n = 0
    for (const s of this.#slots) if (s.worker !== null && s.ready === null) n++
    return n
  }

  ringStats(): EngineRingStat[] {
    const out: EngineRingStat[] = []
    for (const s of this.#slots) {
      for (const [direction, ring] of [['in', s.inbound], ['out', s.outbound]] as const) {
        if (ring === null) continue
        const r = ring.stats()
        out.push({ worker: s.index, direction, used: r.used, capacity: r.capacity, reach: r.reach, pushed: r.pushed, refused: r.refused, drained: r.drained, wakeups: r.wakeups })
      }
    }
    return out
  }

  workers(): Array<{ index: number; online: boolean; restarts: number; inbound: unknown; outbound: unknown }> {
    return this.#slots.map(s => ({
      index: s.index, online: s.worker !== null && s.ready === null, restarts: s.restarts,
      inbound: s.inbound?.stats(), outbound: s.outbound?.stats(),
    }))
  }

  // ------------------------------------------------------------------------------ lifecycle

  #allocRings(slot: Slot): void {
    // New rings for every worker generation: the old inbound ring may hold the very frame that
    // killed its worker, and a fresh pair keeps the SPSC invariant trivially true.
    slot.inSab = Ring.allocate(this.#o.ringBytes)
    slot.outSab = Ring.allocate(this.#o.ringBytes)
    slot.inbound = new Ring(slot.inSab)
    const out = new Ring(slot.outSab)
    slot.outbound = out
    const alive = { v: true }
    slot.retire = () => { alive.v = false; out.wake() }
    void this.#drainLoop(slot.index, out, alive)
  }

  #startWorker(slot: Slot): Promise<void> {
    const o = this.#o
    return new Promise<void>((resolve, reject) => {
      const extra = o.workerData?.(slot.index) ?? {}
      const transferList: Transferable[] = []
      for (const v of Object.values(extra)) if (v instanceof MessagePort) transferList.push(v)
      const w = new Worker(new URL(String(o.workerUrl)), {
        workerData: {
          ...extra,
          inbound: slot.inSab, outbound: slot.outSab, workerIndex: slot.index,
          config: o.config(), handlerUrl: String(o.handlerUrl),
        },
        transferList,
        env: o.workerEnv ?? process.env,
        // Workers run built JS: do not inherit loaders (--import of a TS loader under a test
        // runner costs seconds per worker).
        execArgv: o.workerExecArgv ?? [],
        name: `sipedge-worker-${slot.index}`,
      })
      slot.worker = w
      slot.startedAt = Date.now()
      slot.ready = () => { slot.ready = null; resolve() }
      w.on('message', (m: Uint8Array) => this.#onMessage(slot, m))
      w.on('error', err => {
        o.log.error('worker thread error', { worker: slot.index, err })
        if (slot.ready !== null) { slot.ready = null; reject(err) }
      })
      w.on('exit', code => this.#onExit(slot, w, code))
    })
  }

  #onMessage(slot: Slot, m: Uint8Array): void {
    let msg: { type?: string; [k: string]: unknown }
    try { msg = unpack(m) as typeof msg } catch { return }
    switch (msg.type) {
      case 'ready': slot.ready?.(); break
      case 'drained': slot.drained?.(); slot.drained = null; break
      case 'reply': {
        const q = slot.queries.get(msg['id'] as number)
        if (q === undefined) break // timed out already
        slot.queries.delete(msg['id'] as number)
        clearTimeout(q.timer)
        if (msg['ok'] === true) q.resolve(msg['data'])
        else {
          const e = (msg['error'] ?? {}) as { code?: unknown; message?: unknown }
          q.reject(new QueryError(typeof e.code === 'string' ? e.code : 'ERR_QUERY_FAILED', typeof e.message === 'string' ? e.message : 'query failed'))
        }
        break
      }
      case 'broadcast': {
        // One worker's news for all the others (e.g. a dispatcher probe verdict): relay as is.
        const inner = msg['msg']
        if (inner === null || typeof inner !== 'object') break
        try { this.#o.onWorkerControl?.(inner as { type?: unknown }) } catch (err) { this.#o.log.error('worker control message failed', { err }) }
        const bytes = pack(inner)
        for (const other of this.#slots) if (other !== slot) this.#post(other, bytes)
        break
      }
      default: this.#o.log.debug('worker message', { worker: slot.index, type: msg.type })
    }
  }

  #onExit(slot: Slot, w: Worker, code: number): void {
    if (slot.worker !== w) return
    const o = this.#o
    slot.worker = null
    for (const [id, q] of slot.queries) {
      clearTimeout(q.timer)
      slot.queries.delete(id)
      q.reject(new QueryError('ERR_QUERY_NO_WORKER', `worker ${slot.index} exited`))
    }
    try { o.onWorkerExit?.(slot.index, code) } catch (err) { o.log.error('onWorkerExit failed', { worker: slot.index, err }) }
    if (slot.stopping || o.stopped()) { slot.drained?.(); slot.drained = null; return }
    // A crash: responses already pushed are still good; what the worker had not drained is lost.
    o.counters.workerCrashes++
    this.#drainOutbound(slot)
    const lost = lostInFlight(slot.inbound!)
    o.counters.workerLostInFlight += lost
    slot.retire?.()
    const quick = Date.now() - slot.startedAt < QUICK_CRASH_MS
    slot.quickCrashes = quick ? slot.quickCrashes + 1 : 0
    const delay = restartDelay(slot.quickCrashes)
    slot.restarts++
    o.log.error('worker exited unexpectedly; replacing it (sockets stay open)', {
      worker: slot.index, exitCode: code, lostInFlight: lost, restarts: slot.restarts, restartDelayMs: delay,
    })
    // The primary keeps queueing into the new rings while the replacement boots.
    this.#allocRings(slot)
    const start = (): void => {
      if (slot.stopping || o.stopped()) return
      this.#startWorker(slot).then(
        () => o.log.info('worker replaced', { worker: slot.index, restarts: slot.restarts }),
        err => o.log.error('replacement worker failed to start', { worker: slot.index, err }),
      )
    }
    if (delay === 0) start()
    else setTimeout(start, delay).unref()
  }

  // ------------------------------------------------------------------------------ outbound rings

  /** The primary's wait on one outbound ring (Atomics.waitAsync inside Ring.waitForData). */
  async #drainLoop(index: number, ring: Ring, alive: { v: boolean }): Promise<void> {
    const batch = this.#o.batchSize
    while (alive.v) {
      const n = this.#drainOnce(index, ring)
      if (n >= batch) { await setImmediateP(); continue } // let sockets breathe between full batches
      if (!alive.v) break
      await ring.waitForData()
    }
  }

  #drainOnce(index: number, ring: Ring): number {
    const sink = this.#o.sink
    sink.beginBatch(index)
    try {
      return ring.drain(sink.onRingFrame, this.#o.batchSize)
    } finally {
      sink.endBatch()
    }
  }

  #drainOutbound(slot: Slot): void {
    if (slot.outbound === null) return
    while (this.#drainOnce(slot.index, slot.outbound) >= this.#o.batchSize) { /* until empty */ }
  }
}

/** 0 for a first crash; then 100 ms, 200 ms, ... up to 5 s for crashes right after a start. */
export function restartDelay(quickCrashes: number): number {
  return quickCrashes === 0 ? 0 : Math.min(MAX_RESTART_DELAY_MS, 100 * 2 ** (quickCrashes - 1))
}

/** Frames the primary pushed into a ring that its (dead) consumer never took. */
function lostInFlight(ring: Ring): number {
  const s = ring.stats()
  return Math.max(0, s.pushed - s.drained)
}

export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<T>((_, reject) => { t = setTimeout(() => reject(transportError('ERR_TRANSPORT_TIMEOUT', what)), ms) }),
  ])
}
