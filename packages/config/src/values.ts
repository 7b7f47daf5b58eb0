// Small, dependency-free parsers for the value formats the configuration uses. Each returns
// either the parsed value or a string saying what was expected (the caller adds the position).
// Config deliberately does not import @sipedge/sip: a light SIP URI check is enough here.
import { isIPv4, isIPv6 } from 'node:net'

export type Parsed<T> = { ok: true; value: T } | { ok: false; error: string }
const ok = <T>(value: T): Parsed<T> => ({ ok: true, value })
const fail = (error: string): Parsed<never> => ({ ok: false, error })

export const q = (v: unknown): string => JSON.stringify(v)

// ---------------------------------------------------------------- durations and sizes

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/**
 * `500ms`, `5s`, `2m`, `1h`, `12h`, `1d`, compound `1h30m`. A plain number is seconds, as in
 * SIP itself (Expires, Min-Expires) and in the Kamailio/OpenSIPS parameters operators port
 * their settings from: `min_expires: 60` means one minute.
 */
export function parseDuration(v: unknown): Parsed<number> {
  if (typeof v === 'number') {
    if (Number.isFinite(v) && v >= 0) return ok(Math.round(v * 1000))
    return fail(`expected a duration such as "5s" or "500ms" (a plain number is seconds), got ${v}`)
  }
  if (typeof v !== 'string') return fail(`expected a duration such as "5s" or "500ms", got ${describe(v)}`)
  const s = v.trim()
  if (/^\d+(?:\.\d+)?$/.test(s)) return ok(Math.round(Number(s) * 1000))
  let total = 0
  let rest = s
  const part = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*/
  if (rest === '') return fail('expected a duration such as "5s" or "500ms", got ""')
  while (rest !== '') {
    const m = part.exec(rest)
    if (!m) return fail(`expected a duration such as "5s", "500ms", "2m", "1h", got ${q(v)}`)
    total += Number(m[1]) * DURATION_UNITS[m[2]!]!
    rest = rest.slice(m[0].length)
  }
  return ok(Math.round(total))
}

export function formatDuration(ms: number): string {
  if (ms === 0) return '0s'
  for (const [u, f] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const)
    if (ms % f === 0) return `${ms / f}${u}`
  return `${ms}ms`
}

const SIZE_UNITS: Record<string, number> = {
  b: 1, kb: 1000, mb: 1000 ** 2, gb: 1000 ** 3, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3,
}

/** Integer bytes, or `64KiB`, `4MiB`, `1GiB`, `500KB`, `10MB`, `512B`. */
export function parseSize(v: unknown): Parsed<number> {
  if (typeof v === 'number') {
    if (Number.isInteger(v) && v >= 0) return ok(v)
    return fail(`expected a whole number of bytes or a size such as "64KiB", got ${v}`)
  }
  if (typeof v !== 'string') return fail(`expected a size such as "64KiB" or "4MiB", got ${describe(v)}`)
  const m = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]+)$/.exec(v.trim())
  const f = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined
  if (!m || f === undefined) return fail(`expected a size such as "65535", "64KiB", "4MiB", got ${q(v)}`)
  const n = Number(m[1]) * f
  if (!Number.isInteger(n)) return fail(`size ${q(v)} is not a whole number of bytes`)
  return ok(n)
}

