// Configuration (as validated by @sipedge/config) -> Engine options. Kept apart from main.ts so
// tests and the benchmark build an engine exactly as the command does.
import type { FrozenConfig } from '@sipedge/config'
import type { EngineOptions, KeepaliveSettings, ListenerOptions, TlsOptions, Logger } from '@sipedge/transport'
import { workerEntryUrl, proxyHandlerUrl } from '@sipedge/workers'

export function engineOptionsFromConfig(config: FrozenConfig, logger?: Logger): EngineOptions {
  const listeners: ListenerOptions[] = config.listen.map(l => {
    const out: ListenerOptions = { transport: l.proto, address: l.address, port: l.port }
    if (l.proto === 'tls' || l.proto === 'wss') out.tls = tlsFor(config, l.tls)
    return out
  })
  const opts: EngineOptions = {
    listeners,
    workers: config.workers,
    workerUrl: workerEntryUrl,
    handlerUrl: proxyHandlerUrl,
    config,
    ringBytes: config.limits.ring_size,
    limits: {
      maxConnections: config.limits.max_connections,
      idleTimeoutMs: config.limits.idle_timeout,
      maxMessageSize: config.limits.max_message_size,
      partialMessageTimeoutMs: config.limits.partial_message_timeout,
    },
    keepalive: keepaliveFromConfig(config),
  }
  if (logger !== undefined) opts.logger = logger
  return opts
}

/** nat.keepalive -> the primary's stream keep-alives (docs/nat.md); null when off. */
export function keepaliveFromConfig(config: FrozenConfig): KeepaliveSettings | null {
  const k = config.nat.keepalive
  return k.enabled ? { intervalMs: k.interval, failuresRemove: k.failures_remove } : null
}

function tlsFor(config: FrozenConfig, own: FrozenConfig['listen'][number]['tls']): TlsOptions {
  const t = config.tls
  const certificates = own !== null
    ? [{ cert: own.cert, key: own.key, ...(own.sni.length > 0 ? { serverNames: [...own.sni] } : {}) }]
    : t.certificates.map(c => ({ cert: c.cert, key: c.key, ...(c.server_names.length > 0 ? { serverNames: [...c.server_names] } : {}) }))
  const o: TlsOptions = {
    certificates,
    minVersion: t.min_version,
    verifyClient: t.verify_client ? 'require' : 'none',
  }
  if (t.ca !== null) o.ca = t.ca
  return o
}
