// The primary side of sipedge: owns every socket, the connection table and the worker threads.
//
//   socket -> find Call-ID bytes, hash -> inbound ring[hash % N] -> worker -> outbound ring[i]
//   -> primary drains in batches -> dgram.send / socket.write (corked per batch) / ws.send
//
// The primary never parses a message it hands on; it parses only to answer 400 (stream message
// without Call-ID) and 503 (full ring). `workers: 0` runs the same handler module in-process,
// without rings, for side-by-side benchmarks. See docs/architecture.md "How a message flows".
import { createSocket, type Socket as UdpSocket, type RemoteInfo } from 'node:dgram'
import { createServer as createTcpServer, connect as tcpConnect, isIPv6, isIP, type Server as NetServer, type Socket } from 'node:net'
import { createServer as createTlsServer, connect as tlsConnect, type Server as TlsServer, type TLSSocket } from 'node:tls'
import { Worker, MessagePort, type Transferable } from 'node:worker_threads'
import { availableParallelism } from 'node:os'
import { readFileSync } from 'node:fs'
import { setImmediate as setImmediateP, setTimeout as sleep } from 'node:timers/promises'
import { Ring } from '@sipedge/ring'
import { pack, unpack } from 'msgpackr'
import { Counters } from './counters.js'
import { ConnectionTable, StreamConn, type WsConnectionLike } from './connections.js'
import { createLogger, RateLimitedLog, type Logger } from './log.js'
import { TlsContextSet, type TlsOptions } from './tls-contexts.js'
import { callIdHash, callIdHashOf, StreamFramer, KEEPALIVE_PING, KEEPALIVE_PONG, SipParseError, answerFor } from './sip-glue.js'
import { UDP, TCP, TLS, WS, WSS, KIND_BY_NAME, NAME_BY_KIND, FLAG_CLOSE_AFTER_SEND, FLAG_OPEN_CONNECTION, type FrameMeta, type TransportName } from './kinds.js'

export interface ListenerOptions {
  transport: TransportName
  /** IPv4 or IPv6 literal: `0.0.0.0`, `::`, `127.0.0.1`, `::1`. */
  address: string
  /** 0 = any free port (tests); see Engine.listeners for the port bound. */
  port: number
  /** Required for tls and wss. */
  tls?: TlsOptions
}

export interface EngineLimits {
  /** TCP + TLS + WS/WSS connections, accepted and opened; more are refused (counter connRefused). */
  maxConnections: number
  /** A stream connection with no traffic either way for this long is closed (connIdleClosed). */
  idleTimeoutMs: number
  /** Largest SIP message accepted, any transport (udpOversize, connOversize). */
  maxMessageSize: number
  /** An incomplete stream message must complete within this time (connPartialTimeout). */
  partialMessageTimeoutMs: number
}

/** What a handler module gets (mirrors @sipedge/workers HandlerContext; transport never imports workers). */
export interface HandlerContext {
  workerIndex: number
  config: unknown
  send(meta: FrameMeta, payload: Uint8Array | readonly Uint8Array[]): boolean
  now(): number
  log: Logger
  inProcess: boolean
}
export interface MessageHandler {
  onFrame(meta: FrameMeta, payload: Uint8Array): void
  onControl?(msg: unknown): void
  /** Request/response control (`engine.query`): stats, dispatcher, dialogs, dialog, transactions. */
  onQuery?(what: string, args: unknown): unknown
  close?(): Promise<void> | void
}

/** Ring statistics of one worker and direction (in: primary -> worker, out: worker -> primary). */
export interface EngineRingStat {
  worker: number
  direction: 'in' | 'out'
  used: number
  capacity: number
  pushed: number
  refused: number
  drained: number
  wakeups: number
}

/** A query a worker could not answer (or did not answer in time). */
export class QueryError extends Error {
  readonly code: string
  constructor(code: string, message: string) {
    super(message)
    this.name = 'QueryError'
    this.code = code
  }
}

export interface EngineOptions {
  listeners: ListenerOptions[]
  /** Worker threads; default: number of cores. 0 = run the handler in-process (no rings). */
  workers?: number
  /** Worker thread entry (e.g. import.meta.resolve('@sipedge/workers/worker')); required when workers > 0. */
  workerUrl?: URL | string
  /** Module exporting `createHandler(ctx)`; loaded in-process for workers: 0 and handed to each worker. */
  handlerUrl: URL | string
  /** Configuration handed to the handler(s): structured-clone- and msgpackr-encodable. */
  config?: unknown
  /** Bytes per ring, each direction, per worker (default 4 MiB). */
  ringBytes?: number
  limits?: Partial<EngineLimits>
  /** Bound on the SIGTERM drain (default 5000 ms). */
  shutdownTimeoutMs?: number
  /** Outbound TLS connections (opened for FLAG_OPEN_CONNECTION frames). */
  outboundTls?: { rejectUnauthorized?: boolean; ca?: string }
  /** Frames drained per batch from an outbound ring before yielding to I/O (default 256). */
  batchSize?: number
  logger?: Logger
  /** Environment for worker threads (default: process.env). */
  workerEnv?: NodeJS.ProcessEnv
  /** Node options for worker threads (default: none; the process's --import loaders are not inherited). */
  workerExecArgv?: string[]
  /**
   * Extra workerData for worker `index`, merged into what the engine puts there. Called for every
   * worker thread started, replacements included. MessagePort values are transferred.
   */
  workerData?: (index: number) => Record<string, unknown>
  /** A worker thread has exited (crash or stop), before any replacement starts. */
  onWorkerExit?: (index: number, code: number) => void
  /** Bound on engine.query answers (default 2000 ms). */
  queryTimeoutMs?: number
}

