// Configuration (as validated by @sipedge/config) -> Engine options. Kept apart from main.ts so
// tests and the benchmark build an engine exactly as the command does.
import type { FrozenConfig } from '@sipedge/config'
import { isIP } from 'node:net'
import type { EngineOptions, KeepaliveSettings, ListenerOptions, PikeSettings, TlsOptions, Logger } from '@sipedge/transport'
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
      maxConnectionsPerSource: config.limits.max_connections_per_source,
    },
    keepalive: keepaliveFromConfig(config),
    pike: pikeFromConfig(config),
  }
  if (logger !== undefined) opts.logger = logger
  return opts
}

/** nat.keepalive -> the primary's stream keep-alives (docs/nat.md); null when off. */
export function keepaliveFromConfig(config: FrozenConfig): KeepaliveSettings | null {
  const k = config.nat.keepalive
  return k.enabled ? { intervalMs: k.interval, failuresRemove: k.failures_remove } : null
}

/**
 * pike -> the primary's flood detection (docs/security.md "Flood detection (pike)"). The
 * IP-literal destinations of the dispatcher sets join `allow`: an application server is never banned.
 */
export function pikeFromConfig(config: FrozenConfig): PikeSettings {
  const p = config.pike
  const allow = [...p.allow]
  for (const set of Object.values(config.dispatcher.sets)) {
    for (const d of set.destinations) {
      const host = /^sips?:(?:[^@;?]*@)?(\[[^\]]+\]|[^:;?>]+)/i.exec(d.uri)?.[1]
      const ip = host?.startsWith('[') === true ? host.slice(1, -1) : host
      if (ip !== undefined && isIP(ip) !== 0) allow.push(ip)
    }
  }
  // domains' unset keys were filled with the global values by the schema
  const cls = (d: FrozenConfig['pike']['domains'][string]) => ({ enabled: d.enabled, windowMs: d.window, maxRequests: d.max_requests, banTimeMs: d.ban_time })
  const domains: Record<string, PikeSettings['domains'][string]> = {}
  for (const [name, d] of Object.entries(p.domains)) domains[name.toLowerCase()] = cls(d)
  return { ...cls(p), allow, domains }
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
