// Worker thread entry: drains the inbound ring into the message handler and gives the
// handler's frames to the outbound ring, which the primary sends out. Control messages
// (config, drain, query, trace, ...) arrive msgpackr-encoded on the MessagePort.
//
// Per message this file adds, besides the handler call: a flag test (transport-error reports go
// to handler.onTransportError, not onFrame), and what host.ts adds in any thread that runs a
// handler: a start-line classification and two float64 increments into this thread's metrics
// block (shared memory the primary reads when Prometheus scrapes), and one boolean check for SIP
// tracing. No message, string or allocation.
import { workerData, parentPort, type MessagePort } from 'node:worker_threads'
import { setImmediate as setImmediateP } from 'node:timers/promises'
import { Ring, type FrameView } from '@sipedge/ring'
import { FLAG_TRANSPORT_ERROR } from '@sipedge/frame'
import { WorkerMetrics, THREAD_SAMPLE, type WorkerMetricsData } from '@sipedge/metrics'
import { createPortLogging, Tracer, type LogLevel, type PortLogging } from '@sipedge/log'
import { pack, unpack } from 'msgpackr'
import { workerLogger } from './log.js'
import { HandlerHost } from './host.js'
import { IdleCollector, logCollection } from './idle-collect.js'
import type { CreateHandler, MessageHandler, HandlerLogger } from './types.js'

interface WorkerData extends Partial<WorkerMetricsData> {
  inbound: SharedArrayBuffer
  outbound: SharedArrayBuffer
  workerIndex: number
  config: unknown
  handlerUrl?: string
  /** Lines of this thread's loggers go here (the primary's Logging.attachPort). */
  logPort?: MessagePort
  /** SIP trace filters in force when this thread starts (a replacement keeps tracing). */
  traceFilters?: { callIds: string[]; sources: string[] }
  /** Control messages a replacement applies before its first frame (a node drain in progress). */
  controls?: Array<{ type: string; [k: string]: unknown }>
  /** The process's compaction gate (idle-collect.ts): shared by every thread's idle collector. */
  compaction?: SharedArrayBuffer
}

const BATCH = 256
const DEFAULT_BLOCK_MS = 0
const data = workerData as WorkerData
const port = parentPort!
const inbound = new Ring(data.inbound)
const outbound = new Ring(data.outbound)
// One wake-up of the primary per event-loop turn, not per frame: with the primary on the same
// CPU (pinned, or fewer cores than threads) each immediate wake-up preempted this thread.
outbound.deferNotifications(true)
let outFull = 0
let handlerErrors = 0
let lastErrorLog = 0
let draining = false

// ---------------------------------------------------------------- logging and tracing
interface LoggingConfig { level?: LogLevel; modules?: Record<string, LogLevel> }
const logCfg = (c: unknown): LoggingConfig => ((c as { logging?: LoggingConfig } | null | undefined)?.logging ?? {})
let portLogging: PortLogging | null = null
let tracer: Tracer | null = null
let log: HandlerLogger
if (data.logPort !== undefined) {
  const lc = logCfg(data.config)
  portLogging = createPortLogging(data.logPort, { level: lc.level ?? 'info', modules: lc.modules ?? {}, base: { worker: data.workerIndex } })
  const l = portLogging.logger('worker')
  // every line already carries `worker` (base field): drop a duplicate from the fields
  const fields = (f: Record<string, unknown> | undefined): Record<string, unknown> => {
    if (f === undefined) return {}
    if (!('worker' in f)) return f
    const { worker: _w, ...rest } = f
    return rest
  }
  log = {
    debug: (m, f) => l.debug(fields(f), m),
    info: (m, f) => l.info(fields(f), m),
    warn: (m, f) => l.warn(fields(f), m),
    error: (m, f) => l.error(fields(f), m),
    isLevelEnabled: level => l.isLevelEnabled(level),
  }
  tracer = new Tracer(portLogging.logger('trace'))
  if (data.traceFilters !== undefined) tracer.setFilters(data.traceFilters)
} else {
  log = workerLogger('worker', data.workerIndex)
}

// ---------------------------------------------------------------- metrics
const metrics: WorkerMetrics | null = data.metricsBuffer !== undefined && data.metricsBlock !== undefined
  ? WorkerMetrics.attach({ metricsBuffer: data.metricsBuffer, metricsBlock: data.metricsBlock })
  : null
const host = new HandlerHost(metrics, tracer, new IdleCollector({ onCollect: logCollection(log), ...(data.compaction !== undefined ? { compaction: data.compaction } : {}) }))

// ---------------------------------------------------------------- handler
const mod = await import(data.handlerUrl ?? new URL('./handler.js', import.meta.url).href) as { createHandler: CreateHandler }
const handler: MessageHandler = await mod.createHandler({
  workerIndex: data.workerIndex,
  config: data.config,
  send: host.wrapSend((meta, payload) => {
    if (outbound.tryPush(meta, payload)) return true
    outFull++ // the primary is behind: like a lost datagram, the peer retransmits
    return false
  }),
  now: () => performance.timeOrigin + performance.now(),
  log,
  inProcess: false,
  postControl(msg: { type: string; [k: string]: unknown }): void {
    port.postMessage(pack({ type: 'broadcast', from: data.workerIndex, msg }))
  },
  ...(host.handlerMetrics !== undefined ? { metrics: host.handlerMetrics } : {}),
})

if (metrics !== null) {
  // No timer: the thread's gauges and the handler's are sampled when the primary asks, i.e. when
  // Prometheus scrapes (query 'threadSample', answered below): nothing runs while idle (issue 17).
  const sampleHandler = handler.sample === undefined ? undefined : (): void => {
    try { handler.sample!(metrics) } catch (err) { log.error('metrics sample failed', { err }) }
  }
  metrics.startSampler(0, sampleHandler)
}

