/**
 * Lazy SIP message (RFC 3261 §7, §20, §25). parseMessage() locates the start line and every
 * header line once and validates framing (Content-Length, §18.3, §20.14); each header value is
 * decoded only when asked for, and the decoded forms are cached. The message keeps working on
 * the caller's Buffer: nothing is copied, so the caller must not reuse that memory while the
 * message (or anything sliced from it, such as `body`) is alive.
 */
import { SipParseError, ErrorCodes, wrapError } from './errors.js'
import { CR, LF, SP, HT, TOKEN, WS, DIGIT, SCHEMECHAR, GENVALUE, HOSTCHAR, latin1, latin1ToUtf8 } from './tables.js'
import {
  lookupHeaderBytes, lookupHeaderName, CANONICAL, IS_LIST, H_OTHER, H_VIA, H_FROM, H_TO, H_CALL_ID, H_CSEQ,
  H_MAX_FORWARDS, H_ROUTE, H_RECORD_ROUTE, H_CONTACT, H_CONTENT_LENGTH, H_CONTENT_TYPE, H_DATE, WIRE,
} from './headers.js'
import { EMPTY_PARAMS, splitList, paramName } from './params.js'
import { parseNameAddr, type NameAddr } from './nameaddr.js'
import { parseVia, type Via } from './via.js'
import { parseUri, type SipUri } from './uri.js'

export interface ParseOptions {
  /** Largest message accepted, in bytes (default 65535). Larger -> 513 Message Too Large. */
  maxSize?: number
  /** Most header lines accepted (default 512). */
  maxHeaders?: number
  /** Stream transports (TCP/TLS) REQUIRE Content-Length (RFC 3261 §18.3). Default false. */
  requireContentLength?: boolean
}

export const DEFAULT_MAX_SIZE = 65535
export const DEFAULT_MAX_HEADERS = 512

/**
 * One header line (with its folded continuation lines). Offsets are into msg.buf:
 * [lineStart, lineEnd) is the whole line including its terminating CRLF (or LF);
 * [valueStart, valueEnd) is the value, trimmed; it may contain folding CRLF + WS when `folded`.
 */
export class HeaderField {
  /** canonical lower-case long form ("via", "call-id"; unknown names lower-cased) */
  name: string
  /** numeric id of a known header (H_* in headers.ts), 0 for unknown ones */
  id: number
  lineStart: number
  lineEnd: number
  valueStart: number
  valueEnd: number
  folded: boolean
  constructor(name: string, id: number, lineStart: number, lineEnd: number, valueStart: number, valueEnd: number) {
    this.name = name
    this.id = id
    this.lineStart = lineStart
    this.lineEnd = lineEnd
    this.valueStart = valueStart
    this.valueEnd = valueEnd
    this.folded = false
  }
}

export interface CSeq { seq: number; method: string }

// Methods seen on every hot path are interned so that parsing them allocates no string.
const KNOWN_METHODS = ['INVITE', 'ACK', 'BYE', 'CANCEL', 'REGISTER', 'OPTIONS', 'NOTIFY', 'SUBSCRIBE', 'INFO',
  'REFER', 'MESSAGE', 'PRACK', 'UPDATE', 'PUBLISH']
const METHOD_BYTES = KNOWN_METHODS.map(m => Buffer.from(m, 'latin1'))

function internMethod(buf: Buffer, s: number, e: number): string {
  const len = e - s
  for (let k = 0; k < METHOD_BYTES.length; k++) {
    const m = METHOD_BYTES[k]!
    if (m.length !== len || m[0] !== buf[s]) continue
    let j = 1
    while (j < len && m[j] === buf[s + j]) j++
    if (j === len) return KNOWN_METHODS[k]!
  }
  return latin1(buf, s, e)
}

function err(code: string, reason: string, status = 400, message?: string): SipParseError {
  return new SipParseError(code, reason, status, message)
}

function missing(name: string): SipParseError {
  return err(ErrorCodes.ERR_SIP_MISSING_HEADER, 'Missing ' + name, 400, 'Missing ' + name + ' header')
}

/**
 * The parameters of a fast path: *( ";" token [ "=" token/host ] ) with SP/HT around the
 * separators, over buf[p, end), into `params` (the first of a repeated name wins, as in
 * params.ts). `raw` is latin1(buf, vs, ...): names and values are slices of it, common names
 * interned. false for anything else (an empty or quoted value, a stray byte): the caller then
 * runs the full parser, which decides and produces the errors.
 */
function fastParams(buf: Buffer, p: number, end: number, raw: string, vs: number, params: Map<string, string | null>): boolean {
  const token = TOKEN
  for (;;) {
    while (p < end && (buf[p] === SP || buf[p] === HT)) p++
    if (p >= end) return true
    if (buf[p] !== 0x3b) return false
    p++
    while (p < end && (buf[p] === SP || buf[p] === HT)) p++
    const ns = p
    while (p < end && token[buf[p]!] === 1) p++
    if (p === ns) return false
    const name = paramName(raw, ns - vs, p - vs)
    let j = p
    while (j < end && (buf[j] === SP || buf[j] === HT)) j++
    let value: string | null = null
    if (j < end && buf[j] === 0x3d) {
      j++
      while (j < end && (buf[j] === SP || buf[j] === HT)) j++
      const v0 = j
      while (j < end && GENVALUE[buf[j]!] === 1) j++
      if (j === v0) return false
      value = raw.slice(v0 - vs, j - vs)
      p = j
    }
    if (params.size === 0 || !params.has(name)) params.set(name, value)
  }
}