export interface ListenerInfo { transport: TransportName; address: string; port: number; socketId: number }

export const DEFAULT_LIMITS: Readonly<EngineLimits> = {
  maxConnections: 10_000,
  idleTimeoutMs: 3_600_000,
  maxMessageSize: 65_535,
  partialMessageTimeoutMs: 10_000,
}

const CRLF = Buffer.from('\r\n')
const MAX_RESTART_DELAY_MS = 5_000

interface WsListener { close(): void; port: number }
interface WsModule {
  startWsListener(opts: {
    proto: 'ws' | 'wss'; address: string; port: number; tls?: { cert: string; key: string }
    maxMessageSize: number; idleTimeoutMs: number
    sink: { onOpen(conn: WsConnectionLike): number; onMessage(connId: number, data: Buffer): void; onClose(connId: number): void }
  }): Promise<WsListener>
}

class WorkerSlot {
  readonly index: number
  worker: Worker | null = null
  inbound: Ring | null = null
  outbound: Ring | null = null
  inSab: SharedArrayBuffer | null = null
  outSab: SharedArrayBuffer | null = null
  /** Ends the outbound drain loop of the current rings (they are being replaced or the engine stops). */
  retire: (() => void) | null = null
  startedAt = 0
  restarts = 0
  /** Consecutive quick crashes, for the restart back-off. */
  quickCrashes = 0
  ready: (() => void) | null = null
  drained: (() => void) | null = null
  stopping = false
  /** Queries sent to the current worker thread and not answered yet (id -> settle). */
  readonly queries = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>()
  constructor(index: number) { this.index = index }
}

function isKeepaliveDatagram(b: Buffer): boolean {
  // RFC 5626 §3.5.1 / common practice: a bare CRLF (or CRLFCRLF) datagram keeps a NAT binding open.
  if (b.length > 4) return false
  for (let i = 0; i < b.length; i++) if (b[i] !== 13 && b[i] !== 10 && b[i] !== 0) return false
  return true
}

export class Engine {
  readonly counters = new Counters()
  readonly table = new ConnectionTable()
  readonly limits: EngineLimits
  readonly log: Logger
  readonly #opts: EngineOptions
  readonly #nWorkers: number
  readonly #batch: number
  readonly #ringBytes: number
  #config: unknown
  #state: 'new' | 'starting' | 'running' | 'draining' | 'stopped' = 'new'
  #draining = false
  readonly #udp: (UdpSocket | null)[] = []
  readonly #udpByFamily: { 4: UdpSocket | null; 6: UdpSocket | null } = { 4: null, 6: null }
  readonly #udpFamily: number[] = []
  readonly #servers: (NetServer | TlsServer | null)[] = []
  readonly #ws: (WsListener | null)[] = []
  readonly #tlsSets: TlsContextSet[] = []
  readonly #listenerInfo: ListenerInfo[] = []
  readonly #slots: WorkerSlot[] = []
  #inproc: MessageHandler | null = null
  #queryId = 0
  readonly #scratch: FrameMeta = { transport: 0, socketId: 0, connId: 0, family: 4, address: '', port: 0, recvTime: 0, flags: 0 }
  readonly #partial = new Set<StreamConn>()
  #partialTimer: NodeJS.Timeout | null = null
  readonly #corked: StreamConn[] = []
  #batching = false
  #udpPending = 0
  readonly #onUdpSent: (err: Error | null) => void
  readonly #onOutFrame: (meta: FrameMeta, payload: Uint8Array) => void
  readonly #rl: { refused: RateLimitedLog; idle: RateLimitedLog; partial: RateLimitedLog; oversize: RateLimitedLog; bad: RateLimitedLog; ringFull: RateLimitedLog; noCallId: RateLimitedLog; sock: RateLimitedLog; tls: RateLimitedLog; connect: RateLimitedLog; handler: RateLimitedLog }

  constructor(opts: EngineOptions) {
    this.#opts = opts
    this.log = opts.logger ?? createLogger({ module: 'engine' })
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits }
    this.#nWorkers = opts.workers ?? availableParallelism()
    this.#batch = opts.batchSize ?? 256
    this.#ringBytes = opts.ringBytes ?? 4 * 1024 * 1024
    this.#config = opts.config
    if (this.#nWorkers > 0 && this.limits.maxMessageSize > Ring.maxPayloadFor(this.#ringBytes) / 4)
      throw Object.assign(new Error(`ringBytes ${this.#ringBytes} too small for maxMessageSize ${this.limits.maxMessageSize}`), { code: 'ERR_TRANSPORT_OPTIONS' })
    if (this.#nWorkers > 0 && opts.workerUrl === undefined)
      throw Object.assign(new Error('EngineOptions.workerUrl is required when workers > 0'), { code: 'ERR_TRANSPORT_OPTIONS' })
    const log = this.log
    this.#rl = {
      refused: new RateLimitedLog(log, 'warn'), idle: new RateLimitedLog(log, 'info'), partial: new RateLimitedLog(log, 'warn'),
      oversize: new RateLimitedLog(log, 'warn'), bad: new RateLimitedLog(log, 'warn'), ringFull: new RateLimitedLog(log, 'warn'),
      noCallId: new RateLimitedLog(log, 'warn'), sock: new RateLimitedLog(log, 'info'), tls: new RateLimitedLog(log, 'info'),
      connect: new RateLimitedLog(log, 'warn'), handler: new RateLimitedLog(log, 'error'),
    }
    this.#onUdpSent = (err) => {
      this.#udpPending--
      if (err !== null) { this.counters.udpSendErrors++; this.#rl.sock.hit('UDP send failed', { err }) }
    }
    this.#onOutFrame = (meta, payload) => { this.#send(meta, payload, true) }
  }

