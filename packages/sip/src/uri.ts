/**
 * SIP / SIPS / TEL URIs (RFC 3261 §19.1, §25.1; RFC 3966) and any other absoluteURI kept opaque.
 * Components keep their escaped form as written (so formatUri() round-trips); comparison
 * (§19.1.4) unescapes.
 */
import { SipParseError, ErrorCodes } from './errors.js'
import { DIGIT, HOSTCHAR, IPV6CHAR, SCHEMECHAR, USERCHAR, PASSCHAR, PARAMCHAR, HDRCHAR } from './tables.js'
import { EMPTY_PARAMS, EMPTY_URI_HEADERS } from './params.js'

export interface SipUri {
  scheme: string                      // lower-case: 'sip' | 'sips' | 'tel' | other
  user: string | undefined            // as written (escaped); for tel: the number
  password: string | undefined
  host: string                        // as written; IPv6 references keep their brackets
  port: number | undefined
  params: Map<string, string | null>  // names lower-cased, values as written (null = no value)
  headers: Map<string, string>        // ?name=value&... as written
  raw: string
  /** Everything after "scheme:" for schemes other than sip/sips/tel. */
  opaque: string | undefined
}

function bad(s: string, why: string): SipParseError {
  return new SipParseError(ErrorCodes.ERR_SIP_BAD_URI, 'Bad URI', 400, 'Bad URI (' + why + '): ' + s.slice(0, 200))
}

function checkEscapes(s: string, a: number, b: number, table: Uint8Array, what: string, src: string): void {
  for (let i = a; i < b; i++) {
    const c = s.charCodeAt(i)
    if (c > 255 || table[c] === 0) throw bad(src, 'invalid character in ' + what)
    if (c === 37 /* % */) {
      if (i + 2 >= b) throw bad(src, 'truncated escape in ' + what)
      if (!isHex(s.charCodeAt(i + 1)) || !isHex(s.charCodeAt(i + 2))) throw bad(src, 'bad escape in ' + what)
      i += 2
    }
  }
}

function isHex(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102)
}

/** Parse host[:port] in s[a, b). Returns port (or undefined); host via out param. */
function parseHostPort(s: string, a: number, b: number, src: string, out: { host: string; port: number | undefined }): void {
  if (a >= b) throw bad(src, 'empty host')
  let hostEnd: number
  if (s.charCodeAt(a) === 91 /* [ */) {
    const close = s.indexOf(']', a)
    if (close < 0 || close >= b) throw bad(src, 'unterminated IPv6 reference')
    if (close - a < 3) throw bad(src, 'empty IPv6 reference')
    for (let i = a + 1; i < close; i++) {
      const c = s.charCodeAt(i)
      if (c > 255 || IPV6CHAR[c] === 0) throw bad(src, 'bad IPv6 reference')
    }
    hostEnd = close + 1
  } else {
    hostEnd = a
    while (hostEnd < b) {
      const c = s.charCodeAt(hostEnd)
      if (c === 58 /* : */) break
      if (c > 255 || HOSTCHAR[c] === 0) throw bad(src, 'invalid character in host')
      hostEnd++
    }
    if (hostEnd === a) throw bad(src, 'empty host')
  }
  out.host = s.slice(a, hostEnd)
  if (hostEnd === b) { out.port = undefined; return }
  if (s.charCodeAt(hostEnd) !== 58) throw bad(src, 'junk after host')
  out.port = parsePort(s, hostEnd + 1, b, src)
}

function parsePort(s: string, a: number, b: number, src: string): number {
  if (a >= b || b - a > 5) throw bad(src, 'bad port')
  let n = 0
  for (let i = a; i < b; i++) {
    const c = s.charCodeAt(i)
    if (c > 255 || DIGIT[c] === 0) throw bad(src, 'bad port')
    n = n * 10 + (c - 48)
  }
  if (n > 65535) throw bad(src, 'port out of range')
  return n
}

/** ";name[=value]" list in s[a, b) into map (names lower-cased). */
function parseUriParams(s: string, a: number, b: number, src: string, params: Map<string, string | null>): void {
  let i = a
  while (i < b) {
    // s[i] === ';'
    let j = i + 1
    while (j < b && s.charCodeAt(j) !== 59) j++
    const eq = s.indexOf('=', i + 1)
    let name: string
    let value: string | null
    if (eq >= 0 && eq < j) {
      checkEscapes(s, i + 1, eq, PARAMCHAR, 'URI parameter', src)
      checkEscapes(s, eq + 1, j, PARAMCHAR, 'URI parameter', src)
      name = s.slice(i + 1, eq)
      value = s.slice(eq + 1, j)
    } else {
      checkEscapes(s, i + 1, j, PARAMCHAR, 'URI parameter', src)
      name = s.slice(i + 1, j)
      value = null
    }
    if (name.length === 0) throw bad(src, 'empty URI parameter')
    const key = name.toLowerCase()
    if (!params.has(key)) params.set(key, value)
    i = j
  }
}

