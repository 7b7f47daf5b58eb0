// Digest credentials and challenges (RFC 3261 §22.4, RFC 7616, RFC 8760 for SHA-256 in SIP).
import { createHash, timingSafeEqual } from 'node:crypto'

export type DigestAlgorithm = 'MD5' | 'SHA-256'

/** The parameters of one `Digest ...` credentials value, names lower-cased, quotes removed. */
export interface DigestCredentials {
  username: string
  realm: string
  nonce: string
  uri: string
  response: string
  algorithm: string
  qop: string | undefined
  nc: string | undefined
  cnonce: string | undefined
  opaque: string | undefined
}

/**
 * Parses `Digest k=v, k="v", ...`. Returns null when the scheme is not Digest or a mandatory
 * parameter is missing. Quoted strings may contain commas and escaped quotes (RFC 3261 §25.1).
 */
export function parseDigest(value: string): DigestCredentials | null {
  let i = 0
  const n = value.length
  while (i < n && (value.charCodeAt(i) === 32 || value.charCodeAt(i) === 9)) i++
  if (value.slice(i, i + 6).toLowerCase() !== 'digest') return null
  i += 6
  if (i < n && value.charCodeAt(i) !== 32 && value.charCodeAt(i) !== 9) return null
  const p = new Map<string, string>()
  // Bounded: every round consumes at least one character.
  while (i < n) {
    while (i < n && (value[i] === ' ' || value[i] === '\t' || value[i] === ',' || value[i] === '\r' || value[i] === '\n')) i++
    if (i >= n) break
    const eq = value.indexOf('=', i)
    if (eq < 0) return null
    const name = value.slice(i, eq).trim().toLowerCase()
    i = eq + 1
    while (i < n && (value[i] === ' ' || value[i] === '\t')) i++
    let v = ''
    if (value[i] === '"') {
      i++
      let out = ''
      while (i < n && value[i] !== '"') {
        if (value[i] === '\\' && i + 1 < n) i++
        out += value[i]
        i++
      }
      if (i >= n) return null // unterminated quoted string
      i++
      v = out
    } else {
      const end = value.indexOf(',', i)
      v = (end < 0 ? value.slice(i) : value.slice(i, end)).trim()
      i = end < 0 ? n : end
    }
    if (name.length === 0) return null
    if (!p.has(name)) p.set(name, v)
  }
  const username = p.get('username')
  const realm = p.get('realm')
  const nonce = p.get('nonce')
  const uri = p.get('uri')
  const response = p.get('response')
  if (username === undefined || realm === undefined || nonce === undefined || uri === undefined || response === undefined) return null
  return {
    username, realm, nonce, uri, response,
    algorithm: p.get('algorithm') ?? 'MD5',
    qop: p.get('qop'),
    nc: p.get('nc'),
    cnonce: p.get('cnonce'),
    opaque: p.get('opaque'),
  }
}

export function hashHex(algorithm: DigestAlgorithm, data: string): string {
  return createHash(algorithm === 'MD5' ? 'md5' : 'sha256').update(data, 'utf8').digest('hex')
}

/** HA1 = H(username ":" realm ":" password). */
export function ha1Of(algorithm: DigestAlgorithm, user: string, realm: string, password: string): string {
  return hashHex(algorithm, user + ':' + realm + ':' + password)
}

/** request-digest for qop=auth (RFC 7616 §3.4.1), or the RFC 2069 form when qop is absent. */
export function digestResponse(algorithm: DigestAlgorithm, ha1: string, method: string, c: Pick<DigestCredentials, 'nonce' | 'uri' | 'qop' | 'nc' | 'cnonce'>): string {
  const ha2 = hashHex(algorithm, method + ':' + c.uri)
  if (c.qop === undefined) return hashHex(algorithm, ha1 + ':' + c.nonce + ':' + ha2)
  return hashHex(algorithm, ha1 + ':' + c.nonce + ':' + (c.nc ?? '') + ':' + (c.cnonce ?? '') + ':' + c.qop + ':' + ha2)
}

/** Constant-time comparison of two hex digests (case-insensitive). */
export function sameDigest(a: string, b: string): boolean {
  const x = Buffer.from(a.toLowerCase(), 'latin1')
  const y = Buffer.from(b.toLowerCase(), 'latin1')
  if (x.length !== y.length) {
    // Still spend a comparison so that a length mismatch is not measurably faster.
    timingSafeEqual(x, x)
    return false
  }
  return timingSafeEqual(x, y)
}

/** One challenge value: `Digest realm="..", nonce="..", algorithm=.., qop="auth"[, stale=true]`. */
export function challenge(realm: string, nonce: string, algorithm: DigestAlgorithm, stale: boolean): string {
  return 'Digest realm="' + quote(realm) + '", nonce="' + nonce + '", algorithm=' + algorithm + ', qop="auth"' + (stale ? ', stale=true' : '')
}

function quote(s: string): string {
  return s.replace(/["\\]/g, m => '\\' + m)
}

export function normalizeAlgorithm(a: string): DigestAlgorithm | null {
  const u = a.toUpperCase()
  if (u === 'MD5') return 'MD5'
  if (u === 'SHA-256') return 'SHA-256'
  return null
}
