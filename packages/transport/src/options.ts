// What an Engine is built from: listeners, limits, the worker pool's settings. Plain types and
// the defaults; validated where they are used (engine.ts, pool.ts).
import type { HandlerContext, MessageHandler, TransportName } from '@sipedge/frame'
import type { TlsOptions } from './tls-contexts.js'
import type { Logger } from './log.js'
import type { KeepaliveSettings } from './keepalive.js'
import type { PikeSettings } from './pike.js'

export interface ListenerOptions {
  transport: TransportName
  /** IPv4 or IPv6 literal: `0.0.0.0`, `::`, `127.0.0.1`, `::1`. */
  address: string
  /** 0 = any free port (tests); see Engine.listeners for the port bound. */
  port: number
  /** Required for tls and wss. */
  tls?: TlsOptions
}

export interface ListenerInfo { transport: TransportName; address: string; port: number; socketId: number }

export interface EngineLimits {
  /** TCP + TLS + WS/WSS connections, accepted and opened; more are refused (counter connRefused). */
  maxConnections: number
  /** A stream connection with no traffic either way for this long is closed (connIdleClosed). */
  idleTimeoutMs: number
  /** Largest SIP message accepted, any transport (udpOversize, connOversize). */
  maxMessageSize: number
  /** An incomplete stream message must complete within this time (connPartialTimeout). */
  partialMessageTimeoutMs: number
  /** Accepted stream connections from one remote address at most (0: no limit); more are refused (connRefusedPerSource). */
  maxConnectionsPerSource: number
}

export const DEFAULT_LIMITS: Readonly<EngineLimits> = {
  maxConnections: 10_000,
  idleTimeoutMs: 3_600_000,
  maxMessageSize: 65_535,
  partialMessageTimeoutMs: 10_000,
  maxConnectionsPerSource: 0,
}

/** Outbound TLS connections (opened for FLAG_OPEN_CONNECTION frames). */
export interface OutboundTlsOptions { rejectUnauthorized?: boolean; ca?: string }

export interface EngineOptions {
  listeners: ListenerOptions[]
  /**
   * Worker threads; default: the CPUs this process may run on, less one (the primary's), i.e. 0
   * on one CPU. 0 = run the handler in-process, on the primary thread (no rings).
   */
  workers?: number
  /** Worker thread entry (e.g. import.meta.resolve('@sipedge/workers/worker')); required when workers > 0. */
  workerUrl?: URL | string
  /** Module exporting `createHandler(ctx)`; loaded in-process for workers: 0 and handed to each worker. */
  handlerUrl: URL | string
  /**
   * workers: 0 — builds the handler on the primary thread from the context the engine gives
   * (e.g. @sipedge/workers' inProcessHost, which adds the metrics and tracing a worker thread
   * has). Default: import handlerUrl and call its createHandler(ctx).
   */
  inProcessHandler?: (ctx: HandlerContext) => Promise<MessageHandler>
  /**
   * Called for every message the primary takes from a peer (a datagram, or one framed stream
   * message), before it is handed on. The cli counts them into the primary's own idle collector
   * when the node has worker threads (with `workers: 0` the in-process handler counts them).
   */
  onMessage?: () => void
  /** Configuration handed to the handler(s): structured-clone- and msgpackr-encodable. */
  config?: unknown
  /** Bytes per ring, each direction, per worker (default 4 MiB). */
  ringBytes?: number
  limits?: Partial<EngineLimits>
  /** Bound on the SIGTERM drain (default 5000 ms). */
  shutdownTimeoutMs?: number
  /** Outbound TLS connections (opened for FLAG_OPEN_CONNECTION frames). */
  outboundTls?: OutboundTlsOptions
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
  /**
   * NAT keep-alives of the stream connections workers ask for (FLAG_KEEPALIVE; docs/nat.md);
   * null or absent: off (such frames are ignored). Changed at run time with setKeepalive().
   */
  keepalive?: KeepaliveSettings | null
  /**
   * Flood detection (pike.ts; docs/security.md "Flood detection"); null or absent: no counting
   * (the ban table still drops sources banned by workers or the admin). Changed with setPike().
   */
  pike?: PikeSettings | null
}

/** Shared by the parts of one engine: set once when stop() begins. */
export interface RunState { draining: boolean }

/** An Error with a stable code (ERR_TRANSPORT_...). */
export function transportError(code: string, message: string): Error & { code: string } {
  return Object.assign(new Error(message), { code })
}