export function parseUri(input: string): SipUri {
  const s = input
  const n = s.length
  let i = 0
  while (i < n) {
    const c = s.charCodeAt(i)
    if (c === 58) break
    if (c > 255 || SCHEMECHAR[c] === 0) throw bad(s, 'bad scheme')
    i++
  }
  if (i === 0 || i >= n) throw bad(s, 'missing scheme')
  const c0 = s.charCodeAt(0)
  if (!((c0 >= 65 && c0 <= 90) || (c0 >= 97 && c0 <= 122))) throw bad(s, 'bad scheme')
  const scheme = s.slice(0, i).toLowerCase()
  // shared empty Maps unless the URI has parameters or headers (params.ts EMPTY_PARAMS)
  let params = EMPTY_PARAMS
  let headers = EMPTY_URI_HEADERS
  const start = i + 1
  if (scheme === 'sip' || scheme === 'sips') {
    // Userinfo cannot contain an unescaped '@', and neither can params or headers, so the
    // first '@' (if any) ends the userinfo. The user part may contain ';' '?' '/' (semiuri).
    const at = s.indexOf('@', start)
    let user: string | undefined
    let password: string | undefined
    let hp = start
    if (at >= 0) {
      const colon = s.indexOf(':', start)
      if (colon >= 0 && colon < at) {
        checkEscapes(s, start, colon, USERCHAR, 'user', s)
        checkEscapes(s, colon + 1, at, PASSCHAR, 'password', s)
        user = s.slice(start, colon)
        password = s.slice(colon + 1, at)
      } else {
        checkEscapes(s, start, at, USERCHAR, 'user', s)
        user = s.slice(start, at)
      }
      if (user.length === 0) throw bad(s, 'empty user')
      hp = at + 1
    }
    let end = n
    const q = s.indexOf('?', hp)
    if (q >= 0) end = q
    let semi = s.indexOf(';', hp)
    if (semi < 0 || semi > end) semi = end
    const out = { host: '', port: undefined as number | undefined }
    parseHostPort(s, hp, semi, s, out)
    if (semi < end) parseUriParams(s, semi, end, s, params = new Map())
    if (q >= 0) parseUriHeaders(s, q + 1, n, s, headers = new Map())
    return { scheme, user, password, host: out.host, port: out.port, params, headers, raw: s, opaque: undefined }
  }
  if (scheme === 'tel') {
    // RFC 3966: telephone-subscriber *par; we keep the number in `user`.
    let semi = s.indexOf(';', start)
    if (semi < 0) semi = n
    const num = s.slice(start, semi)
    if (num.length === 0) throw bad(s, 'empty telephone number')
    for (let k = 0; k < num.length; k++) {
      const c = num.charCodeAt(k)
      if (!(DIGIT[c] === 1 || c === 43 || c === 45 || c === 46 || c === 40 || c === 41 || c === 42 || c === 35 ||
        (c >= 65 && c <= 70) || (c >= 97 && c <= 102) || c === 112 || c === 119 || c === 80 || c === 87)) {
        throw bad(s, 'bad telephone number')
      }
    }
    if (semi < n) parseUriParams(s, semi, n, s, params = new Map())
    return { scheme, user: num, password: undefined, host: '', port: undefined, params, headers, raw: s, opaque: undefined }
  }
  // Other schemes (RFC 3261 absoluteURI): opaque; reject only what can never be in a URI.
  for (let k = start; k < n; k++) {
    const c = s.charCodeAt(k)
    if (c <= 32 || c >= 127 || c === 60 || c === 62 || c === 34) throw bad(s, 'invalid character')
  }
  if (start >= n) throw bad(s, 'empty URI')
  return { scheme, user: undefined, password: undefined, host: '', port: undefined, params, headers, raw: s, opaque: s.slice(start) }
}

function parseUriHeaders(s: string, a: number, b: number, src: string, headers: Map<string, string>): void {
  let i = a
  if (i >= b) throw bad(src, 'empty URI headers')
  while (i <= b) {
    let j = s.indexOf('&', i)
    if (j < 0 || j > b) j = b
    const eq = s.indexOf('=', i)
    if (eq < 0 || eq >= j || eq === i) throw bad(src, 'bad URI header')
    checkEscapes(s, i, eq, HDRCHAR, 'URI header', src)
    checkEscapes(s, eq + 1, j, HDRCHAR, 'URI header', src)
    headers.set(s.slice(i, eq), s.slice(eq + 1, j))
    i = j + 1
  }
}

/** Decode %HH escapes (RFC 3261 §19.1.2); malformed escapes are left as they are. */
export function unescapeUri(s: string): string {
  if (s.indexOf('%') < 0) return s
  const bytes: number[] = []
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c === 37 && i + 2 < s.length && isHex(s.charCodeAt(i + 1)) && isHex(s.charCodeAt(i + 2))) {
      bytes.push(parseInt(s.substr(i + 1, 2), 16))
      i += 2
    } else if (c < 128) {
      bytes.push(c)
    } else {
      const b = Buffer.from(s[i]!, 'utf8')
      for (const x of b) bytes.push(x)
    }
  }
  return Buffer.from(bytes).toString('utf8')
}

