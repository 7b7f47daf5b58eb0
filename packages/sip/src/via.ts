/**
 * Via (RFC 3261 §20.42, §18.2.1) with received/rport (RFC 3581) and branch (§8.1.1.7).
 */
import { SipParseError, ErrorCodes } from './errors.js'
import { DIGIT, HOSTCHAR, IPV6CHAR, TOKEN } from './tables.js'
import { parseParams, skipLws, trimEnd, type ParamSpan } from './params.js'

export const MAGIC_COOKIE = 'z9hG4bK'

export interface Via {
  protocol: string          // "SIP/2.0" (white space around "/" removed)
  transport: string         // upper-case: UDP, TCP, TLS, SCTP, WS, WSS, or any token
  host: string              // as written, IPv6 references with brackets
  port: number | undefined
  branch: string | undefined
  received: string | undefined
  rport: number | null | undefined    // null = present without value (RFC 3581 request form)
  maddr: string | undefined
  ttl: number | undefined
  params: Map<string, string | null>
  raw: string
}

function bad(s: string, why: string): SipParseError {
  return new SipParseError(ErrorCodes.ERR_SIP_BAD_VIA, 'Bad Via header', 400, 'Bad Via header (' + why + '): ' + s.slice(0, 200))
}

function token(s: string, i: number, n: number): number {
  const tok = TOKEN
  while (i < n) {
    const c = s.charCodeAt(i)
    if (c > 255 || tok[c] === 0) break
    i++
  }
  return i
}

function smallInt(v: string | null | undefined, max: number, s: string, what: string): number | undefined {
  if (v === undefined || v === null) return undefined
  if (v.length === 0 || v.length > 10) throw bad(s, 'bad ' + what)
  let n = 0
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i)
    if (DIGIT[c] !== 1) throw bad(s, 'bad ' + what)
    n = n * 10 + c - 48
  }
  if (n > max) throw bad(s, what + ' out of range')
  return n
}

/** s[a, b) equals the upper-case ASCII word w, ignoring case? */
function sameUpper(s: string, a: number, b: number, w: string): boolean {
  if (b - a !== w.length) return false
  for (let k = 0; k < w.length; k++) {
    const c = s.charCodeAt(a + k)
    // w holds letters and digits only; c is a token character
    if ((c >= 97 && c <= 122 ? c - 32 : c) !== w.charCodeAt(k)) return false
  }
  return true
}

const TRANSPORTS = ['UDP', 'TCP', 'TLS', 'WS', 'WSS', 'SCTP']

/** s.slice(a, b).toUpperCase(), interned for the usual transports. */
function internTransport(s: string, a: number, b: number): string {
  for (let k = 0; k < TRANSPORTS.length; k++) if (sameUpper(s, a, b, TRANSPORTS[k]!)) return TRANSPORTS[k]!
  return s.slice(a, b).toUpperCase()
}

/** name.toUpperCase() + '/' + version, interned for SIP/2.0. */
function protocolOf(s: string, p0: number, p1: number, v0: number, v1: number): string {
  if (sameUpper(s, p0, p1, 'SIP') && v1 - v0 === 3 && s.charCodeAt(v0) === 50 && s.charCodeAt(v0 + 1) === 46 &&
    s.charCodeAt(v0 + 2) === 48) return 'SIP/2.0'
  return s.slice(p0, p1).toUpperCase() + '/' + s.slice(v0, v1)
}

/** Parse one via-parm in s[a, b). spans (optional) receives parameter positions for the editor. */
export function parseVia(s: string, a = 0, b = s.length, spans: ParamSpan[] | null = null): Via {
  let i = skipLws(s, a, b)
  b = trimEnd(s, i, b)
  if (i >= b) throw bad(s, 'empty value')
  const raw = s.slice(i, b)
  const p0 = i
  i = token(s, i, b)
  if (i === p0) throw bad(s, 'missing protocol name')
  const p1 = i
  i = skipLws(s, i, b)
  if (s.charCodeAt(i) !== 47) throw bad(s, 'expected /')
  i = skipLws(s, i + 1, b)
  const v0 = i
  i = token(s, i, b)
  if (i === v0) throw bad(s, 'missing protocol version')
  const v1 = i
  i = skipLws(s, i, b)
  if (s.charCodeAt(i) !== 47) throw bad(s, 'expected /')
  i = skipLws(s, i + 1, b)
  const t0 = i
  i = token(s, i, b)
  if (i === t0) throw bad(s, 'missing transport')
  const transport = internTransport(s, t0, i)
  const h0 = skipLws(s, i, b)
  if (h0 === i) throw bad(s, 'missing sent-by')
  i = h0
  if (s.charCodeAt(i) === 91) {
    const close = s.indexOf(']', i)
    if (close < 0 || close >= b || close - i < 3) throw bad(s, 'bad IPv6 reference')
    for (let k = i + 1; k < close; k++) if (IPV6CHAR[s.charCodeAt(k)] !== 1) throw bad(s, 'bad IPv6 reference')
    i = close + 1
  } else {
    const hostchar = HOSTCHAR
    while (i < b && hostchar[s.charCodeAt(i)] === 1) i++
    if (i === h0) throw bad(s, 'missing host')
  }
  const host = s.slice(h0, i)
  let port: number | undefined
  i = skipLws(s, i, b)
  if (i < b && s.charCodeAt(i) === 58) {
    i = skipLws(s, i + 1, b)
    const d0 = i
    while (i < b && DIGIT[s.charCodeAt(i)] === 1) i++
    // smallInt(s.slice(d0, i), 65535, ...) without the slice: only digits were taken
    if (i === d0 || i - d0 > 10) throw bad(s, 'bad port')
    let n = 0
    for (let k = d0; k < i; k++) n = n * 10 + s.charCodeAt(k) - 48
    // RFC 3261 §18.2.2 sends responses to the sent-by port (RFC 3581: the source port): port 0
    // names no socket anyone listens on, so it is as bad as 65536 (issue "Safe on a public
    // address": a Via with port 0 was accepted and every answer then failed to send).
    if (n > 65535 || n === 0) throw bad(s, 'port out of range')
    port = n
  }
  const params = new Map<string, string | null>()
  if (parseParams(s, i, b, params, spans) < 0) throw bad(s, 'bad parameters')
  const branch = params.get('branch')
  const received = params.get('received')
  const maddr = params.get('maddr')
  const rp = params.get('rport')
  if (branch === null || received === null || maddr === null) throw bad(s, 'parameter without value')
  return {
    protocol: protocolOf(s, p0, p1, v0, v1),
    transport,
    host,
    port,
    branch,
    received,
    rport: rp === null ? null : smallInt(rp, 65535, s, 'rport'),
    maddr,
    ttl: smallInt(params.get('ttl'), 255, s, 'ttl'),
    params,
    raw,
  }
}

/** RFC 3261 §8.1.1.7: a branch that begins with the magic cookie (and has more after it). */
export function isRfc3261Branch(branch: string | undefined): boolean {
  return branch !== undefined && branch.length > MAGIC_COOKIE.length && branch.startsWith(MAGIC_COOKIE)
}