/**
 * From/To fast path over the bytes, for the everyday shapes only: [token display-name or a
 * quoted one without escapes] "<" URI ">" *( ";" token [ "=" token/host ] ), printable ASCII,
 * SP/HT as the only white space. One latin1 decode (raw); uri, display name and parameter
 * values are slices of it; common parameter names are interned. Returns exactly what
 * parseNameAddr(rawValue) returns for such values, and undefined for anything else (the caller
 * then runs parseNameAddr, which also produces the errors). test/fastpath.test.ts checks the
 * two agree on the corpus and on mutated messages.
 */
function fastNameAddr(buf: Buffer, vs: number, ve: number): NameAddr | undefined {
  const token = TOKEN
  let i = vs
  if (i >= ve) return undefined
  let c = buf[i]!
  let dispStart = -1
  let dispEnd = -1
  if (c === 34) {
    let q = i + 1
    for (;;) {
      if (q >= ve) return undefined
      const d = buf[q]!
      if (d === 34) break
      if (d < 32 || d > 126 || d === 92) return undefined
      q++
    }
    dispStart = i + 1
    dispEnd = q
    i = q + 1
    while (i < ve && (buf[i] === SP || buf[i] === HT)) i++
    if (i >= ve || buf[i] !== 0x3c) return undefined
  } else if (c !== 0x3c) {
    let j = i
    while (j < ve) {
      c = buf[j]!
      if (token[c] !== 1 && c !== SP && c !== HT) break
      j++
    }
    if (j >= ve || buf[j] !== 0x3c) return undefined // addr-spec form or unusual bytes
    let de = j
    while (de > i && (buf[de - 1] === SP || buf[de - 1] === HT)) de--
    dispStart = i
    dispEnd = de
    i = j
  }
  // buf[i] === '<'
  const us = i + 1
  let k = us
  for (;;) {
    if (k >= ve) return undefined
    const d = buf[k]!
    if (d === 0x3e) break
    if (d <= 32 || d >= 127 || d === 0x3c || d === 34) return undefined
    k++
  }
  const close = k
  if (close === us) return undefined
  // scheme ":" with at least one scheme character
  let h = us
  while (h < close && SCHEMECHAR[buf[h]!] === 1) h++
  if (h === us || h >= close || buf[h] !== 0x3a) return undefined
  const raw = latin1(buf, vs, ve)
  let ps = close + 1
  while (ps < ve && (buf[ps] === SP || buf[ps] === HT)) ps++
  // nothing after the address: the shared empty Map (fastParams then sets nothing)
  const params = ps >= ve ? EMPTY_PARAMS : new Map<string, string | null>()
  if (!fastParams(buf, ps, ve, raw, vs, params)) return undefined
  const tag = params.get('tag')
  return {
    // a token display name is never empty here (the value is trimmed); a quoted one may be ""
    displayName: dispStart < 0 || (dispEnd === dispStart && buf[vs] !== 34) ? undefined : raw.slice(dispStart - vs, dispEnd - vs),
    uri: raw.slice(us - vs, close - vs),
    params,
    tag: tag === null || tag === undefined ? undefined : tag,
    raw,
  }
}

const TRANSPORT_NAMES = ['UDP', 'TCP', 'TLS', 'WS', 'WSS', 'SCTP']

/** Upper-cased transport token buf[a, b), interned for the usual ones. */
function transportOf(buf: Buffer, a: number, b: number): string {
  const len = b - a
  for (let k = 0; k < TRANSPORT_NAMES.length; k++) {
    const w = TRANSPORT_NAMES[k]!
    if (w.length !== len) continue
    let j = 0
    while (j < len) {
      const c = buf[a + j]!
      if ((c >= 97 && c <= 122 ? c - 32 : c) !== w.charCodeAt(j)) break
      j++
    }
    if (j === len) return w
  }
  return latin1(buf, a, b).toUpperCase()
}

/** Digits buf[a, b) as a number no larger than max, or -1 (empty, over 10 digits, non-digit, too large). */
function smallNumber(s: string, a: number, b: number, max: number): number {
  if (b <= a || b - a > 10) return -1
  let n = 0
  for (let k = a; k < b; k++) {
    const c = s.charCodeAt(k)
    if (c < 48 || c > 57) return -1
    n = n * 10 + c - 48
  }
  return n > max ? -1 : n
}

/**
 * Top Via fast path over the bytes for the everyday shape: "SIP/2.0/" transport 1*(SP/HT)
 * host [":" port] *( ";" token [ "=" token/host ] ), printable ASCII, no quotes, no IPv6
 * reference, first element ending at the first comma. Returns exactly what parseVia gives for
 * such a value, undefined for anything else (the caller then runs parseVia, which also produces
 * the errors). test/fastpath.test.ts checks the two agree.
 */
