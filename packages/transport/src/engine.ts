// The primary side of sipedge: a small composition of the parts that own every socket.
//
//   listeners (udp, stream, websocket) -> inbound (Call-ID hash) -> worker pool's inbound rings
//   worker pool's outbound rings -> outbound (dgram.send / socket.write / ws.send)
//
// plus the connection table both paths share. `workers: 0` replaces the pool with the handler
// run in-process (same module, no rings). See docs/architecture.md "How a message flows".
import { availableParallelism } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import { Ring } from '@sipedge/ring'
import { TRANSPORT_NAMES, UDP, TCP, TLS, kindOf, nameOf, type TransportName } from '@sipedge/frame'
import { Counters } from './counters.js'
import { ConnectionTable, type StreamConn } from './connections.js'
import { createLogger, RateLimitedLog, type Logger } from './log.js'
import { callIdHashOf } from './sip-subset.js'
import { Inbound } from './inbound.js'
import { Outbound } from './outbound.js'
import { InProcessTarget } from './in-process.js'
import { WorkerPool, QueryError, withTimeout, type EngineRingStat } from './pool.js'
import { UdpListeners } from './listeners/udp.js'
import { StreamListeners } from './listeners/stream.js'
import { WebSocketListeners } from './listeners/websocket.js'
import { Pike, type PikeSettings } from './pike.js'
import { StreamKeepalive, type KeepaliveSettings, type KeepaliveStats } from './keepalive.js'
import { DEFAULT_LIMITS, transportError, type EngineLimits, type EngineOptions, type ListenerInfo, type ListenerOptions, type RunState } from './options.js'

export class Engine {
  readonly counters = new Counters()
  readonly table = new ConnectionTable()
  /** Flood detection and the ban table (pike.ts), shared by every path of the primary. */
  readonly pike: Pike
  readonly limits: EngineLimits
  readonly log: Logger
  readonly #opts: EngineOptions
  readonly #nWorkers: number
  #config: unknown
  #state: 'new' | 'starting' | 'running' | 'draining' | 'stopped' = 'new'
  readonly #run: RunState = { draining: false }
  readonly #listenerInfo: ListenerInfo[] = []
  readonly #inbound: Inbound
  readonly #outbound: Outbound
  readonly #udp: UdpListeners
  readonly #streams: StreamListeners
  readonly #ws: WebSocketListeners
  #pool: WorkerPool | null = null
  #inproc: InProcessTarget | null = null
  readonly #keepalive: StreamKeepalive