function handlerThrew(err: unknown): void {
  // One bad message must not take the thread (and every call on it) down.
  handlerErrors++
  const now = Date.now()
  if (now - lastErrorLog > 10_000) { lastErrorLog = now; log.error('handler threw', { err, handlerErrors }) }
}

const onFrame = (meta: FrameView, payload: Buffer): void => {
  if ((meta.flags & FLAG_TRANSPORT_ERROR) !== 0) {
    // Not a message: the primary reports that frames we sent to meta's destination were lost.
    try { handler.onTransportError?.(meta) } catch (err) { handlerThrew(err) }
    return
  }
  host.received(meta, payload)
  try {
    handler.onFrame(meta, payload)
  } catch (err) {
    handlerThrew(err)
  }
}

function reply(id: unknown, ok: boolean, payload: unknown): void {
  let bytes: Uint8Array
  try {
    bytes = pack(ok ? { type: 'reply', id, ok: true, data: payload } : { type: 'reply', id, ok: false, error: payload })
  } catch (err) {
    bytes = pack({ type: 'reply', id, ok: false, error: { code: 'ERR_QUERY_ENCODE', message: (err as Error).message } })
  }
  port.postMessage(bytes)
}

function query(id: unknown, what: string, args: unknown): void {
  new Promise<unknown>(resolve => {
    if (handler.onQuery === undefined) throw Object.assign(new Error('this handler answers no queries'), { code: 'ERR_QUERY_UNSUPPORTED' })
    resolve(handler.onQuery(what, args))
  }).then(
    v => reply(id, true, v === undefined ? null : v),
    (err: unknown) => {
      const e = err as { code?: unknown; message?: unknown } | null
      reply(id, false, { code: typeof e?.code === 'string' ? e.code : 'ERR_QUERY_FAILED', message: typeof e?.message === 'string' ? e.message : String(err) })
    },
  )
}

port.on('message', (m: Uint8Array) => {
  let msg: { type: string; [k: string]: unknown }
  try { msg = unpack(m) as typeof msg } catch { return }
  if (msg.type === 'drain') {
    draining = true
    inbound.wake()
    void finish()
  } else if (msg.type === 'stats') {
    port.postMessage(pack({ type: 'stats', workerIndex: data.workerIndex, outFull, handlerErrors }))
  } else if (msg.type === 'query' && msg['what'] === THREAD_SAMPLE) {
    // the scrape's sample request: args.at is when the primary asked (event-loop delay)
    const at = (msg['args'] as { at?: unknown } | null | undefined)?.at
    metrics?.requestSample(typeof at === 'number' ? at : performance.timeOrigin + performance.now())
    reply(msg['id'], true, null)
  } else if (msg.type === 'query') {
    query(msg['id'], String(msg['what']), msg['args'])
  } else if (msg.type === 'trace') {
    host.setTraceFilters(msg)
  } else {
    if (msg.type === 'config' && portLogging !== null) {
      const lc = logCfg(msg['config'])
      portLogging.configure(lc.level ?? 'info', lc.modules ?? {})
    }
    handler.onControl?.(msg)
  }
})

async function finish(): Promise<void> {
  while (inbound.drain(onFrame, BATCH) > 0) { /* the primary stopped producing: this ends */ }
  host.collector?.close()
  try { await handler.close?.() } catch (err) { log.error('handler close failed', { err }) }
  portLogging?.flush()
  port.postMessage(pack({ type: 'drained', outFull, handlerErrors }))
}

for (const m of data.controls ?? []) handler.onControl?.(m)
port.postMessage(pack({ type: 'ready' }))

// Fewer event-loop hops while traffic flows (issue 17): after a batch, the thread gives its event
// loop one turn (promise continuations, timers, sockets such as redis, MessagePort), then, if the
// ring is still empty, blocks in Atomics.wait for at most BLOCK_MS: a frame arriving meanwhile
// costs a futex wake instead of Atomics.waitAsync's libuv async hop and task. After BLOCK_MS of
// silence it sleeps with waitForData as before, so an idle thread costs nothing. While blocked
// the event loop waits at most BLOCK_MS; the primary wakes the ring after every message it posts.
// Off by default (SIPEDGE_WORKER_BLOCK_MS=1 turns it on): at S=1 on the 2-core build machine it
// cut the one-way p50 by ~40% but cost ~10% more CPU per request, because most 1 ms waits time
// out and a timed-out futex wait is a wake-up too (docs/performance.md, "What each change bought").
const BLOCK_MS = blockMs(process.env['SIPEDGE_WORKER_BLOCK_MS'])
function blockMs(v: string | undefined): number {
  const n = v === undefined || v === '' ? DEFAULT_BLOCK_MS : Number(v)
  return Number.isFinite(n) && n >= 0 && n <= 50 ? n : DEFAULT_BLOCK_MS
}

let busy = false
while (!draining) {
  const n = inbound.drain(onFrame, BATCH)
  if (n > 0 && metrics !== null) metrics.messages(n)
  if (n > 0) busy = BLOCK_MS > 0
  // A full batch: yield a macrotask so MessagePort messages (config, drain) get in.
  if (n >= BATCH) await setImmediateP()
  else if (draining) break
  else if (busy) {
    await setImmediateP()
    if (!inbound.hasData() && !draining) {
      const t0 = metrics !== null ? performance.now() : 0
      if (!inbound.waitSync(BLOCK_MS)) busy = false
      if (metrics !== null) metrics.blocked(performance.now() - t0) // not busy time (sipedge_thread_busy_seconds)
    }
  } else await inbound.waitForData()
}