function fastVia(buf: Buffer, vs: number, ve: number): Via | undefined {
  // "SIP/2.0/" in any case for the letters
  if (ve - vs < 12 || (buf[vs]! | 0x20) !== 0x73 || (buf[vs + 1]! | 0x20) !== 0x69 || (buf[vs + 2]! | 0x20) !== 0x70 ||
    buf[vs + 3] !== 0x2f || buf[vs + 4] !== 0x32 || buf[vs + 5] !== 0x2e || buf[vs + 6] !== 0x30 || buf[vs + 7] !== 0x2f) return undefined
  const token = TOKEN
  // element end: first comma; the value must be plain printable ASCII up to there
  let e = vs + 8
  while (e < ve) {
    const c = buf[e]!
    if (c === 0x2c) break
    if (c < 32 || c > 126 || c === 34) return undefined
    e++
  }
  let b = e
  while (b > vs && (buf[b - 1] === SP || buf[b - 1] === HT)) b--
  let i = vs + 8
  const t0 = i
  while (i < b && token[buf[i]!] === 1) i++
  if (i === t0) return undefined
  const t1 = i
  while (i < b && (buf[i] === SP || buf[i] === HT)) i++
  if (i === t1) return undefined
  const h0 = i
  while (i < b && HOSTCHAR[buf[i]!] === 1) i++
  if (i === h0) return undefined
  const h1 = i
  const raw = latin1(buf, vs, b)
  let port: number | undefined
  if (i < b && buf[i] === 0x3a) {
    const d0 = ++i
    while (i < b && DIGIT[buf[i]!] === 1) i++
    const n = smallNumber(raw, d0 - vs, i - vs, 65535)
    if (n <= 0) return undefined // port 0 or out of range: parseVia gives the error
    port = n
  }
  const params = new Map<string, string | null>()
  if (!fastParams(buf, i, b, raw, vs, params)) return undefined
  const branch = params.get('branch')
  const received = params.get('received')
  const maddr = params.get('maddr')
  const rp = params.get('rport')
  const tl = params.get('ttl')
  if (branch === null || received === null || maddr === null) return undefined
  let rport: number | null | undefined
  if (rp === null) rport = null
  else if (rp === undefined) rport = undefined
  else {
    const n = smallNumber(rp, 0, rp.length, 65535)
    if (n < 0) return undefined
    rport = n
  }
  let ttl: number | undefined
  if (tl !== undefined && tl !== null) {
    const n = smallNumber(tl, 0, tl.length, 255)
    if (n < 0) return undefined
    ttl = n
  }
  return {
    protocol: 'SIP/2.0',
    transport: transportOf(buf, t0, t1),
    host: raw.slice(h0 - vs, h1 - vs),
    port,
    branch,
    received,
    rport,
    maddr,
    ttl,
    params,
    raw,
  }
}

const RE_FOLD = /[\r\n]/g
const RE_UNFOLD = /[ \t]*\r?\n[ \t]*/g
const RE_DATE = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/

export class SipMessage {
  readonly buf: Buffer
  readonly isRequest: boolean
  readonly method: string
  readonly uri: string
  readonly status: number
  readonly reason: string
  readonly headers: HeaderField[]
  /** Start-line offsets: [0, startLineEnd) is the start line without its CRLF. */
  readonly startLineStart: number
  readonly startLineEnd: number
  /** Request-URI offsets in buf (0, 0 for responses). */
  readonly uriStart: number
  readonly uriEnd: number
  /** Offset of the empty line that ends the headers (where a header may be appended). */
  readonly headersEnd: number
  readonly bodyStart: number
  /** End of this message: bytes after it in a datagram are ignored (RFC 3261 §18.3). */
  readonly end: number
  /** Content-Length header present? (UDP may omit it; stream transports may not) */
  readonly hasContentLength: boolean

  private _callId: string | undefined
  private _cseq: CSeq | undefined
  private _from: NameAddr | undefined
  private _to: NameAddr | undefined
  private _topVia: Via | undefined
  private _vias: Via[] | undefined
  private _maxForwards: number
  private _routes: NameAddr[] | undefined
  private _recordRoutes: NameAddr[] | undefined
  private _contacts: NameAddr[] | undefined
  private _requestUri: SipUri | undefined

  /** Use parseMessage(). */
  constructor(
    buf: Buffer, isRequest: boolean, method: string, uri: string, status: number, reason: string,
    headers: HeaderField[], startLineStart: number, startLineEnd: number, uriStart: number, uriEnd: number,
    headersEnd: number, bodyStart: number, end: number, hasContentLength: boolean,
  ) {
    this.buf = buf
    this.isRequest = isRequest
    this.method = method
    this.uri = uri
    this.status = status
    this.reason = reason
    this.headers = headers
    this.startLineStart = startLineStart
    this.startLineEnd = startLineEnd
    this.uriStart = uriStart
    this.uriEnd = uriEnd
    this.headersEnd = headersEnd
    this.bodyStart = bodyStart
    this.end = end
    this.hasContentLength = hasContentLength
    this._callId = undefined
    this._cseq = undefined
    this._from = undefined
    this._to = undefined
    this._topVia = undefined
    this._vias = undefined
    this._maxForwards = -2
    this._routes = undefined
    this._recordRoutes = undefined
    this._contacts = undefined
    this._requestUri = undefined
  }

