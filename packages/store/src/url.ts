import { StoreError, StoreErrorCode } from './errors.js'

export type ParsedStoreUrl =
  | { backend: 'lmdb'; path: string; syncMs: number }
  | {
    backend: 'redis'; host: string; port: number; db: number; tls: boolean; username?: string; password?: string; keyPrefix?: string
    /** redis+sentinel:// (issue 15): the Sentinels to ask, and the monitored primary's name (host/port unused). */
    sentinels?: Array<{ host: string; port: number }>
    sentinelName?: string
  }

/** Default LMDB flush interval: commits reach the OS at once (a restart loses nothing), the disk within this. */
export const LMDB_DEFAULT_SYNC_MS = 100

/**
 * `lmdb:PATH[?sync=commit|MSms]` (`lmdb:///abs/path` also accepted) or `redis://[user:pass@]host[:port][/db][?prefix=p]`
 * (`rediss://` for TLS).
 */
export function parseStoreUrl(url: string): ParsedStoreUrl {
  if (typeof url !== 'string' || url.length === 0) throw badUrl('store URL is empty')
  if (url.startsWith('lmdb:')) {
    let path = url.slice(5)
    let syncMs = LMDB_DEFAULT_SYNC_MS
    const qi = path.indexOf('?')
    if (qi >= 0) {
      const r = parseLmdbQuery(path.slice(qi + 1))
      if (typeof r === 'string') throw badUrl(`store URL '${url}': ${r}`)
      syncMs = r
      path = path.slice(0, qi)
    }
    if (path.startsWith('//')) path = path.slice(2)
    if (path.length === 0) throw badUrl(`store URL '${url}' has no path (use lmdb:/var/lib/sipedge/store)`)
    return { backend: 'lmdb', path, syncMs }
  }
  if (url.startsWith('redis://') || url.startsWith('rediss://')) {
    let u: URL
    try {
      u = new URL(url)
    } catch {
      throw badUrl(`store URL '${redact(url)}' is not a valid URL`)
    }
    if (!u.hostname) throw badUrl(`store URL '${redact(url)}' has no host`)
    const port = u.port ? Number(u.port) : 6379
    const dbText = u.pathname.replace(/^\//, '')
    if (dbText !== '' && !/^\d{1,5}$/.test(dbText)) throw badUrl(`store URL '${redact(url)}': database must be a number, got '${dbText}'`)
    const out: ParsedStoreUrl = {
      backend: 'redis',
      host: u.hostname.replace(/^\[|\]$/g, ''),
      port,
      db: dbText === '' ? 0 : Number(dbText),
      tls: u.protocol === 'rediss:',
    }
    if (u.username) out.username = decodeURIComponent(u.username)
    if (u.password) out.password = decodeURIComponent(u.password)
    const prefix = u.searchParams.get('prefix')
    if (prefix !== null) out.keyPrefix = prefix
    return out
  }
  if (url.startsWith('redis+sentinel://')) return parseSentinelUrl(url)
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1]
  throw badUrl(scheme ? `unknown store backend '${scheme}' (use lmdb:PATH or redis://host:port/db)` : `store URL '${url}' has no scheme (use lmdb:PATH or redis://host:port/db)`)
}

/**
 * The query of an `lmdb:` URL: `sync=commit` (0: every commit flushed to disk by lmdb's write
 * thread) or `sync=N` / `sync=Nms` (1..60000: commits in the caller's thread without fsync, the
 * disk flushed every N ms while there are writes). Returns the interval or an error message.
 */
export function parseLmdbQuery(query: string): number | string {
  let syncMs = LMDB_DEFAULT_SYNC_MS
  for (const part of query.split('&')) {
    if (part === '') continue
    const eq = part.indexOf('=')
    const k = eq < 0 ? part : part.slice(0, eq)
    const v = eq < 0 ? '' : part.slice(eq + 1)
    if (k !== 'sync') return `unknown lmdb option '${k}' (known: sync)`
    if (v === 'commit') { syncMs = 0; continue }
    const m = /^(\d{1,5})(ms)?$/.exec(v)
    const n = m ? Number(m[1]) : NaN
    if (!(n >= 1 && n <= 60_000)) return `sync must be 'commit' or an interval of 1-60000 ms such as '100ms', got '${v}'`
    syncMs = n
  }
  return syncMs
}

/**
 * `redis+sentinel://[user:pass@]h1[:p1][,h2[:p2]...]/NAME[/DB][?prefix=p]` (issue 15): ioredis asks
 * the Sentinels (default port 26379) for the current primary of NAME, and again after a failover.
 */
function parseSentinelUrl(url: string): ParsedStoreUrl {
  const m = /^redis\+sentinel:\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/@]+)\/([A-Za-z0-9._-]+)(?:\/(\d{1,5}))?(?:\?(.*))?$/.exec(url)
  if (!m) throw badUrl(`store URL '${redact(url)}' must be redis+sentinel://HOST[:PORT][,HOST[:PORT]...]/NAME[/DB]`)
  const sentinels: Array<{ host: string; port: number }> = []
  for (const part of m[3]!.split(',')) {
    const hm = /^(\[[^\]]+\]|[^:]+)(?::(\d{1,5}))?$/.exec(part)
    if (!hm) throw badUrl(`store URL '${redact(url)}': sentinel address '${part}' must be HOST[:PORT]`)
    sentinels.push({ host: hm[1]!.replace(/^\[|\]$/g, ''), port: hm[2] ? Number(hm[2]) : 26379 })
  }
  const out: ParsedStoreUrl = { backend: 'redis', host: sentinels[0]!.host, port: sentinels[0]!.port, db: m[5] ? Number(m[5]) : 0, tls: false, sentinels, sentinelName: m[4]! }
  if (m[1]) out.username = decodeURIComponent(m[1])
  if (m[2]) out.password = decodeURIComponent(m[2])
  const prefix = new URLSearchParams(m[6] ?? '').get('prefix')
  if (prefix !== null) out.keyPrefix = prefix
  return out
}

/** The URL without its password, fit for logs. */
export function redact(url: string): string {
  return url.replace(/(\/\/[^:/@]*:)[^@/]*@/, '$1***@')
}

function badUrl(message: string): StoreError {
  return new StoreError(StoreErrorCode.BAD_URL, message)
}
