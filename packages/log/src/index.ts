export { createLogging, createPortLogging, levelValue, type Logging, type LoggingOptions, type PortLogging, type LogLevel, type Logger } from './logging.js'
export { Tracer, redactCredentials, type TraceFilters, type TraceMeta } from './tracer.js'
export { FileSink, FdSink, type RotateOptions, type Sink } from './sink.js'
export type { DestinationOptions } from './destination.js'