  constructor(opts: EngineOptions) {
    this.#opts = opts
    this.log = opts.logger ?? createLogger({ module: 'engine' })
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits }
    this.#nWorkers = opts.workers ?? Math.max(0, availableParallelism() - 1)
    this.#config = opts.config
    const ringBytes = opts.ringBytes ?? 4 * 1024 * 1024
    if (this.#nWorkers > 0 && this.limits.maxMessageSize > Ring.maxPayloadFor(ringBytes) / 4)
      throw transportError('ERR_TRANSPORT_OPTIONS', `ringBytes ${ringBytes} too small for maxMessageSize ${this.limits.maxMessageSize}`)
    if (this.#nWorkers > 0 && opts.workerUrl === undefined)
      throw transportError('ERR_TRANSPORT_OPTIONS', 'EngineOptions.workerUrl is required when workers > 0')
    const common = { table: this.table, counters: this.counters, limits: this.limits, log: this.log, state: this.#run }
    this.pike = new Pike(opts.pike ?? null)
    this.pike.on({ banned: b => this.#closeFrom(b.address) })
    const admit = this.#admitter()
    const inbound = new Inbound({ ...common, pike: this.pike, onMessage: opts.onMessage })
    this.#inbound = inbound
    this.#udp = new UdpListeners(this.log, (socketId, msg, rinfo) => inbound.datagram(socketId, msg, rinfo))
    const keepalive = new StreamKeepalive({
      table: this.table,
      report: (worker, meta) => this.#outbound.target.transportError(worker, meta),
      destroy: conn => this.#streams.destroy(conn),
    })
    this.#keepalive = keepalive
    keepalive.configure(opts.keepalive ?? null)
    this.#streams = new StreamListeners({
      ...common,
      onMessage: (conn, buf) => inbound.streamMessage(conn, buf),
      onError: conn => this.#outbound.connectionFailed(conn),
      onAlive: conn => keepalive.answered(conn),
      admit,
    })
    this.#ws = new WebSocketListeners({
      ...common,
      admit,
      onMessage: (conn, buf) => inbound.streamMessage(conn, buf),
      onClosed: conn => this.#streams.closed(conn),
      onAlive: conn => keepalive.answered(conn),
    })
    this.#outbound = new Outbound({
      ...common, udp: this.#udp, streams: this.#streams, keepalive,
      ...(opts.outboundTls !== undefined ? { outboundTls: opts.outboundTls } : {}),
    })
    if (this.#nWorkers > 0) {
      this.#pool = new WorkerPool({
        size: this.#nWorkers,
        workerUrl: opts.workerUrl!,
        handlerUrl: opts.handlerUrl,
        ringBytes,
        batchSize: opts.batchSize ?? 256,
        config: () => this.#config,
        sink: this.#outbound,
        counters: this.counters,
        log: this.log,
        stopped: () => this.#state === 'stopped',
        onWorkerControl: msg => this.#workerControl(msg),
        ...(opts.workerEnv !== undefined ? { workerEnv: opts.workerEnv } : {}),
        ...(opts.workerExecArgv !== undefined ? { workerExecArgv: opts.workerExecArgv } : {}),
        ...(opts.workerData !== undefined ? { workerData: opts.workerData } : {}),
        ...(opts.onWorkerExit !== undefined ? { onWorkerExit: opts.onWorkerExit } : {}),
        ...(opts.queryTimeoutMs !== undefined ? { queryTimeoutMs: opts.queryTimeoutMs } : {}),
      })
    }
  }

  get listeners(): readonly ListenerInfo[] { return this.#listenerInfo }
  get workerCount(): number { return this.#nWorkers }
  get state(): string { return this.#state }

  // ------------------------------------------------------------------------------ lifecycle

  /** Starts workers (or the in-process handler), then every listener; resolves when all are up. */
  async start(): Promise<void> {
    if (this.#state !== 'new') throw transportError('ERR_TRANSPORT_STATE', 'engine already started')
    this.#state = 'starting'
    try {
      if (this.#pool !== null) {
        await this.#pool.start()
        this.#inbound.target = this.#outbound.target = this.#pool
      } else {
        const out = this.#outbound
        this.#inproc = await InProcessTarget.load(this.#opts.handlerUrl, {
          config: this.#config,
          send: (meta, payload) => out.send(meta, payload, false),
          log: this.log,
          counters: this.counters,
          postControl: msg => this.#workerControl(msg),
          ...(this.#opts.inProcessHandler !== undefined ? { create: this.#opts.inProcessHandler } : {}),
        })
        this.#inbound.target = this.#outbound.target = this.#inproc
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

  async #listen(socketId: number, l: ListenerOptions): Promise<void> {
    const kind = kindOf(l.transport as string) // config is data: any string may arrive
    let port: number
    if (kind === UDP) port = await this.#udp.bind(socketId, l.address, l.port)
    else if (kind === TCP || kind === TLS) port = await this.#streams.listen(socketId, kind, l.address, l.port, l.tls)
    else if (kind !== 0) port = await this.#ws.listen(socketId, kind, l.address, l.port, l.tls)
    else throw transportError('ERR_TRANSPORT_OPTIONS', `unknown transport ${String(l.transport)}`)
    this.#listenerInfo.push({ transport: l.transport, address: l.address, port, socketId })
  }

  /**
   * Graceful stop: stop accepting connections and reading new messages, let the workers finish
   * what is in their rings, send what they answered, close connections; bounded by
   * shutdownTimeoutMs, after which everything is closed hard.
   */
  async stop(): Promise<void> {
    if (this.#state === 'stopped' || this.#state === 'draining') return
    this.#state = 'draining'
    this.#run.draining = true
    const t0 = Date.now()
    const deadline = t0 + (this.#opts.shutdownTimeoutMs ?? 5_000)
    this.log.info('draining: no new connections or messages', { connections: this.table.size, timeoutMs: deadline - t0 })
    // TCP/TLS listening sockets close now. The WS listener stays up until the end (its close()
    // drops every WS connection at once); meanwhile new WS handshakes are refused.
    this.#streams.closeListeners()

    // Workers: finish the inbound rings, close the handler, answer "drained"; then what they sent.
    if (this.#inproc !== null) {
      try { await withTimeout(this.#inproc.close(), remaining(deadline), 'handler close timed out') } catch (err) { this.log.warn('handler did not close in time', { err }) }
    } else if (this.#pool !== null) {
      try { await this.#pool.drain(remaining(deadline)) } catch (err) { this.log.warn('drain timed out; what is still in the rings is lost', { err }) }
    }

    // Stream connections: flush and half-close; wait for them to go, bounded.
    for (const c of this.table.values()) this.#streams.end(c)
    while (this.table.size > 0 && Date.now() < deadline) await sleep(20)
    while (this.#outbound.udpPending > 0 && Date.now() < deadline) await sleep(5)
    const left = this.table.size
    await this.#teardown()
    this.#state = 'stopped'
    this.log.info('stopped', { ms: Date.now() - t0, forciblyClosed: left })
  }

  async #teardown(): Promise<void> {
    this.#run.draining = true
    this.pike.close()
    this.#keepalive.close()
    this.#streams.stopTimers()
    for (const c of [...this.table.values()]) this.#streams.destroy(c)
    this.#streams.closeListeners()
    this.#ws.close()
    this.#udp.close()
    await this.#pool?.close()
  }

  // ------------------------------------------------------------------------------ control

  /** New configuration for the handlers (SIGHUP); `generation` travels with it. Kept for workers started later. */
  updateConfig(config: unknown, generation?: number): void {
    this.#config = config
    this.control(generation === undefined ? { type: 'config', config } : { type: 'config', config, generation })
  }

  /** Sends any control message to every handler (msgpackr on the worker MessagePort). */
  control(msg: unknown): void {
    this.#inproc?.control(msg)
    this.#pool?.broadcast(msg)
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
    if (this.#inproc !== null) {
      const r = this.#inproc.query(what, args)
      return target === 'all' ? r.then(v => [v]) : r
    }
    if (this.#pool === null) return Promise.reject(new QueryError('ERR_QUERY_NO_WORKER', 'the engine is not running'))
    return target === 'all' ? this.#pool.queryAll(what, args) : this.#pool.query(target, what, args)
  }

  /** The worker that handles a Call-ID (the same hash % N as the inbound sharding). */
  workerForCallId(callId: string): number {
    return this.#nWorkers === 0 ? 0 : (callIdHashOf(callId) >>> 0) % this.#nWorkers
  }

  /** Re-reads every TLS certificate file (SIGHUP); false when any set failed (old kept). */
  reloadTls(): boolean {
    return this.#streams.reloadTls()
  }

  /** NAT keep-alives of stream connections on (new settings) or off (null); configuration reload. */
  setKeepalive(settings: KeepaliveSettings | null): void {
    this.#keepalive.configure(settings)
  }

  /** Flood detection on (new settings) or counting off (null); configuration reload. Bans in force stay. */
  setPike(settings: PikeSettings | null): void {
    this.pike.configure(settings)
  }

  // ------------------------------------------------------------------------------ pike hooks

  /** The accept-time source check of stream and WS listeners: bans, then connections per source. */
  #admitter(): (address: string) => boolean {
    const rl = new RateLimitedLog(this.log, 'warn')
    return address => {
      const c = this.counters
      if (this.pike.isBanned(address)) {
        c.connRefusedBanned++
        this.pike.refused(address)
        return false
      }
      const max = this.limits.maxConnectionsPerSource
      if (max > 0 && this.table.fromSource(address) >= max) {
        c.connRefusedPerSource++
        rl.hit('connection refused: max_connections_per_source reached', { remote: address, maxConnectionsPerSource: max })
        return false
      }
      return true
    }
  }

  /** A source was banned: its stream connections close now (what they hold is dropped). */
  #closeFrom(address: string): void {
    const from: StreamConn[] = []
    for (const c of this.table.values()) if (c.address === address && !c.outbound) from.push(c)
    for (const c of from) {
      this.counters.connBannedClosed++
      this.#streams.destroy(c)
    }
  }

  /**
   * A control message a worker posted for the others (`broadcast`): a `ban` (docs/contracts.md)
   * becomes a ban of the primary's table, so the source is dropped before any worker sees it.
   */
  #workerControl(msg: { type?: unknown; [k: string]: unknown }): void {
    if (msg.type !== 'ban') return
    const address = msg['address']
    const until = msg['until']
    if (typeof address !== 'string' || typeof until !== 'number') return
    // a worker's auth ban is written to the store by the worker itself
    this.pike.ban(address, typeof msg['reason'] === 'string' ? msg['reason'] : 'other', until, { origin: 'worker', shared: true })
  }

  /** Stream keep-alive counters by transport (metrics, scrape time). */
  keepaliveStats(): KeepaliveStats {
    return this.#keepalive.stats()
  }

  // ------------------------------------------------------------------------------ observation

  /** Ring.stats() of every worker's inbound and outbound ring. */
  ringStats(): EngineRingStat[] {
    return this.#pool?.ringStats() ?? []
  }

  /** Open stream connections by transport name (udp: 0). Walks the table: scrape time only. */
  connectionsByTransport(): Record<TransportName, number> {
    const out = Object.fromEntries(TRANSPORT_NAMES.map(n => [n, 0])) as Record<TransportName, number>
    for (const c of this.table.values()) {
      const n = nameOf(c.kind)
      if (n !== undefined) out[n]++
    }
    return out
  }

  /** Worker threads running (started and ready); 0 in-process (workers: 0 has none). */
  get workersAlive(): number {
    return this.#pool?.alive ?? 0
  }

  stats(): { counters: Counters; connections: number; workers: Array<{ index: number; online: boolean; restarts: number; inbound: unknown; outbound: unknown }> } {
    return {
      counters: { ...this.counters },
      connections: this.table.size,
      workers: this.#pool?.workers() ?? [],
    }
  }
}

function remaining(deadline: number): number { return Math.max(0, deadline - Date.now()) }
