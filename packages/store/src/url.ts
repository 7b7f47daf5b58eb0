import { StoreError, StoreErrorCode } from './errors.js'

export type ParsedStoreUrl =
  | { backend: 'lmdb'; path: string }
  | { backend: 'redis'; host: string; port: number; db: number; tls: boolean; username?: string; password?: string; keyPrefix?: string }

/**
 * `lmdb:PATH` (`lmdb:///abs/path` also accepted) or `redis://[user:pass@]host[:port][/db][?prefix=p]`
 * (`rediss://` for TLS).
 */
export function parseStoreUrl(url: string): ParsedStoreUrl {
  if (typeof url !== 'string' || url.length === 0) throw badUrl('store URL is empty')
  if (url.startsWith('lmdb:')) {
    let path = url.slice(5)
    if (path.startsWith('//')) path = path.slice(2)
    if (path.length === 0) throw badUrl(`store URL '${url}' has no path (use lmdb:/var/lib/sipedge/store)`)
    return { backend: 'lmdb', path }
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
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1]
  throw badUrl(scheme ? `unknown store backend '${scheme}' (use lmdb:PATH or redis://host:port/db)` : `store URL '${url}' has no scheme (use lmdb:PATH or redis://host:port/db)`)
}

/** The URL without its password, fit for logs. */
export function redact(url: string): string {
  return url.replace(/(\/\/[^:/@]*:)[^@/]*@/, '$1***@')
}

function badUrl(message: string): StoreError {
  return new StoreError(StoreErrorCode.BAD_URL, message)
}
