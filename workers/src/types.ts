// The message-handler interface: the seam where the proxy core (next issue) replaces the
// default responder. The worker thread entry (worker.ts) and the in-process mode of the engine
// (workers: 0) both load a module exporting `createHandler` and drive it the same way.
import type { FrameMeta } from '@sipedge/ring'
import type { WorkerMetrics } from '@sipedge/metrics'

export type { FrameMeta }

export interface HandlerLogger {
  debug(msg: string, fields?: Record<string, unknown>): void
  info(msg: string, fields?: Record<string, unknown>): void
  warn(msg: string, fields?: Record<string, unknown>): void
  error(msg: string, fields?: Record<string, unknown>): void
}

export interface HandlerContext {
  /** 0..N-1; 0 in-process. */
  workerIndex: number
  /** The configuration as validated by the primary (plain data). Updates arrive via onControl. */
  config: unknown
  /**
   * Hands one frame to the primary: `meta` names the destination (same transport/socketId/connId
   * to answer on the way the request came; connId 0 + FLAG_OPEN_CONNECTION for a new connection
   * to address:port). `meta` and `payload` are copied before send returns. false = not sent
   * (outbound ring full, counted): treat like a lost datagram.
   */
  send(meta: FrameMeta, payload: Uint8Array | readonly Uint8Array[]): boolean
  /** ms, performance.timeOrigin + performance.now() (same clock as FrameMeta.recvTime). */
  now(): number
  log: HandlerLogger
  /** true when running on the primary thread (workers: 0). */
  inProcess: boolean
  /**
   * Sends a control message to every OTHER worker's handler (relayed by the primary over the
   * MessagePorts, msgpackr-encoded): state one worker learns that all must share, e.g. a
   * dispatcher destination that a probe found down. Never per SIP message. A no-op in-process.
   */
  postControl?(msg: { type: string; [k: string]: unknown }): void
  /**
   * This thread's metrics block (shared memory, read by the primary at scrape time). The worker
   * entry already counts every request/response in and out; a handler adds what only it knows
   * (transaction durations, the response direction via `forwardedNext`). Absent in-process.
   */
  metrics?: HandlerMetrics
}

/** The handler's view of the thread's metrics (see HandlerContext.metrics). */
export interface HandlerMetrics {
  readonly writer: WorkerMetrics
  /** Set just before handing a relayed response to send(): counted as "forwarded", not "local". */
  forwardedNext: boolean
}

export interface MessageHandler {
  /**
   * One inbound SIP message. `meta` and `payload` are views valid only during the call (ring
   * memory, or the primary's reused header): copy what you keep.
   */
  onFrame(meta: FrameMeta, payload: Uint8Array): void
  /** Control messages from the primary, msgpackr-decoded: `{ type: 'config', config }`, ... */
  onControl?(msg: { type: string; [k: string]: unknown }): void
  /**
   * A question from the primary (`{ type: 'query', id, what, args }`, docs/contracts.md): return
   * (or resolve with) plain data; throw `{ code, message }` to answer an error. `what`: stats,
   * dispatcher, dialogs, dialog ({ callId }), transactions.
   */
  onQuery?(what: string, args: unknown): unknown
  /** Called about once a second by the worker's metrics sampler: publish gauges (transactions, ...). */
  sample?(metrics: WorkerMetrics): void
  /** Finish in-flight work (SIGTERM drain); the worker exits afterwards. */
  close?(): Promise<void> | void
}

export type CreateHandler = (ctx: HandlerContext) => MessageHandler | Promise<MessageHandler>