  get listeners(): readonly ListenerInfo[] { return this.#listenerInfo }
  get workerCount(): number { return this.#nWorkers }
  get state(): string { return this.#state }

  // ------------------------------------------------------------------------------ lifecycle

  /** Starts workers (or the in-process handler), then every listener; resolves when all are up. */
  async start(): Promise<void> {
    if (this.#state !== 'new') throw Object.assign(new Error('engine already started'), { code: 'ERR_TRANSPORT_STATE' })
    this.#state = 'starting'
    try {
      if (this.#nWorkers === 0) {
        const mod = await import(String(this.#opts.handlerUrl)) as { createHandler(ctx: HandlerContext): MessageHandler | Promise<MessageHandler> }
        this.#inproc = await mod.createHandler({
          workerIndex: 0,
          config: this.#config,
          send: (meta, payload) => this.#send(meta, payload, false),
          now: () => performance.timeOrigin + performance.now(),
          log: this.log.child('handler'),
          inProcess: true,
        })
      } else {
        const ready: Promise<void>[] = []
        for (let i = 0; i < this.#nWorkers; i++) {
          const slot = new WorkerSlot(i)
          this.#slots.push(slot)
          this.#allocRings(slot)
          ready.push(this.#startWorker(slot))
        }
        await withTimeout(Promise.all(ready), 15_000, 'workers did not come up within 15 s')
      }
      for (let i = 0; i < this.#opts.listeners.length; i++) await this.#listen(i, this.#opts.listeners[i]!)
    } catch (err) {
      await this.#teardown()
      this.#state = 'stopped'
      throw err
    }
    this.#state = 'running'
    this.log.info('engine started', {
      workers: this.#nWorkers,
      listeners: this.#listenerInfo.map(l => `${l.transport}:${l.address.includes(':') ? `[${l.address}]` : l.address}:${l.port}`),
    })
  }

  /**
   * Graceful stop: stop accepting connections and reading new messages, let the workers finish
   * what is in their rings, send what they answered, close connections; bounded by
   * shutdownTimeoutMs, after which everything is closed hard.
   */
  async stop(): Promise<void> {
    if (this.#state === 'stopped' || this.#state === 'draining') return
    this.#state = 'draining'
    this.#draining = true
    const t0 = Date.now()
    const deadline = t0 + (this.#opts.shutdownTimeoutMs ?? 5_000)
    this.log.info('draining: no new connections or messages', { connections: this.table.size, timeoutMs: deadline - t0 })
    // TCP/TLS listening sockets close now. The WS listener stays up until the end (its close()
    // drops every WS connection at once); meanwhile new WS handshakes are refused in onOpen.
    for (const s of this.#servers) s?.close()
    for (const t of this.#tlsSets) t.close()

    // Workers: finish the inbound rings, close the handler, answer "drained".
    if (this.#inproc !== null) {
      try { await withTimeout(Promise.resolve(this.#inproc.close?.()), remaining(deadline), 'handler close timed out') } catch (err) { this.log.warn('handler did not close in time', { err }) }
    } else {
      const waits = this.#slots.map(slot => new Promise<void>(resolve => {
        slot.stopping = true
        if (slot.worker === null) { resolve(); return }
        slot.drained = resolve
        slot.worker.postMessage(pack({ type: 'drain' }))
      }))
      try { await withTimeout(Promise.all(waits), remaining(deadline), 'workers did not drain in time') } catch (err) { this.log.warn('drain timed out; what is still in the rings is lost', { err }) }
      // Last responses the workers pushed.
      for (const slot of this.#slots) this.#drainOutbound(slot)
    }

    // Stream connections: flush and half-close; wait for them to go, bounded.
    for (const c of this.table.values()) this.#endConn(c)
    while (this.table.size > 0 && Date.now() < deadline) await sleep(20)
    while (this.#udpPending > 0 && Date.now() < deadline) await sleep(5)
    const left = this.table.size
    await this.#teardown()
    this.#state = 'stopped'
    this.log.info('stopped', { ms: Date.now() - t0, forciblyClosed: left })
  }

  async #teardown(): Promise<void> {
    this.#draining = true
    if (this.#partialTimer !== null) { clearInterval(this.#partialTimer); this.#partialTimer = null }
    for (const c of [...this.table.values()]) this.#destroyConn(c)
    for (const s of this.#servers) s?.close()
    for (const w of this.#ws) { try { w?.close() } catch { /* already closed */ } }
    for (const t of this.#tlsSets) t.close()
    for (const u of this.#udp) { try { u?.close() } catch { /* already closed */ } }
    const exits: Promise<unknown>[] = []
    for (const slot of this.#slots) {
      slot.stopping = true
      slot.retire?.()
      if (slot.worker !== null) exits.push(slot.worker.terminate())
    }
    await Promise.allSettled(exits)
  }

  /** New configuration for the handlers (SIGHUP); `generation` travels with it. Kept for workers started later. */
  updateConfig(config: unknown, generation?: number): void {
    this.#config = config
    const msg = generation === undefined ? { type: 'config', config } : { type: 'config', config, generation }
    if (this.#inproc !== null) this.#inproc.onControl?.(msg)
    const bytes = pack(msg)
    for (const slot of this.#slots) slot.worker?.postMessage(bytes)
  }

  /** Sends any control message to every handler (msgpackr on the worker MessagePort). */
  control(msg: unknown): void {
    if (this.#inproc !== null) this.#inproc.onControl?.(msg)
    const bytes = pack(msg)
    for (const slot of this.#slots) slot.worker?.postMessage(bytes)
  }

  /**
   * Asks one worker (`index`) or every worker (`'all'`, answers in worker order) a question
   * (docs/contracts.md "Control messages": `{ type: 'query', id, what, args }`), answered by the
   * handler's onQuery. Rejects with QueryError: ERR_QUERY_TIMEOUT (no answer within
   * queryTimeoutMs), ERR_QUERY_NO_WORKER (not running), or the worker's own {code, message}.
   * Control traffic only: never per SIP message.
   */
  query(target: number, what: string, args?: unknown): Promise<unknown>
  query(target: 'all', what: string, args?: unknown): Promise<unknown[]>
  query(target: number | 'all', what: string, args?: unknown): Promise<unknown> {
    if (target === 'all') {
      if (this.#inproc !== null) return this.#queryInproc(what, args).then(v => [v])
      return Promise.all(this.#slots.map(s => this.#querySlot(s, what, args)))
    }
    if (this.#inproc !== null) return this.#queryInproc(what, args)
    const slot = this.#slots[target]
    if (slot === undefined) return Promise.reject(new QueryError('ERR_QUERY_NO_WORKER', `no worker ${target}`))
    return this.#querySlot(slot, what, args)
  }

  /** The worker that handles a Call-ID (the same hash % N as the inbound sharding). */
  workerForCallId(callId: string): number {
    return this.#nWorkers === 0 ? 0 : (callIdHashOf(callId) >>> 0) % this.#nWorkers
  }

  async #queryInproc(what: string, args: unknown): Promise<unknown> {
    const h = this.#inproc!
    if (h.onQuery === undefined) throw new QueryError('ERR_QUERY_UNSUPPORTED', 'the handler answers no queries')
    return await h.onQuery(what, args)
  }

  #querySlot(slot: WorkerSlot, what: string, args: unknown): Promise<unknown> {
    const w = slot.worker
    if (w === null || slot.ready !== null) return Promise.reject(new QueryError('ERR_QUERY_NO_WORKER', `worker ${slot.index} is not running`))
    const id = ++this.#queryId
    const ms = this.#opts.queryTimeoutMs ?? 2_000
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        slot.queries.delete(id)
        reject(new QueryError('ERR_QUERY_TIMEOUT', `worker ${slot.index} did not answer "${what}" within ${ms} ms`))
      }, ms)
      slot.queries.set(id, { resolve, reject, timer })
      w.postMessage(pack({ type: 'query', id, what, args: args ?? null }))
    })
  }

  #failQueries(slot: WorkerSlot, why: string): void {
    for (const [id, q] of slot.queries) {
      clearTimeout(q.timer)
      slot.queries.delete(id)
      q.reject(new QueryError('ERR_QUERY_NO_WORKER', `worker ${slot.index} ${why}`))
    }
  }

  /** Ring.stats() of every worker's inbound and outbound ring. */
  ringStats(): EngineRingStat[] {
    const out: EngineRingStat[] = []
    for (const s of this.#slots) {
      for (const [direction, ring] of [['in', s.inbound], ['out', s.outbound]] as const) {
        if (ring === null) continue
        const r = ring.stats()
        out.push({ worker: s.index, direction, used: r.used, capacity: r.capacity, pushed: r.pushed, refused: r.refused, drained: r.drained, wakeups: r.wakeups })
      }
    }
    return out
  }

  /** Open stream connections by transport name (udp: 0). Walks the table: scrape time only. */
  connectionsByTransport(): Record<TransportName, number> {
    const out: Record<TransportName, number> = { udp: 0, tcp: 0, tls: 0, ws: 0, wss: 0 }
    for (const c of this.table.values()) {
      const n = NAME_BY_KIND[c.kind]
      if (n !== undefined && n !== '') out[n]++
    }
    return out
  }

  /** Worker threads running (started and ready); 1 in-process once started. */
  get workersAlive(): number {
    if (this.#inproc !== null) return 1
    let n = 0
    for (const s of this.#slots) if (s.worker !== null && s.ready === null) n++
    return n
  }

  /** Re-reads every TLS certificate file (SIGHUP); false when any set failed (old kept). */
  reloadTls(): boolean {
    let ok = true
    for (const t of this.#tlsSets) ok = t.reload() && ok
    return ok
  }

  stats(): { counters: Counters; connections: number; workers: Array<{ index: number; online: boolean; restarts: number; inbound: unknown; outbound: unknown }> } {
    return {
      counters: { ...this.counters },
      connections: this.table.size,
      workers: this.#slots.map(s => ({
        index: s.index, online: s.worker !== null && s.ready === null, restarts: s.restarts,
        inbound: s.inbound?.stats(), outbound: s.outbound?.stats(),
      })),
    }
  }

  // ------------------------------------------------------------------------------ workers

  #allocRings(slot: WorkerSlot): void {
    // New rings for every worker generation: the old inbound ring may hold the very frame that
    // killed its worker, and a fresh pair keeps the SPSC invariant trivially true.
    slot.inSab = Ring.allocate(this.#ringBytes)
    slot.outSab = Ring.allocate(this.#ringBytes)
    slot.inbound = new Ring(slot.inSab)
    const out = new Ring(slot.outSab)
    slot.outbound = out
    const alive = { v: true }
    slot.retire = () => { alive.v = false; out.wake() }
    void this.#drainLoop(out, alive)
  }

  #startWorker(slot: WorkerSlot): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const extra = this.#opts.workerData?.(slot.index) ?? {}
      const transferList: Transferable[] = []
      for (const v of Object.values(extra)) if (v instanceof MessagePort) transferList.push(v)
      const w = new Worker(new URL(String(this.#opts.workerUrl)), {
        workerData: {
          ...extra,
          inbound: slot.inSab, outbound: slot.outSab, workerIndex: slot.index,
          config: this.#config, handlerUrl: String(this.#opts.handlerUrl),
        },
        transferList,
        env: this.#opts.workerEnv ?? process.env,
        // Workers run built JS: do not inherit loaders (--import of a TS loader under a test
        // runner costs seconds per worker).
        execArgv: this.#opts.workerExecArgv ?? [],
        name: `sipedge-worker-${slot.index}`,
      })
      slot.worker = w
      slot.startedAt = Date.now()
      slot.ready = () => { slot.ready = null; resolve() }
      w.on('message', (m: Uint8Array) => this.#onWorkerMessage(slot, m))
      w.on('error', err => {
        this.log.error('worker thread error', { worker: slot.index, err })
        if (slot.ready !== null) { slot.ready = null; reject(err) }
      })
      w.on('exit', code => this.#onWorkerExit(slot, w, code))
    })
  }

  #onWorkerMessage(slot: WorkerSlot, m: Uint8Array): void {
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
        const bytes = pack(inner)
        for (const other of this.#slots) if (other !== slot) other.worker?.postMessage(bytes)
        break
      }
      default: this.log.debug('worker message', { worker: slot.index, type: msg.type })
    }
  }

  #onWorkerExit(slot: WorkerSlot, w: Worker, code: number): void {
    if (slot.worker !== w) return
    slot.worker = null
    this.#failQueries(slot, 'exited')
    try { this.#opts.onWorkerExit?.(slot.index, code) } catch (err) { this.log.error('onWorkerExit failed', { worker: slot.index, err }) }
    if (slot.stopping || this.#state === 'stopped') { slot.drained?.(); slot.drained = null; return }
    // A crash: responses already pushed are still good; what the worker had not drained is lost.
    this.counters.workerCrashes++
    this.#drainOutbound(slot)
    const lost = lostInFlight(slot.inbound!)
    this.counters.workerLostInFlight += lost
    slot.retire?.()
    const quick = Date.now() - slot.startedAt < 2_000
    slot.quickCrashes = quick ? slot.quickCrashes + 1 : 0
    const delay = slot.quickCrashes === 0 ? 0 : Math.min(MAX_RESTART_DELAY_MS, 100 * 2 ** (slot.quickCrashes - 1))
    slot.restarts++
    this.log.error('worker exited unexpectedly; replacing it (sockets stay open)', {
      worker: slot.index, exitCode: code, lostInFlight: lost, restarts: slot.restarts, restartDelayMs: delay,
    })
    // The primary keeps queueing into the new rings while the replacement boots.
    this.#allocRings(slot)
    const start = (): void => {
      if (slot.stopping || this.#state === 'stopped') return
      this.#startWorker(slot).then(
        () => this.log.info('worker replaced', { worker: slot.index, restarts: slot.restarts }),
        err => this.log.error('replacement worker failed to start', { worker: slot.index, err }),
      )
    }
    if (delay === 0) start()
    else setTimeout(start, delay).unref()
  }

  /** The primary's wait on one outbound ring (Atomics.waitAsync inside Ring.waitForData). */
  async #drainLoop(ring: Ring, alive: { v: boolean }): Promise<void> {
    while (alive.v) {
      const n = this.#drainOnce(ring)
      if (n >= this.#batch) { await setImmediateP(); continue } // let sockets breathe between full batches
      if (!alive.v) break
      await ring.waitForData()
    }
  }

  #drainOnce(ring: Ring): number {
    this.#batching = true
    let n = 0
    try {
      n = ring.drain(this.#onOutFrame as never, this.#batch)
    } finally {
      this.#batching = false
      this.#uncorkAll()
    }
    return n
  }

  #drainOutbound(slot: WorkerSlot): void {
    if (slot.outbound === null) return
    while (this.#drainOnce(slot.outbound) >= this.#batch) { /* until empty */ }
  }

  // ------------------------------------------------------------------------------ listeners

  async #listen(socketId: number, l: ListenerOptions): Promise<void> {
    const kind = KIND_BY_NAME[l.transport]
    if (kind === undefined) throw Object.assign(new Error(`unknown transport ${String(l.transport)}`), { code: 'ERR_TRANSPORT_OPTIONS' })
    this.#udp[socketId] = null
    this.#servers[socketId] = null
    this.#ws[socketId] = null
    let port: number
    if (kind === UDP) {
      const v6 = isIPv6(l.address)
      const sock = createSocket({ type: v6 ? 'udp6' : 'udp4' })
      await new Promise<void>((resolve, reject) => {
        sock.once('error', reject)
        sock.bind({ address: l.address, port: l.port, exclusive: true }, () => { sock.off('error', reject); resolve() })
      })
      try { sock.setRecvBufferSize(4 * 1024 * 1024); sock.setSendBufferSize(4 * 1024 * 1024) } catch { /* capped by net.core.rmem_max */ }
      sock.on('error', err => this.#rl.sock.hit('UDP socket error', { err, socketId }))
      sock.on('message', (msg, rinfo) => this.#onUdp(socketId, msg, rinfo))
      this.#udp[socketId] = sock
      const fam = v6 ? 6 : 4
      this.#udpFamily[socketId] = fam
      if (this.#udpByFamily[fam] === null) this.#udpByFamily[fam] = sock
      port = sock.address().port
    } else if (kind === TCP || kind === TLS) {
      let server: NetServer | TlsServer
      if (kind === TCP) {
        server = createTcpServer({ noDelay: true })
        server.on('connection', (s: Socket) => this.#accept(s, TCP, socketId))
      } else {
        if (l.tls === undefined) throw Object.assign(new Error('tls listener without tls options'), { code: 'ERR_TRANSPORT_OPTIONS' })
        const set = new TlsContextSet(l.tls, this.log.child('tls'))
        set.onReload = ok => { if (ok) this.counters.tlsReloads++; else this.counters.tlsReloadErrors++ }
        this.#tlsSets.push(set)
        const tserver = createTlsServer({ ...set.serverOptions(), handshakeTimeout: Math.min(10_000, this.limits.partialMessageTimeoutMs) })
        set.attach(tserver)
        set.watch()
        // Refuse over the limit before paying for a handshake.
        tserver.on('connection', (raw: Socket) => {
          if (this.#draining || this.table.size >= this.limits.maxConnections) this.#refuse(raw, TLS)
        })
        tserver.on('secureConnection', (s: TLSSocket) => this.#accept(s, TLS, socketId))
        tserver.on('tlsClientError', (err, s) => {
          this.counters.tlsHandshakeErrors++
          this.#rl.tls.hit('TLS handshake failed', { err, remote: s.remoteAddress })
        })
        server = tserver
      }
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen({ host: l.address, port: l.port, exclusive: true }, () => { server.off('error', reject); resolve() })
      })
      server.on('error', err => this.log.error('listener error', { err, socketId, transport: l.transport }))
      this.#servers[socketId] = server
      port = (server.address() as { port: number }).port
    } else {
      const mod = await import(new URL('./ws.js', import.meta.url).href) as WsModule
      const cert = l.tls?.certificates[0]
      if (kind === WSS && cert === undefined) throw Object.assign(new Error('wss listener without tls options'), { code: 'ERR_TRANSPORT_OPTIONS' })
      const ws = await mod.startWsListener({
        proto: kind === WS ? 'ws' : 'wss',
        address: l.address,
        port: l.port,
        ...(cert !== undefined && kind === WSS ? { tls: { cert: cert.cert, key: cert.key } } : {}),
        maxMessageSize: this.limits.maxMessageSize,
        idleTimeoutMs: this.limits.idleTimeoutMs,
        sink: {
          onOpen: conn => this.#acceptWs(conn, kind, socketId),
          onMessage: (id, data) => { const c = this.table.get(id); if (c !== undefined) this.#onStreamMessage(c, data) },
          onClose: id => { const c = this.table.get(id); if (c !== undefined) this.#closed(c) },
        },
      })
      this.#ws[socketId] = ws
      port = ws.port
    }
    this.#listenerInfo.push({ transport: l.transport, address: l.address, port, socketId })
  }

  // ------------------------------------------------------------------------------ inbound

  #onUdp(socketId: number, msg: Buffer, rinfo: RemoteInfo): void {
    const c = this.counters
    if (this.#draining) { c.drainDropped++; return }
    c.udpIn++
    if (msg.length > this.limits.maxMessageSize) {
      c.udpOversize++
      this.#rl.oversize.hit('UDP datagram over max message size dropped', { remote: rinfo.address, size: msg.length, max: this.limits.maxMessageSize })
      return
    }
    const h = callIdHash(msg)
    if (h === -1) {
      if (isKeepaliveDatagram(msg)) { c.keepalivePings++; return }
      c.udpNoCallId++ // a UDP peer gets no 400 (it may be spoofed); counted and dropped
      this.#rl.noCallId.hit('UDP message without Call-ID dropped', { remote: rinfo.address, port: rinfo.port })
      return
    }
    const m = this.#scratch
    m.transport = UDP
    m.socketId = socketId
    m.connId = 0
    m.family = rinfo.family === 'IPv6' ? 6 : 4
    m.address = rinfo.address
    m.port = rinfo.port
    m.recvTime = performance.timeOrigin + performance.now()
    m.flags = 0
    if (!this.#deliver(h, m, msg)) {
      c.ringFull++ // UDP: dropped, the peer retransmits (RFC 3261 §17.1.2.2)
      this.#rl.ringFull.hit('worker ring full: UDP message dropped', { transport: 'udp' })
    }
  }

  #deliver(hash: number, meta: FrameMeta, payload: Uint8Array): boolean {
    if (this.#inproc !== null) {
      try {
        this.#inproc.onFrame(meta, payload)
      } catch (err) {
        this.counters.handlerErrors++
        this.#rl.handler.hit('handler threw', { err })
      }
      return true
    }
    const slot = this.#slots[(hash >>> 0) % this.#nWorkers]!
    return slot.inbound!.tryPush(meta, payload)
  }

  #refuse(sock: Socket, kind: number): void {
    this.counters.connRefused++
    this.#rl.refused.hit(this.#draining ? 'connection refused: draining' : 'connection refused: max_connections reached', {
      transport: NAME_BY_KIND[kind], remote: sock.remoteAddress, maxConnections: this.limits.maxConnections, connections: this.table.size,
    })
    sock.destroy()
  }

  #accept(sock: Socket, kind: number, socketId: number): void {
    if (sock.destroyed) return
    if (this.#draining || (kind !== TLS && this.table.size >= this.limits.maxConnections)) { this.#refuse(sock, kind); return }
    const addr = sock.remoteAddress
    if (addr === undefined) { sock.destroy(); return }
    const conn = new StreamConn(kind, socketId, addr, sock.remotePort ?? 0, false)
    this.counters.connAccepted++
    this.#wire(conn, sock)
  }

  #acceptWs(ws: WsConnectionLike, kind: number, socketId: number): number {
    if (this.#draining || this.table.size >= this.limits.maxConnections) {
      this.counters.connRefused++
      this.#rl.refused.hit(this.#draining ? 'connection refused: draining' : 'connection refused: max_connections reached', {
        transport: NAME_BY_KIND[kind], remote: ws.remoteAddress, maxConnections: this.limits.maxConnections,
      })
      queueMicrotask(() => { try { ws.close() } catch { /* gone */ } })
      return 0
    }
    const conn = new StreamConn(kind, socketId, ws.remoteAddress, ws.remotePort, false)
    conn.ws = ws
    this.table.add(conn)
    this.counters.connAccepted++
    return conn.id
  }

  #wire(conn: StreamConn, sock: Socket): void {
    conn.socket = sock
    conn.framer = new StreamFramer({ maxSize: this.limits.maxMessageSize })
    this.table.add(conn)
    sock.setNoDelay(true)
    if (this.limits.idleTimeoutMs > 0) sock.setTimeout(this.limits.idleTimeoutMs)
    sock.on('timeout', () => {
      this.counters.connIdleClosed++
      this.#rl.idle.hit('idle connection closed', { transport: NAME_BY_KIND[conn.kind], remote: conn.address, port: conn.port, idleTimeoutMs: this.limits.idleTimeoutMs })
      this.#destroyConn(conn)
    })
    sock.on('data', (chunk: Buffer) => this.#onStreamData(conn, chunk))
    sock.on('error', err => this.#rl.sock.hit('connection error', { transport: NAME_BY_KIND[conn.kind], remote: conn.address, port: conn.port, err }))
    sock.on('close', () => this.#closed(conn))
    sock.on('end', () => { if (!sock.writableEnded) sock.end() })
  }

  #onStreamData(conn: StreamConn, chunk: Buffer): void {
    const framer = conn.framer!
    framer.push(chunk)
    let got = false
    for (;;) {
      let m: ReturnType<StreamFramer['next']>
      try {
        m = framer.next()
      } catch (err) {
        this.#streamError(conn, err)
        return
      }
      if (m === null) break
      if (m === KEEPALIVE_PING) {
        // RFC 5626 §4.4.1: answer a double-CRLF ping with a single CRLF pong.
        this.counters.keepalivePings++
        this.#write(conn, CRLF, false)
        continue
      }
      if (m === KEEPALIVE_PONG) continue
      got = true
      this.#onStreamMessage(conn, m as Buffer)
      if (conn.closed) return
    }
    if (framer.buffered > 0) {
      if (got || conn.partialSince === 0) {
        conn.partialSince = performance.now()
        this.#partial.add(conn)
        if (this.#partialTimer === null) this.#startPartialSweep()
      }
    } else if (conn.partialSince !== 0) {
      conn.partialSince = 0
      this.#partial.delete(conn)
    }
  }

  #startPartialSweep(): void {
    // Runs only while some connection holds an incomplete message: no fixed background cost.
    const every = Math.max(50, Math.min(1_000, this.limits.partialMessageTimeoutMs / 4))
    this.#partialTimer = setInterval(() => {
      const now = performance.now()
      for (const c of this.#partial) {
        if (c.closed) { this.#partial.delete(c); continue }
        if (now - c.partialSince >= this.limits.partialMessageTimeoutMs) {
          this.counters.connPartialTimeout++
          this.#rl.partial.hit('incomplete message not finished in time; connection closed', {
            transport: NAME_BY_KIND[c.kind], remote: c.address, port: c.port, buffered: c.framer?.buffered, partialMessageTimeoutMs: this.limits.partialMessageTimeoutMs,
          })
          this.#partial.delete(c)
          this.#destroyConn(c)
        }
      }
      if (this.#partial.size === 0 && this.#partialTimer !== null) { clearInterval(this.#partialTimer); this.#partialTimer = null }
    }, every)
    this.#partialTimer.unref()
  }

  #streamError(conn: StreamConn, err: unknown): void {
    const e = err as SipParseError
    const fields = { transport: NAME_BY_KIND[conn.kind], remote: conn.address, port: conn.port, code: e?.code, reason: e?.message }
    if (e instanceof SipParseError && e.code === 'ERR_SIP_TOO_LARGE') {
      this.counters.connOversize++
      this.#rl.oversize.hit('message over max message size; connection closed', { ...fields, max: this.limits.maxMessageSize })
    } else {
      this.counters.connBadStream++
      this.#rl.bad.hit('unframeable stream; connection closed', fields)
    }
    // Framing is lost: nothing after this point can be trusted. Close (RFC 3261 §18.3).
    this.#destroyConn(conn)
  }

  #onStreamMessage(conn: StreamConn, buf: Buffer): void {
    const c = this.counters
    if (this.#draining) { c.drainDropped++; return }
    c.streamIn++
    const h = callIdHash(buf)
    if (h === -1) {
      c.streamNoCallId++
      this.#rl.noCallId.hit('stream message without Call-ID answered 400', { transport: NAME_BY_KIND[conn.kind], remote: conn.address })
      const r = answerFor(buf, 400, 'Missing Call-ID')
      if (r !== null) this.#write(conn, r, false)
      return
    }
    const m = this.#scratch
    m.transport = conn.kind
    m.socketId = conn.socketId
    m.connId = conn.id
    m.family = conn.family
    m.address = conn.address
    m.port = conn.port
    m.recvTime = performance.timeOrigin + performance.now()
    m.flags = 0
    if (!this.#deliver(h, m, buf)) {
      c.ringFull++
      this.#rl.ringFull.hit('worker ring full: stream request answered 503', { transport: NAME_BY_KIND[conn.kind] })
      const r = answerFor(buf, 503, 'Service Unavailable', [['Retry-After', '5']])
      if (r !== null) { c.ringFull503++; this.#write(conn, r, false) }
    }
  }

  // ------------------------------------------------------------------------------ outbound

  /** One frame out. `fromRing`: payload is a view into a ring, valid only now: copy it. */
  #send(meta: FrameMeta, payload: Uint8Array | readonly Uint8Array[], fromRing: boolean): boolean {
    const kind = meta.transport
    if (kind === UDP) {
      // Answer from the socket the request came in on (same source address for the peer);
      // a worker-originated datagram (or a family mismatch) goes out of the first socket of its family.
      const fam = meta.address.includes(':') ? 6 : 4
      let sock = this.#udp[meta.socketId]
      if (sock === undefined || sock === null || this.#udpFamily[meta.socketId] !== fam) sock = this.#udpByFamily[fam]
      if (sock === null || sock === undefined) { this.counters.sendNoConnection++; return false }
      const data = fromRing ? Buffer.from(payload as Uint8Array) : payload as Uint8Array | Uint8Array[]
      this.#udpPending++
      this.counters.udpOut++
      try {
        sock.send(data as Buffer, meta.port, meta.address, this.#onUdpSent)
      } catch (err) {
        this.#udpPending--
        this.counters.udpSendErrors++
        this.#rl.sock.hit('UDP send failed', { err })
        return false
      }
      return true
    }
    if (kind !== TCP && kind !== TLS && kind !== WS && kind !== WSS) { this.counters.sendUnsupported++; return false }
    let conn: StreamConn | undefined
    if (meta.connId !== 0) {
      conn = this.table.get(meta.connId)
      if (conn === undefined || conn.closed) {
        // The connection the request came in on is gone. RFC 3261 §18.2.2 lets the sender open a
        // new one to the sent-by; the worker asks for that explicitly with FLAG_OPEN_CONNECTION.
        if ((meta.flags & FLAG_OPEN_CONNECTION) === 0) { this.counters.sendNoConnection++; return false }
        conn = undefined
      }
    }
    if (conn === undefined) {
      conn = this.table.byKey(kind, meta.address, meta.port)
      if (conn !== undefined && !conn.closed) this.counters.connReused++
      else if (meta.connId === 0 || (meta.flags & FLAG_OPEN_CONNECTION) !== 0) {
        const opened = this.#open(kind, meta.address, meta.port)
        if (opened === null) return false
        conn = opened
      } else { this.counters.sendNoConnection++; return false }
    }
    if (fromRing) this.#write(conn, Buffer.from(payload as Uint8Array), true)
    else if (Array.isArray(payload)) { for (const p of payload) this.#write(conn, p as Buffer, true) }
    else this.#write(conn, payload as Buffer, true)
    if ((meta.flags & FLAG_CLOSE_AFTER_SEND) !== 0) this.#endConn(conn)
    return true
  }

  #write(conn: StreamConn, data: Buffer, count: boolean): void {
    if (conn.closed) return
    if (count) this.counters.streamOut++
    if (conn.ws !== null) { conn.ws.send(data); return }
    const s = conn.socket!
    if (this.#batching && !conn.corked) { s.cork(); conn.corked = true; this.#corked.push(conn) }
    s.write(data)
  }

  #uncorkAll(): void {
    const list = this.#corked
    for (let i = 0; i < list.length; i++) {
      const c = list[i]!
      c.corked = false
      if (!c.closed) c.socket?.uncork()
    }
    list.length = 0
  }

  /** Opens an outbound TCP/TLS connection; bytes written before connect are queued by the socket. */
  #open(kind: number, address: string, port: number): StreamConn | null {
    if (this.#draining) { this.counters.sendNoConnection++; return null }
    if (kind === WS || kind === WSS) {
      // uWebSockets.js is server-only: WS peers are reached over the connection they opened.
      this.counters.sendUnsupported++
      return null
    }
    if (this.table.size >= this.limits.maxConnections) {
      this.counters.connRefused++
      this.#rl.refused.hit('outbound connection refused: max_connections reached', { transport: NAME_BY_KIND[kind], remote: address, port })
      return null
    }
    const conn = new StreamConn(kind, -1, address, port, true)
    let sock: Socket
    if (kind === TCP) {
      sock = tcpConnect({ host: address, port, noDelay: true })
    } else {
      const o = this.#opts.outboundTls ?? {}
      sock = tlsConnect({
        host: address, port,
        ...(isIP(address) === 0 ? { servername: address } : {}),
        rejectUnauthorized: o.rejectUnauthorized ?? true,
        ...(o.ca !== undefined ? { ca: readFileSync(o.ca) } : {}),
        minVersion: 'TLSv1.2',
      })
    }
    sock.once('error', err => {
      if (sock.connecting || (kind === TLS && !(sock as TLSSocket).authorized && (sock as TLSSocket).encrypted)) {
        this.counters.connConnectFailed++
        this.#rl.connect.hit('outbound connection failed', { transport: NAME_BY_KIND[kind], remote: address, port, err })
      }
    })
    this.counters.connOpened++
    this.#wire(conn, sock)
    return conn
  }

  #endConn(conn: StreamConn): void {
    if (conn.closed) return
    if (conn.ws !== null) { conn.closed = true; try { conn.ws.close() } catch { /* gone */ } this.#closed(conn); return }
    conn.socket?.end()
  }

  #destroyConn(conn: StreamConn): void {
    if (conn.ws !== null) { this.#endConn(conn); return }
    conn.socket?.destroy()
    this.#closed(conn)
  }

  #closed(conn: StreamConn): void {
    if (conn.id === 0) return
    if (!this.table.get(conn.id) || this.table.get(conn.id) !== conn) { conn.closed = true; return }
    conn.closed = true
    this.table.remove(conn)
    this.#partial.delete(conn)
    this.counters.connClosed++
  }
}

function remaining(deadline: number): number { return Math.max(0, deadline - Date.now()) }

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<T>((_, reject) => { t = setTimeout(() => reject(Object.assign(new Error(what), { code: 'ERR_TRANSPORT_TIMEOUT' })), ms) }),
  ])
}

/** Frames the primary pushed into a ring that its (dead) consumer never took. */
function lostInFlight(ring: Ring): number {
  const s = ring.stats()
  return Math.max(0, s.pushed - s.drained)
}