  // ---- generic access ------------------------------------------------------------------

  /**
   * Lets go of the header values parsed so far (From, To, the Vias, Route, Record-Route, Contact,
   * the Request-URI); a getter read later parses its header again from `buf`, with the same
   * result. Call-ID, CSeq and Max-Forwards stay (small, and what transaction matching reads).
   * For a message kept long after the last decision on it: an INVITE's request is kept for the
   * 32 s of RFC 6026's Accepted state, and its parsed values were up to ~1.9 KB of small objects that
   * every major GC marks (issue 17).
   */
  releaseParsed(): void {
    this._from = undefined
    this._to = undefined
    this._topVia = undefined
    this._vias = undefined
    this._routes = undefined
    this._recordRoutes = undefined
    this._contacts = undefined
    this._requestUri = undefined
  }

  /** Index of the first header line with that id, or -1. */
  indexOf(id: number): number {
    const hs = this.headers
    for (let i = 0; i < hs.length; i++) if (hs[i]!.id === id) return i
    return -1
  }

  /** Number of header lines with that id. */
  countOf(id: number): number {
    const hs = this.headers
    let n = 0
    for (let i = 0; i < hs.length; i++) if (hs[i]!.id === id) n++
    return n
  }

  private match(f: HeaderField, id: number, lname: string): boolean {
    return id !== H_OTHER ? f.id === id : f.id === H_OTHER && f.name === lname
  }

  /**
   * Latin1 value of a field with folding CR/LF replaced one-for-one by SP, so string indices
   * are byte offsets from valueStart. For structure parsing; use header() for display.
   */
  rawValue(f: HeaderField): string {
    const s = latin1(this.buf, f.valueStart, f.valueEnd)
    return f.folded ? s.replace(RE_FOLD, ' ') : s
  }

  /** UTF-8 value, unfolded (each CRLF + WS becomes one SP), trimmed. */
  valueOf(f: HeaderField): string {
    const s = this.buf.toString('utf8', f.valueStart, f.valueEnd)
    return f.folded ? s.replace(RE_UNFOLD, ' ') : s
  }

  /** First value, unfolded, trimmed; any case, long or compact form. */
  header(name: string): string | undefined {
    const id = lookupHeaderName(name)
    const lname = id === H_OTHER ? name.toLowerCase() : ''
    const hs = this.headers
    for (let i = 0; i < hs.length; i++) if (this.match(hs[i]!, id, lname)) return this.valueOf(hs[i]!)
    return undefined
  }

  /** All values of all lines of a header, in order; list headers split at top-level commas. */
  headerValues(name: string): string[] {
    const id = lookupHeaderName(name)
    const lname = id === H_OTHER ? name.toLowerCase() : ''
    const split = id === H_OTHER || IS_LIST[id] === 1
    const out: string[] = []
    const hs = this.headers
    for (let i = 0; i < hs.length; i++) {
      const f = hs[i]!
      if (!this.match(f, id, lname)) continue
      if (!split) { out.push(this.valueOf(f)); continue }
      const s = this.rawValue(f)
      const r = splitList(s, 0, s.length, id === H_OTHER ? name : WIRE[id]!)
      for (let k = 0; k < r.length; k += 2) if (r[k + 1]! > r[k]!) out.push(latin1ToUtf8(s.slice(r[k], r[k + 1])))
    }
    return out
  }

  has(name: string): boolean {
    const id = lookupHeaderName(name)
    const lname = id === H_OTHER ? name.toLowerCase() : ''
    const hs = this.headers
    for (let i = 0; i < hs.length; i++) if (this.match(hs[i]!, id, lname)) return true
    return false
  }

  // ---- decoded headers ------------------------------------------------------------------

  get callId(): string {
    if (this._callId !== undefined) return this._callId
    const i = this.indexOf(H_CALL_ID)
    if (i < 0) throw missing('Call-ID')
    const f = this.headers[i]!
    const buf = this.buf
    // Call-ID = word [ "@" word ]: no white space inside, not empty
    if (f.valueEnd <= f.valueStart) throw err(ErrorCodes.ERR_SIP_BAD_CALL_ID, 'Bad Call-ID')
    for (let k = f.valueStart; k < f.valueEnd; k++) {
      const c = buf[k]!
      if (c <= 32 || c >= 127) throw err(ErrorCodes.ERR_SIP_BAD_CALL_ID, 'Bad Call-ID')
    }
    return (this._callId = latin1(buf, f.valueStart, f.valueEnd))
  }

