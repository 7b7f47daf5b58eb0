// @sipedge/workers — worker-thread entry and the default message handler.
export { createHandler, DefaultResponder } from './handler.js'
export { inProcessHost, type InProcessHostOptions } from './in-process.js'
export { HandlerHost } from './host.js'
export type { HandlerContext, MessageHandler, CreateHandler, HandlerLogger, FrameMeta } from './types.js'

/** URL of the worker thread entry (built JS), for EngineOptions.workerUrl. */
export const workerEntryUrl: URL = new URL('./worker.js', import.meta.url)
/** URL of the default handler module, for EngineOptions.handlerUrl. */
export const defaultHandlerUrl: URL = new URL('./handler.js', import.meta.url)
/** URL of the proxy core handler module (what `sipedge` runs), for EngineOptions.handlerUrl. */
export const proxyHandlerUrl: URL = new URL('./proxy-handler.js', import.meta.url)
export { IdleCollector, createCompactionGate, logCollection, type IdleCollectOptions } from './idle-collect.js'