export function formatSize(n: number): string {
  for (const [u, f] of [['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const)
    if (n >= f && n % f === 0) return `${n / f}${u}`
  return String(n)
}

// ---------------------------------------------------------------- hosts, addresses, URIs

const LABEL = '[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?'
const HOSTNAME_RE = new RegExp(`^(?:${LABEL})(?:\\.${LABEL})*\\.?$`)

export function isHostname(s: string): boolean {
  return s.length <= 253 && HOSTNAME_RE.test(s) && !/^[\d.]+$/.test(s)
}

/** A host as written in a URI: hostname, IPv4 or [IPv6]. */
export function isUriHost(s: string): boolean {
  if (s.startsWith('[') && s.endsWith(']')) return isIPv6(s.slice(1, -1))
  return isIPv4(s) || isHostname(s)
}

export function parsePort(s: string): number | undefined {
  if (!/^\d{1,5}$/.test(s)) return undefined
  const n = Number(s)
  return n >= 1 && n <= 65535 ? n : undefined
}

/** `host`, `host:port`, `1.2.3.4:port`, `[v6]:port`. */
export function parseHostPort(v: string, opts: { requirePort: boolean; ipOnly: boolean }): Parsed<{ host: string; port: number | null }> {
  let host: string
  let portText: string | undefined
  const m6 = /^\[([^\]]+)\](?::(.*))?$/.exec(v)
  if (m6) {
    if (!isIPv6(m6[1]!)) return fail(`${q(m6[1])} is not an IPv6 address`)
    host = m6[1]!
    portText = m6[2]
  } else {
    if (isIPv6(v)) return fail(`IPv6 addresses must be written in brackets, e.g. "[${v}]:5060"`)
    const i = v.lastIndexOf(':')
    host = i < 0 ? v : v.slice(0, i)
    portText = i < 0 ? undefined : v.slice(i + 1)
    if (opts.ipOnly ? !isIPv4(host) : !(isIPv4(host) || isHostname(host)))
      return fail(`${q(host)} is not ${opts.ipOnly ? 'an IPv4 address or a bracketed [IPv6] address' : 'a host name or IP address'}`)
  }
  if (portText === undefined) {
    if (opts.requirePort) return fail(`port missing in ${q(v)}`)
    return ok({ host, port: null })
  }
  const port = parsePort(portText)
  if (port === undefined) return fail(`port must be a number from 1 to 65535, got ${q(portText)}`)
  return ok({ host, port })
}

const URI_RE = /^(sips?):(?:([^@\s;?]+)@)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::([0-9]+))?((?:;[^;?\s]*)*)(\?\S*)?$/

/** Light check of a sip:/sips: URI (RFC 3261 §19.1): scheme, optional user, host, port, params. */
export function checkSipUri(v: string): string | undefined {
  const m = URI_RE.exec(v)
  if (!m) return `expected a sip: or sips: URI such as "sip:10.0.0.5:5060", got ${q(v)}`
  if (!isUriHost(m[3]!)) return `${q(m[3])} in ${q(v)} is not a valid host`
  if (m[4] !== undefined && parsePort(m[4]) === undefined) return `port ${m[4]} in ${q(v)} is out of range 1-65535`
  for (const p of (m[5] ?? '').split(';').slice(1)) {
    if (!/^[A-Za-z0-9\-_.!~*'()%]+(=[A-Za-z0-9\-_.!~*'()%[\]/:&+$]*)?$/.test(p)) return `bad URI parameter ${q(p)} in ${q(v)}`
  }
  return undefined
}

// ---------------------------------------------------------------- CIDR

export interface Cidr { family: 4 | 6; address: string; prefix: number }

export function parseCidr(v: string): Parsed<Cidr> {
  const slash = v.indexOf('/')
  const addr = slash < 0 ? v : v.slice(0, slash)
  const family = isIPv4(addr) ? 4 : isIPv6(addr) ? 6 : 0
  if (family === 0) return fail(`expected an address or CIDR block such as "10.0.0.0/8" or "fd00::/8", got ${q(v)}`)
  const max = family === 4 ? 32 : 128
  let prefix = max
  if (slash >= 0) {
    const p = v.slice(slash + 1)
    if (!/^\d{1,3}$/.test(p) || Number(p) > max) return fail(`prefix length in ${q(v)} must be 0-${max}`)
    prefix = Number(p)
  }
  return ok({ family, address: addr, prefix })
}

// ---------------------------------------------------------------- store URLs

export type StoreUrl =
  | { kind: 'lmdb'; path: string }
  | { kind: 'redis'; tls: boolean; host: string; port: number; db: number; username: string | null; password: string | null }
  | { kind: 'redis-sentinel'; sentinels: Array<{ host: string; port: number }>; name: string; db: number; username: string | null; password: string | null }

