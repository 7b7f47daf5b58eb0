export * from './catalog.js'
export { CounterLayout, SharedCounters, MetricsLayoutError, HEADER_SLOTS, type GroupKind, type GroupSpec } from './shared-counters.js'
export { METRICS_LAYOUT, HISTOGRAMS, THREAD_SLOTS, CLUSTER_SLOTS, DestinationSlots, type HistogramSlots, type MetricsGroup } from './layout.js'
export { WorkerMetrics, THREAD_SAMPLE, type WorkerMetricsData } from './worker-metrics.js'
export { MetricsAggregator, type AggregatorOptions } from './aggregator.js'
export {
  createMetricsRegistry, type MetricsRegistryOptions, type MetricsSources, type SipedgeMetrics, type RingStat,
  type DestinationStatus, type MetricDescription, type MetricType, type Sample,
} from './registry.js'
export * from './admin.js'
export { startHttpServer, isLoopback, HttpServerError, type HttpServer, type HttpServerOptions } from './http.js'