  get cseq(): CSeq {
    if (this._cseq !== undefined) return this._cseq
    const i = this.indexOf(H_CSEQ)
    if (i < 0) throw missing('CSeq')
    const f = this.headers[i]!
    const buf = this.buf
    let p = f.valueStart
    const e = f.valueEnd
    let seq = 0
    const d0 = p
    while (p < e && DIGIT[buf[p]!] === 1) {
      seq = seq * 10 + buf[p]! - 48
      p++
    }
    // "The sequence number value MUST be expressible as a 32-bit unsigned integer and MUST be
    // less than 2**31" (§8.1.1.5). RFC 4475 scalar02 sends 36893488147419103232.
    if (p === d0 || p - d0 > 10 || seq > 0x7fffffff) throw err(ErrorCodes.ERR_SIP_BAD_CSEQ, 'Bad CSeq')
    const w = p
    while (p < e && (WS[buf[p]!] === 1 || buf[p] === CR || buf[p] === LF)) p++
    if (p === w || p >= e) throw err(ErrorCodes.ERR_SIP_BAD_CSEQ, 'Bad CSeq')
    const m0 = p
    while (p < e && TOKEN[buf[p]!] === 1) p++
    if (p !== e) throw err(ErrorCodes.ERR_SIP_BAD_CSEQ, 'Bad CSeq method', 400, 'Bad CSeq: method is not a token')
    // reuse the start-line method string when equal (no allocation on the hot path)
    let method: string
    const rm = this.method
    if (rm.length === e - m0) {
      let k = 0
      while (k < rm.length && rm.charCodeAt(k) === buf[m0 + k]) k++
      method = k === rm.length ? rm : internMethod(buf, m0, e)
    } else {
      method = internMethod(buf, m0, e)
    }
    return (this._cseq = { seq, method })
  }

  get from(): NameAddr {
    if (this._from !== undefined) return this._from
    const i = this.indexOf(H_FROM)
    if (i < 0) throw missing('From')
    const f = this.headers[i]!
    return (this._from = (f.folded ? undefined : fastNameAddr(this.buf, f.valueStart, f.valueEnd)) ??
      parseNameAddr(this.rawValue(f), 'From'))
  }

  get to(): NameAddr {
    if (this._to !== undefined) return this._to
    const i = this.indexOf(H_TO)
    if (i < 0) throw missing('To')
    const f = this.headers[i]!
    return (this._to = (f.folded ? undefined : fastNameAddr(this.buf, f.valueStart, f.valueEnd)) ??
      parseNameAddr(this.rawValue(f), 'To'))
  }

  get topVia(): Via {
    if (this._topVia !== undefined) return this._topVia
    const i = this.indexOf(H_VIA)
    if (i < 0) throw missing('Via')
    const f = this.headers[i]!
    if (!f.folded) {
      const v = fastVia(this.buf, f.valueStart, f.valueEnd)
      if (v !== undefined) return (this._topVia = v)
    }
    const s = this.rawValue(f)
    // only the first element is needed: find the first top-level comma cheaply
    let e = s.indexOf(',')
    if (e >= 0 && s.indexOf('"') >= 0) e = splitList(s, 0, s.length, 'Via')[1]!
    return (this._topVia = parseVia(s, 0, e < 0 ? s.length : e))
  }

  get vias(): Via[] {
    if (this._vias !== undefined) return this._vias
    const out: Via[] = []
    const hs = this.headers
    for (let i = 0; i < hs.length; i++) {
      if (hs[i]!.id !== H_VIA) continue
      const s = this.rawValue(hs[i]!)
      const r = splitList(s, 0, s.length, 'Via')
      for (let k = 0; k < r.length; k += 2) out.push(parseVia(s, r[k], r[k + 1]))
    }
    if (out.length === 0) throw missing('Via')
    if (this._topVia === undefined) this._topVia = out[0]
    else out[0] = this._topVia
    return (this._vias = out)
  }

  /** Max-Forwards (0-255, RFC 3261 §20.22), -1 when absent. */
  get maxForwards(): number {
    if (this._maxForwards !== -2) return this._maxForwards
    const i = this.indexOf(H_MAX_FORWARDS)
    if (i < 0) return (this._maxForwards = -1)
    const f = this.headers[i]!
    const buf = this.buf
    let n = 0
    let p = f.valueStart
    if (p >= f.valueEnd || f.valueEnd - p > 10) throw err(ErrorCodes.ERR_SIP_BAD_MAX_FORWARDS, 'Bad Max-Forwards')
    for (; p < f.valueEnd; p++) {
      const c = buf[p]!
      if (DIGIT[c] !== 1) throw err(ErrorCodes.ERR_SIP_BAD_MAX_FORWARDS, 'Bad Max-Forwards')
      n = n * 10 + c - 48
    }
    if (n > 255) throw err(ErrorCodes.ERR_SIP_BAD_MAX_FORWARDS, 'Bad Max-Forwards', 400, 'Max-Forwards above 255')
    return (this._maxForwards = n)
  }

  private nameAddrList(id: number, what: string, allowStar: boolean): NameAddr[] {
    const out: NameAddr[] = []
    const hs = this.headers
    for (let i = 0; i < hs.length; i++) {
      if (hs[i]!.id !== id) continue
      const s = this.rawValue(hs[i]!)
      const r = splitList(s, 0, s.length, what)
      for (let k = 0; k < r.length; k += 2) out.push(parseNameAddr(s, what, r[k], r[k + 1], allowStar))
    }
    return out
  }