export function formatUri(u: SipUri): string {
  if (u.opaque !== undefined) return u.scheme + ':' + u.opaque
  let s = u.scheme + ':'
  if (u.scheme === 'tel') {
    s += u.user ?? ''
  } else {
    if (u.user !== undefined) {
      s += u.user
      if (u.password !== undefined) s += ':' + u.password
      s += '@'
    }
    s += u.host
    if (u.port !== undefined) s += ':' + u.port
  }
  for (const [k, v] of u.params) s += v === null ? ';' + k : ';' + k + '=' + v
  let first = true
  for (const [k, v] of u.headers) {
    s += (first ? '?' : '&') + k + '=' + v
    first = false
  }
  return s
}

/** Normalise an IPv6 reference for comparison: "[2001:DB8::1]" -> 8 groups, lower-case. */
function normHost(h: string): string {
  const lower = h.toLowerCase()
  if (lower.charCodeAt(0) !== 91) return lower.endsWith('.') ? lower.slice(0, -1) : lower
  let inner = lower.slice(1, -1)
  // embedded IPv4 tail -> two hex groups
  const lastColon = inner.lastIndexOf(':')
  const tail = inner.slice(lastColon + 1)
  if (tail.indexOf('.') >= 0) {
    const p = tail.split('.').map(Number)
    if (p.length === 4 && p.every(x => x >= 0 && x <= 255)) {
      inner = inner.slice(0, lastColon + 1) + ((p[0]! << 8) | p[1]!).toString(16) + ':' + ((p[2]! << 8) | p[3]!).toString(16)
    }
  }
  const dbl = inner.indexOf('::')
  let groups: string[]
  if (dbl >= 0) {
    const left = inner.slice(0, dbl) === '' ? [] : inner.slice(0, dbl).split(':')
    const right = inner.slice(dbl + 2) === '' ? [] : inner.slice(dbl + 2).split(':')
    const fill = 8 - left.length - right.length
    groups = left.concat(new Array<string>(fill > 0 ? fill : 0).fill('0'), right)
  } else {
    groups = inner.split(':')
  }
  return '[' + groups.map(g => g.replace(/^0+(?=.)/, '')).join(':') + ']'
}

/**
 * §19.1.4: "A user, ttl, or method uri-parameter appearing in only one URI never matches ...
 * A URI that includes an maddr parameter will not match a URI that contains no maddr
 * parameter." Its examples also list sip:bob@biloxi.com vs ...;transport=udp as different
 * ("can resolve to different transports"), so transport is one-sided-mismatch too.
 */
const ONE_SIDED_MISMATCH = new Set(['user', 'ttl', 'method', 'maddr', 'transport'])

/** RFC 3261 §19.1.4 URI comparison. Unparseable URIs compare equal only when textually equal. */
export function uriEquals(a: SipUri | string, b: SipUri | string): boolean {
  let ua: SipUri
  let ub: SipUri
  try {
    ua = typeof a === 'string' ? parseUri(a) : a
    ub = typeof b === 'string' ? parseUri(b) : b
  } catch {
    return typeof a === 'string' && typeof b === 'string' && a === b
  }
  if (ua.scheme !== ub.scheme) return false
  if (ua.opaque !== undefined || ub.opaque !== undefined) {
    return ua.opaque !== undefined && ub.opaque !== undefined && unescapeUri(ua.opaque) === unescapeUri(ub.opaque)
  }
  // userinfo: case-sensitive after unescaping
  if ((ua.user === undefined) !== (ub.user === undefined)) return false
  if (ua.user !== undefined && unescapeUri(ua.user) !== unescapeUri(ub.user!)) return false
  if ((ua.password === undefined) !== (ub.password === undefined)) return false
  if (ua.password !== undefined && unescapeUri(ua.password) !== unescapeUri(ub.password!)) return false
  if (ua.scheme !== 'tel' && normHost(ua.host) !== normHost(ub.host)) return false
  // "a URI omitting any component with a default value will not match a URI explicitly
  // containing that component with its default value" - so ports compare as given.
  if (ua.port !== ub.port) return false
  for (const [k, v] of ua.params) {
    if (ub.params.has(k)) {
      const w = ub.params.get(k)!
      if ((v === null) !== (w === null)) return false
      if (v !== null && unescapeUri(v).toLowerCase() !== unescapeUri(w!).toLowerCase()) return false
    } else if (ONE_SIDED_MISMATCH.has(k)) {
      return false
    }
  }
  for (const k of ub.params.keys()) {
    if (!ua.params.has(k) && ONE_SIDED_MISMATCH.has(k)) return false
  }
  // URI header components are never ignored.
  if (ua.headers.size !== ub.headers.size) return false
  for (const [k, v] of ua.headers) {
    let found = false
    for (const [k2, v2] of ub.headers) {
      if (k2.toLowerCase() === k.toLowerCase()) {
        if (unescapeUri(v2) !== unescapeUri(v)) return false
        found = true
        break
      }
    }
    if (!found) return false
  }
  return true
}
