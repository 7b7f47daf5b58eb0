// Next-hop URIs to addresses. IP literals are used as they are; host names are resolved with
// dns.promises.lookup (the system resolver: /etc/hosts, then DNS; no NAPTR/SRV yet) and cached,
// so the per-message path stays synchronous once a name has been seen. Dispatcher destinations
// are resolved at load and refreshed in the background.
import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'
import { parseUri, type SipUri } from '@sipedge/sip'
import { defaultPort } from './identity.js'
import type { TransportName } from './types.js'

const TRANSPORTS = new Set<string>(['udp', 'tcp', 'tls', 'ws', 'wss'])

export interface Hop {
  transport: TransportName
  /** Host without brackets. */
  host: string
  port: number
}

/** Transport (transport= param, sips: tls, default udp), host and port (default 5060/5061) of a URI. */
export function hopOf(u: SipUri): Hop {
  const tp = u.params.get('transport')
  let transport: TransportName = u.scheme === 'sips' ? 'tls' : 'udp'
  if (tp !== undefined && tp !== null) {
    const t = tp.toLowerCase()
    if (TRANSPORTS.has(t)) transport = t as TransportName
  }
  const maddr = u.params.get('maddr')
  const h = maddr !== undefined && maddr !== null ? maddr : u.host
  const host = h.length > 1 && h.charCodeAt(0) === 0x5b ? h.slice(1, -1) : h
  return { transport, host, port: u.port ?? defaultPort(transport, u.scheme) }
}

export function hopOfUri(uri: string): Hop {
  return hopOf(parseUri(uri))
}

interface Entry { address: string | null; expires: number; pending: Promise<string | null> | null }

export class Resolver {
  private readonly cache = new Map<string, Entry>()
  private readonly ttlMs: number
  private readonly negativeTtlMs: number
  lookups = 0
  failures = 0

  constructor(opts?: { ttlMs?: number; negativeTtlMs?: number }) {
    this.ttlMs = opts?.ttlMs ?? 60_000
    this.negativeTtlMs = opts?.negativeTtlMs ?? 5_000
  }

  /**
   * The address now, without waiting: an IP literal, or a cached name (a stale entry is returned
   * and refreshed in the background). undefined: not known yet (call `resolve`); null: failed.
   */
  peek(host: string): string | null | undefined {
    if (isIP(host) !== 0) return host
    const e = this.cache.get(host.toLowerCase())
    if (e === undefined) return undefined
    if (e.expires <= Date.now() && e.pending === null) void this.refresh(host.toLowerCase(), e)
    return e.address
  }

  async resolve(host: string): Promise<string | null> {
    if (isIP(host) !== 0) return host
    const key = host.toLowerCase()
    let e = this.cache.get(key)
    if (e !== undefined && e.pending !== null) return e.pending
    if (e !== undefined && e.address !== null && e.expires > Date.now()) return e.address
    if (e === undefined) { e = { address: null, expires: 0, pending: null }; this.cache.set(key, e) }
    return this.refresh(key, e)
  }

  private refresh(key: string, e: Entry): Promise<string | null> {
    this.lookups++
    const p = lookup(key).then(
      r => { e.address = r.address; e.expires = Date.now() + this.ttlMs; e.pending = null; return r.address },
      () => { this.failures++; e.expires = Date.now() + this.negativeTtlMs; e.pending = null; return e.address },
    )
    e.pending = p
    return p
  }
}
