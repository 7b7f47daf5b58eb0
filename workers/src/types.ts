// The message-handler interface as a worker thread sees it: the @sipedge/frame contract with the
// thread's metrics block (@sipedge/metrics WorkerMetrics) filled in. Defined once, in
// @sipedge/frame; the worker thread entry (worker.ts) and the engine's in-process mode
// (workers: 0) both load a module exporting `createHandler` and drive it the same way.
import type {
  HandlerContext as FrameHandlerContext,
  HandlerMetrics as FrameHandlerMetrics,
  MessageHandler as FrameMessageHandler,
  CreateHandler as FrameCreateHandler,
} from '@sipedge/frame'
import type { WorkerMetrics } from '@sipedge/metrics'

export type { FrameMeta, HandlerLogger } from '@sipedge/frame'

/** What createHandler gets in a worker thread (metrics: this thread's WorkerMetrics block). */
export type HandlerContext = FrameHandlerContext<WorkerMetrics>
/** The handler's view of the thread's metrics (see HandlerContext.metrics). */
export type HandlerMetrics = FrameHandlerMetrics<WorkerMetrics>
export type MessageHandler = FrameMessageHandler<WorkerMetrics>
export type CreateHandler = FrameCreateHandler<WorkerMetrics>