/** `lmdb:PATH`, `redis://[user:pass@]host[:port][/db]`, `rediss://...`, `redis+sentinel://[user:pass@]h1[:p1][,h2[:p2]...]/NAME[/db]`. */
export function parseStoreUrl(v: string): Parsed<StoreUrl> {
  if (v.startsWith('lmdb:')) {
    const path = v.slice(5)
    if (path === '') return fail('lmdb: store needs a directory, e.g. "lmdb:./var/location"')
    // `?sync=commit|Nms` (parsed by @sipedge/store; checked here so a typo fails at load)
    const qi = path.indexOf('?')
    if (qi >= 0) {
      for (const part of path.slice(qi + 1).split('&')) {
        if (part === '') continue
        const [k, val = ''] = part.split('=', 2) as [string, string?]
        if (k !== 'sync') return fail(`unknown lmdb option ${q(k)} in ${q(v)} (known: sync)`)
        const m = /^(\d{1,5})(ms)?$/.exec(val)
        if (val !== 'commit' && !(m && Number(m[1]) >= 1 && Number(m[1]) <= 60_000)) return fail(`sync in ${q(v)} must be "commit" or an interval of 1-60000 ms such as "100ms"`)
      }
      if (qi === 0) return fail('lmdb: store needs a directory, e.g. "lmdb:./var/location"')
    }
    return ok({ kind: 'lmdb', path })
  }
  const m = /^(rediss?):\/\/(?:([^:@/]*)(?::([^@/]*))?@)?(\[[^\]]+\]|[^:/]+)(?::(\d+))?(?:\/(\d+)?)?$/.exec(v)
  if (m) {
    const host = m[4]!.startsWith('[') ? m[4]!.slice(1, -1) : m[4]!
    if (!(isIPv4(host) || isIPv6(host) || isHostname(host))) return fail(`${q(host)} in ${q(v)} is not a valid host`)
    const port = m[5] === undefined ? 6379 : parsePort(m[5])
    if (port === undefined) return fail(`port in ${q(v)} must be 1-65535`)
    const db = m[6] === undefined ? 0 : Number(m[6])
    if (db > 15) return fail(`redis database number in ${q(v)} must be 0-15`)
    return ok({
      kind: 'redis', tls: m[1] === 'rediss', host, port, db,
      username: m[2] ? decodeURIComponent(m[2]) : null, password: m[3] !== undefined ? decodeURIComponent(m[3]) : null,
    })
  }
  // issue 15: Redis behind Sentinel, through the client's own support
  const s = /^redis\+sentinel:\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/@]+)\/([A-Za-z0-9._-]+)(?:\/(\d+))?(?:\?prefix=[^&]*)?$/.exec(v)
  if (s) {
    const sentinels: Array<{ host: string; port: number }> = []
    for (const part of s[3]!.split(',')) {
      const hm = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(part)
      if (!hm) return fail(`sentinel address ${q(part)} in ${q(v)} must be HOST[:PORT]`)
      const host = hm[1]!.startsWith('[') ? hm[1]!.slice(1, -1) : hm[1]!
      if (!(isIPv4(host) || isIPv6(host) || isHostname(host))) return fail(`${q(host)} in ${q(v)} is not a valid host`)
      const port = hm[2] === undefined ? 26379 : parsePort(hm[2])
      if (port === undefined) return fail(`port in ${q(v)} must be 1-65535`)
      sentinels.push({ host, port })
    }
    const db = s[5] === undefined ? 0 : Number(s[5])
    if (db > 15) return fail(`redis database number in ${q(v)} must be 0-15`)
    return ok({
      kind: 'redis-sentinel', sentinels, name: s[4]!, db,
      username: s[1] ? decodeURIComponent(s[1]) : null, password: s[2] !== undefined ? decodeURIComponent(s[2]) : null,
    })
  }
  return fail(`expected a store URL "lmdb:PATH", "redis://HOST:PORT/DB", "rediss://..." or "redis+sentinel://HOST:PORT[,HOST:PORT...]/NAME/DB", got ${q(v)}`)
}

// ---------------------------------------------------------------- misc

export const METHOD_TOKEN_RE = /^[A-Za-z0-9\-.!%*_+`'~]+$/ // RFC 3261 token
export const HEADER_NAME_RE = /^[A-Za-z0-9\-.!%*_+`'~]+$/

export function describe(v: unknown): string {
  if (v === null || v === undefined) return 'nothing (null)'
  if (Array.isArray(v)) return 'a list'
  if (typeof v === 'object') return 'a mapping'
  if (typeof v === 'string') return `string ${q(v)}`
  return `${typeof v} ${String(v)}`
}

/** Levenshtein distance, for "did you mean" hints. */
export function editDistance(a: string, b: string): number {
  const dp = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    let prev = dp[0]!
    dp[0] = i
    for (let j = 1; j <= b.length; j++) {
      const tmp = dp[j]!
      dp[j] = Math.min(dp[j]! + 1, dp[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1))
      prev = tmp
    }
  }
  return dp[b.length]!
}

export function suggest(key: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined
  let bestD = Infinity
  const k = key.toLowerCase()
  for (const c of candidates) {
    const d = editDistance(k, c.toLowerCase())
    if (d < bestD) { bestD = d; best = c }
  }
  return best !== undefined && bestD <= Math.max(1, Math.min(3, Math.floor(best.length / 3))) ? best : undefined
}