  get routes(): NameAddr[] {
    return this._routes ?? (this._routes = this.nameAddrList(H_ROUTE, 'Route', false))
  }

  get recordRoutes(): NameAddr[] {
    return this._recordRoutes ?? (this._recordRoutes = this.nameAddrList(H_RECORD_ROUTE, 'Record-Route', false))
  }

  get contacts(): NameAddr[] {
    return this._contacts ?? (this._contacts = this.nameAddrList(H_CONTACT, 'Contact', true))
  }

  /** Content-Length value; when the header is absent (allowed over UDP) the body length. */
  get contentLength(): number {
    return this.end - this.bodyStart
  }

  get body(): Buffer {
    return this.buf.subarray(this.bodyStart, this.end)
  }

  get requestUri(): SipUri {
    if (this._requestUri !== undefined) return this._requestUri
    if (!this.isRequest) throw err(ErrorCodes.ERR_SIP_BAD_REQUEST_URI, 'Bad Request-URI', 400, 'A response has no Request-URI')
    try {
      return (this._requestUri = parseUri(this.uri))
    } catch (e) {
      throw err(ErrorCodes.ERR_SIP_BAD_REQUEST_URI, 'Bad Request-URI', 400, (e as Error).message)
    }
  }

  /** Canonical header names present, for diagnostics. */
  headerNames(): string[] {
    return this.headers.map(h => h.name)
  }

  /**
   * What a routing decision needs, checked once per request (RFC 3261 §8.2.2, §16.3 step 1) and
   * no more, so the parser stays lazy: the mandatory headers present and single (§8.1.1), the
   * decoded forms the proxy core and the transaction layer read on every request (Call-ID, CSeq
   * with its method equal to the request method, From, To, the top Via, Max-Forwards 0-255, Date
   * when present), the Request-URI (scheme supported else 416, no headers: §19.1.1 table), the
   * Route set when there is one (§16.4 reads all of it), and the Contacts of a REGISTER (§10.3,
   * the registrar binds them) and of a dialog-creating request (§12.1.1, the dialog tracker keeps
   * the caller's). Content-Length was checked by parseMessage().
   * Not decoded here: the Vias below the top one, the Record-Route of a request and any other
   * Contact. The getters that read them (`vias`, `recordRoutes`, `contacts`) decode on first
   * access and throw SipParseError then; a reader that needs them answers 400 at that point.
   * Max-Forwards may be absent (RFC 2543 peers, RFC 4475 §3.4.1 inv2543): a proxy adds it.
   */
  validate(): void {
    try {
      this.validateInner()
    } catch (e) {
      throw wrapError(e)
    }
  }

  private single(id: number, required: boolean): void {
    const n = this.countOf(id)
    if (n === 0 && required) throw missing(WIRE[id]!)
    if (n > 1) throw err(ErrorCodes.ERR_SIP_DUPLICATE_HEADER, 'Duplicate ' + WIRE[id]! + ' header')
  }

  private validateInner(): void {
    this.single(H_CALL_ID, true)
    this.single(H_CSEQ, true)
    this.single(H_FROM, true)
    this.single(H_TO, true)
    if (this.indexOf(H_VIA) < 0) throw missing('Via')
    this.single(H_MAX_FORWARDS, false)
    this.single(H_CONTENT_TYPE, false)
    void this.callId
    const cseq = this.cseq
    void this.from
    const to = this.to
    void this.topVia
    void this.maxForwards
    if (this.isRequest) {
      const m = this.method
      if (m === 'REGISTER' || (to.tag === undefined && (m === 'INVITE' || m === 'SUBSCRIBE' || m === 'REFER'))) void this.contacts
      if (this.indexOf(H_ROUTE) >= 0) void this.routes
    }
    const di = this.indexOf(H_DATE)
    if (di >= 0 && !RE_DATE.test(this.valueOf(this.headers[di]!))) {
      // SIP-date = rfc1123-date, always "GMT" (§20.17; RFC 4475 baddate)
      throw err(ErrorCodes.ERR_SIP_BAD_DATE, 'Bad Date header')
    }
    if (!this.isRequest) return
    if (cseq.method !== this.method) {
      throw err(ErrorCodes.ERR_SIP_CSEQ_METHOD_MISMATCH, 'Bad CSeq method', 400, 'CSeq method does not match the request method')
    }
    const u = this.requestUri
    if (u.scheme !== 'sip' && u.scheme !== 'sips' && u.scheme !== 'tel') {
      throw err(ErrorCodes.ERR_SIP_UNSUPPORTED_URI_SCHEME, 'Unsupported URI Scheme', 416)
    }
    if (u.headers.size > 0) {
      throw err(ErrorCodes.ERR_SIP_BAD_REQUEST_URI, 'Bad Request-URI', 400, 'Headers are not allowed in a Request-URI')
    }
  }
}

/** Parse one message from a datagram (or a frame cut by StreamFramer). Throws SipParseError only. */
export function parseMessage(buf: Buffer, opts?: ParseOptions): SipMessage {
  try {
    return parseInner(buf, opts)
  } catch (e) {
    throw wrapError(e)
  }
}

