// What a message handler is given and what it must provide: the seam between the thread that
// carries frames (a worker thread's ring loop, or the primary itself with `workers: 0`) and the
// code that handles SIP (the proxy core, the default responder, a test handler). A handler module
// exports `createHandler: CreateHandler`; both the worker entry (@sipedge/workers) and the
// engine's in-process mode (@sipedge/transport) load it by URL and drive it the same way.
//
// `W` is the type of the thread's metrics block (`WorkerMetrics` of @sipedge/metrics in a worker
// thread). It is a parameter so that this package, which both sides import, depends on nothing.
import type { FrameMeta } from './meta.js'

export interface HandlerLogger {
  debug(msg: string, fields?: Record<string, unknown>): void
  info(msg: string, fields?: Record<string, unknown>): void
  warn(msg: string, fields?: Record<string, unknown>): void
  error(msg: string, fields?: Record<string, unknown>): void
  /** When present: whether a level is on, so debug-only fields are built only when they are logged. */
  isLevelEnabled?(level: string): boolean
}

/** The handler's view of the thread's metrics (see HandlerContext.metrics). */
export interface HandlerMetrics<W = unknown> {
  readonly writer: W
  /** Set just before handing a relayed response to send(): counted as "forwarded", not "local". */
  forwardedNext: boolean
}

export interface HandlerContext<W = unknown> {
  /** 0..N-1; 0 in-process. */
  workerIndex: number
  /** The configuration as validated by the primary (plain data). Updates arrive via onControl. */
  config: unknown
  /**
   * Hands one frame to the primary: `meta` names the destination (same transport/socketId/connId
   * to answer on the way the request came; connId 0 + FLAG_OPEN_CONNECTION for a new connection
   * to address:port). `meta` and `payload` are copied before send returns. false = not sent
   * (outbound ring full, counted): treat like a lost datagram. A frame that is taken but then
   * cannot be delivered over a stream comes back as `onTransportError`.
   */
  send(meta: FrameMeta, payload: Uint8Array | readonly Uint8Array[]): boolean
  /** ms, performance.timeOrigin + performance.now() (same clock as FrameMeta.recvTime). */
  now(): number
  /**
   * true: `now` is not that clock but one that may jump ahead (a test's or a fuzzer's clock), so
   * the handler's timers must check it every second rather than sleep until their native timer
   * is due. Absent or false in sipedge itself.
   */
  nowJumps?: boolean
  log: HandlerLogger
  /** true when running on the primary thread (workers: 0). */
  inProcess: boolean
  /**
   * Sends a control message to every OTHER worker's handler (relayed by the primary over the
   * MessagePorts, msgpackr-encoded): state one worker learns that all must share, e.g. a
   * dispatcher destination that a probe found down. Never per SIP message. Absent in-process.
   */
  postControl?(msg: { type: string; [k: string]: unknown }): void
  /**
   * This thread's metrics block (shared memory, read by the primary at scrape time). The worker
   * entry already counts every request/response in and out; a handler adds what only it knows
   * (transaction durations, the response direction via `forwardedNext`). Absent in-process.
   */
  metrics?: HandlerMetrics<W>
}

export interface MessageHandler<W = unknown> {
  /**
   * One inbound SIP message. `meta` and `payload` are views valid only during the call (ring
   * memory, or the primary's reused header): copy what you keep.
   */
  onFrame(meta: FrameMeta, payload: Uint8Array): void
  /**
   * Frames this handler sent to `meta.transport`/`meta.address`/`meta.port` could not be
   * delivered: the connection could not be opened (refused, reset, TLS handshake failed, over
   * the connection limit) or failed with frames of ours still unwritten. `meta.connId` is the
   * failed connection (0 if none was opened); `meta.flags` has FLAG_TRANSPORT_ERROR. Reported
   * once per failure, not per frame, soon after it happens (RFC 3261 §17.1.4: fail the client
   * transactions to that destination now rather than at Timer B/F). `meta` is a view valid only
   * during the call. A handler without it ignores the report.
   */
  onTransportError?(meta: FrameMeta): void
  /** Control messages from the primary, msgpackr-decoded: `{ type: 'config', config }`, ... */
  onControl?(msg: { type: string; [k: string]: unknown }): void
  /**
   * A question from the primary (`{ type: 'query', id, what, args }`, docs/contracts.md): return
   * (or resolve with) plain data; throw `{ code, message }` to answer an error. `what`: stats,
   * dispatcher, dialogs, dialog ({ callId }), transactions.
   */
  onQuery?(what: string, args: unknown): unknown
  /** Called about once a second by the worker's metrics sampler: publish gauges (transactions, ...). */
  sample?(metrics: W): void
  /** Finish in-flight work (SIGTERM drain); the thread exits afterwards. */
  close?(): Promise<void> | void
}

export type CreateHandler<W = unknown> = (ctx: HandlerContext<W>) => MessageHandler<W> | Promise<MessageHandler<W>>