/** Like parseMessage, but returns the error instead of throwing it. */
export function tryParseMessage(buf: Buffer, opts?: ParseOptions): SipMessage | SipParseError {
  try {
    return parseInner(buf, opts)
  } catch (e) {
    return wrapError(e)
  }
}

function parseInner(buf: Buffer, opts: ParseOptions | undefined): SipMessage {
  const maxSize = opts?.maxSize ?? DEFAULT_MAX_SIZE
  const maxHeaders = opts?.maxHeaders ?? DEFAULT_MAX_HEADERS
  const len = buf.length
  if (len > maxSize) throw err(ErrorCodes.ERR_SIP_TOO_LARGE, 'Message Too Large', 513)
  let p = 0
  // "Implementations processing SIP messages over stream-oriented transports MUST ignore any
  // CRLF appearing before the start-line" (§7.5); harmless to do the same for datagrams.
  while (p < len && (buf[p] === CR || buf[p] === LF)) p++
  if (p >= len) throw err(ErrorCodes.ERR_SIP_MALFORMED, 'Empty message')
  const sls = p
  // native memchr: much cheaper than a per-byte JS loop for lines of a few dozen bytes
  let e = buf.indexOf(LF, p)
  if (e < 0) throw err(ErrorCodes.ERR_SIP_INCOMPLETE, 'Incomplete message')
  const sle = e > p && buf[e - 1] === CR ? e - 1 : e

  let isRequest: boolean
  let method = ''
  let uri = ''
  let status = 0
  let reason = ''
  let uriStart = 0
  let uriEnd = 0
  if (sle - sls >= 4 && (buf[sls]! | 0x20) === 0x73 && (buf[sls + 1]! | 0x20) === 0x69 && (buf[sls + 2]! | 0x20) === 0x70 &&
    buf[sls + 3] === 0x2f) {
    // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF
    isRequest = false
    let q = sls
    while (q < sle && buf[q] !== SP) q++
    checkVersion(buf, sls, q, 'Status-Line')
    q++
    const d0 = q
    while (q < sle && DIGIT[buf[q]!] === 1) {
      status = status * 10 + buf[q]! - 48
      q++
      if (q - d0 > 3) break
    }
    if (q - d0 !== 3 || status < 100 || status > 699 || (q < sle && buf[q] !== SP)) {
      throw err(ErrorCodes.ERR_SIP_BAD_STATUS, 'Bad status code')
    }
    reason = q < sle ? buf.toString('utf8', q + 1, sle) : ''
  } else {
    // Request-Line = Method SP Request-URI SP SIP-Version CRLF: exactly one SP each
    // (RFC 4475 lwsstart, trws, lwsruri, ltgtruri).
    isRequest = true
    let q = sls
    while (q < sle && TOKEN[buf[q]!] === 1) q++
    if (q === sls || q >= sle || buf[q] !== SP) {
      throw err(ErrorCodes.ERR_SIP_BAD_START_LINE, 'Bad Request-Line', 400,
        q === sls || (q < sle && buf[q] !== SP) ? 'Bad Request-Line: method is not a token' : 'Bad Request-Line')
    }
    method = internMethod(buf, sls, q)
    uriStart = q + 1
    q = uriStart
    while (q < sle && buf[q] !== SP) q++
    uriEnd = q
    if (uriEnd === uriStart || q >= sle) throw err(ErrorCodes.ERR_SIP_BAD_START_LINE, 'Bad Request-Line')
    // the Request-URI must look like scheme ":" ... and contain no control/non-ASCII bytes
    let k = uriStart
    const c0 = buf[k]! | 0x20
    if (c0 < 0x61 || c0 > 0x7a) throw err(ErrorCodes.ERR_SIP_BAD_REQUEST_URI, 'Bad Request-URI')
    while (k < uriEnd && SCHEMECHAR[buf[k]!] === 1) k++
    if (k >= uriEnd || buf[k] !== 0x3a) throw err(ErrorCodes.ERR_SIP_BAD_REQUEST_URI, 'Bad Request-URI')
    for (; k < uriEnd; k++) {
      const c = buf[k]!
      if (c <= 32 || c >= 127 || c === 0x3c || c === 0x3e || c === 0x22) throw err(ErrorCodes.ERR_SIP_BAD_REQUEST_URI, 'Bad Request-URI')
    }
    uri = latin1(buf, uriStart, uriEnd)
    checkVersion(buf, q + 1, sle, 'Request-Line')
  }

  const headers: HeaderField[] = []
  // local alias: a module binding is re-loaded on every iteration of the name scan
  const token = TOKEN
  let pos = e + 1
  let cur: HeaderField | null = null
  let clField: HeaderField | null = null
  let headersEnd: number
  let bodyStart: number
  for (;;) {
    if (pos >= len) throw err(ErrorCodes.ERR_SIP_INCOMPLETE, 'Incomplete message', 400, 'Missing empty line after the headers')
    const c = buf[pos]!
    if (c === CR && pos + 1 < len && buf[pos + 1] === LF) { headersEnd = pos; bodyStart = pos + 2; break }
    if (c === LF) { headersEnd = pos; bodyStart = pos + 1; break }
    let le = buf.indexOf(LF, pos)
    if (le < 0) throw err(ErrorCodes.ERR_SIP_INCOMPLETE, 'Incomplete message', 400, 'Missing empty line after the headers')
    const next = le + 1
    if (le > pos && buf[le - 1] === CR) le--
    if (c === SP || c === HT) {
      // folded continuation line (§7.3.1)
      if (cur === null) throw err(ErrorCodes.ERR_SIP_BAD_HEADER, 'Malformed header line', 400, 'Continuation line before any header')
      let a = pos
      while (a < le && (buf[a] === SP || buf[a] === HT)) a++
      let b = le
      while (b > a && (buf[b - 1] === SP || buf[b - 1] === HT)) b--
      if (b > a) {
        if (cur.valueEnd === cur.valueStart) cur.valueStart = a
        else cur.folded = true
        cur.valueEnd = b
      }
      cur.lineEnd = next
      pos = next
      continue
    }
    let q = pos
    while (q < le && token[buf[q]!] === 1) q++
    const nameEnd = q
    while (q < le && (buf[q] === SP || buf[q] === HT)) q++
    if (nameEnd === pos || q >= le || buf[q] !== 0x3a) {
      throw err(ErrorCodes.ERR_SIP_BAD_HEADER, 'Malformed header line')
    }
    q++
    while (q < le && (buf[q] === SP || buf[q] === HT)) q++
    let b = le
    while (b > q && (buf[b - 1] === SP || buf[b - 1] === HT)) b--
    const id = lookupHeaderBytes(buf, pos, nameEnd)
    const name = id === H_OTHER ? latin1(buf, pos, nameEnd).toLowerCase() : CANONICAL[id]!
    cur = new HeaderField(name, id, pos, next, q, b)
    if (headers.length >= maxHeaders) throw err(ErrorCodes.ERR_SIP_TOO_MANY_HEADERS, 'Too Many Headers', 400)
    headers.push(cur)
    if (id === H_CONTENT_LENGTH) {
      // RFC 4475 mcl01: several Content-Length values cannot be reconciled
      if (clField !== null) throw err(ErrorCodes.ERR_SIP_DUPLICATE_HEADER, 'Multiple Content-Length values')
      clField = cur
    }
    pos = next
  }

  let end = len
  if (clField !== null) {
    let cl = 0
    let k = clField.valueStart
    if (k >= clField.valueEnd) throw err(ErrorCodes.ERR_SIP_BAD_CONTENT_LENGTH, 'Bad Content-Length')
    for (; k < clField.valueEnd; k++) {
      const c = buf[k]!
      if (DIGIT[c] !== 1) throw err(ErrorCodes.ERR_SIP_BAD_CONTENT_LENGTH, 'Bad Content-Length')
      cl = cl * 10 + c - 48
      if (cl > maxSize) throw err(ErrorCodes.ERR_SIP_BAD_CONTENT_LENGTH, 'Content-Length exceeds message')
    }
    // §18.3: a datagram shorter than Content-Length says is rejected with 400 (RFC 4475 clerr);
    // octets after the body are discarded (RFC 4475 dblreq).
    if (bodyStart + cl > len) throw err(ErrorCodes.ERR_SIP_BAD_CONTENT_LENGTH, 'Content-Length exceeds message')
    end = bodyStart + cl
  } else if (opts?.requireContentLength === true) {
    throw err(ErrorCodes.ERR_SIP_MISSING_CONTENT_LENGTH, 'Missing Content-Length')
  }
  return new SipMessage(buf, isRequest, method, uri, status, reason, headers, sls, sle, uriStart, uriEnd,
    headersEnd, bodyStart, end, clField !== null)
}

/** SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT; only 2.0 is served (else 505, RFC 4475 badvers). */
function checkVersion(buf: Buffer, s: number, e: number, what: string): void {
  if (e - s === 7 && (buf[s]! | 0x20) === 0x73 && (buf[s + 1]! | 0x20) === 0x69 && (buf[s + 2]! | 0x20) === 0x70 &&
    buf[s + 3] === 0x2f && buf[s + 4] === 0x32 && buf[s + 5] === 0x2e && buf[s + 6] === 0x30) return
  // well-formed but another version?
  let k = s + 4
  const ok = e - s > 4 && (buf[s]! | 0x20) === 0x73 && (buf[s + 1]! | 0x20) === 0x69 && (buf[s + 2]! | 0x20) === 0x70 && buf[s + 3] === 0x2f
  if (ok) {
    const d0 = k
    while (k < e && DIGIT[buf[k]!] === 1) k++
    if (k > d0 && k < e && buf[k] === 0x2e) {
      const d1 = ++k
      while (k < e && DIGIT[buf[k]!] === 1) k++
      if (k > d1 && k === e) throw err(ErrorCodes.ERR_SIP_BAD_VERSION, 'Version Not Supported', 505)
    }
  }
  throw err(ErrorCodes.ERR_SIP_BAD_START_LINE, 'Bad ' + what)
}
