/**
 * Building messages from a request: responses (RFC 3261 §8.2.6, §16.7), the ACK for a
 * non-2xx final response (§17.1.1.3) and CANCEL (§9.1). Copied header values are the original
 * bytes; only new text is encoded.
 */
import { randomFillSync } from 'node:crypto'
import { H_CALL_ID, H_CSEQ, H_FROM, H_ROUTE, H_TO, H_VIA, WIRE, wireName } from './headers.js'
import type { HeaderField, SipMessage } from './message.js'
import { MAGIC_COOKIE, parseVia } from './via.js'
import { splitList, type ParamSpan } from './params.js'
import { SipParseError, ErrorCodes } from './errors.js'

/** Default reason phrases (RFC 3261 §21 and common extensions). */
export const REASONS: Record<number, string> = {
  100: 'Trying', 180: 'Ringing', 181: 'Call Is Being Forwarded', 182: 'Queued', 183: 'Session Progress',
  200: 'OK', 202: 'Accepted', 300: 'Multiple Choices', 301: 'Moved Permanently', 302: 'Moved Temporarily',
  305: 'Use Proxy', 380: 'Alternative Service', 400: 'Bad Request', 401: 'Unauthorized', 402: 'Payment Required',
  403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed', 406: 'Not Acceptable',
  407: 'Proxy Authentication Required', 408: 'Request Timeout', 410: 'Gone', 413: 'Request Entity Too Large',
  414: 'Request-URI Too Long', 415: 'Unsupported Media Type', 416: 'Unsupported URI Scheme', 420: 'Bad Extension',
  421: 'Extension Required', 423: 'Interval Too Brief', 429: 'Too Many Requests', 439: 'First Hop Lacks Outbound Support',
  480: 'Temporarily Unavailable', 481: 'Call/Transaction Does Not Exist', 482: 'Loop Detected', 483: 'Too Many Hops',
  484: 'Address Incomplete', 485: 'Ambiguous', 486: 'Busy Here', 487: 'Request Terminated', 488: 'Not Acceptable Here',
  491: 'Request Pending', 493: 'Undecipherable', 500: 'Server Internal Error', 501: 'Not Implemented',
  502: 'Bad Gateway', 503: 'Service Unavailable', 504: 'Server Time-out', 505: 'Version Not Supported',
  513: 'Message Too Large', 600: 'Busy Everywhere', 603: 'Decline', 604: 'Does Not Exist Anywhere', 606: 'Not Acceptable',
}

// random pool: one randomFillSync per 4 KiB of identifiers instead of one per call
const POOL = Buffer.alloc(4096)
let poolPos = POOL.length
const ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'

function randomToken(n: number): string {
  if (poolPos + n > POOL.length) {
    randomFillSync(POOL)
    poolPos = 0
  }
  let s = ''
  for (let i = 0; i < n; i++) s += ALPHABET[POOL[poolPos++]! % 62]
  return s
}

/** 'z9hG4bK' + 16 random alphanumerics (RFC 3261 §8.1.1.7). */
export function randomBranch(): string {
  return MAGIC_COOKIE + randomToken(16)
}

/** A random From/To tag (§19.3: at least 32 bits of randomness; we use ~71). */
export function randomTag(): string {
  return randomToken(12)
}

// ---- output assembly ------------------------------------------------------------------------
// Messages are written straight into a private slab (like Node's Buffer pool) and handed out as
// views of it: no Buffer per piece, no concat, no final copy. Short ASCII pieces and copied
// header values go through plain JS loops (a native call costs more than a few dozen bytes).
// A view keeps its slab alive, exactly as pooled Buffer.allocUnsafe / Buffer.concat results do.

const SLAB_SIZE = 16384
/** Room a new message must find in the current slab, else a fresh slab is started. */
const SLAB_MIN_FREE = 2048
let scratch = Buffer.allocUnsafeSlow(SLAB_SIZE)
let slabPos = 0
let start = 0
let off = 0

function begin(): void {
  if (scratch.length - slabPos < SLAB_MIN_FREE) {
    scratch = Buffer.allocUnsafeSlow(SLAB_SIZE)
    slabPos = 0
  }
  start = slabPos
  off = slabPos
}

function ensure(n: number): void {
  if (off + n <= scratch.length) return
  const used = off - start
  let size = SLAB_SIZE
  while (size < 2 * (used + n)) size *= 2
  const next = Buffer.allocUnsafeSlow(size)
  scratch.copy(next, 0, start, off)
  scratch = next
  start = 0
  off = used
}

/** Abandon the message being written (on an exception). */
function abort(): void {
  off = start
}

/** Append a JS string, UTF-8 encoded (ASCII fast path: one byte per char). */
function putStr(s: string): void {
  const n = s.length
  ensure(n)
  const d = scratch
  let o = off
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i)
    if (c >= 0x80) { putUtf8(s); return }
    d[o++] = c
  }
  off = o
}

function putUtf8(s: string): void {
  ensure(Buffer.byteLength(s, 'utf8'))
  off += scratch.write(s, off, 'utf8')
}

/** Append a pre-encoded constant. */
function putBytes(b: Uint8Array): void {
  const n = b.length
  ensure(n)
  const d = scratch
  const o = off
  for (let i = 0; i < n; i++) d[o + i] = b[i]!
  off = o + n
}

/** Append src[s, e). */
function putRange(src: Buffer, s: number, e: number): void {
  const n = e - s
  if (n <= 0) return
  ensure(n)
  if (n > 256) {
    src.copy(scratch, off, s, e)
  } else {
    const d = scratch
    const o = off - s
    for (let i = s; i < e; i++) d[o + i] = src[i]!
  }
  off += n
}

/** Append a non-negative integer in decimal. */
function putUint(v: number): void {
  if (!(v >= 0 && v <= 0x7fffffff && (v | 0) === v)) { putStr(String(v)); return }
  ensure(10)
  const d = scratch
  let digits = 1
  for (let x = v; x >= 10; x = (x / 10) | 0) digits++
  let o = off + digits
  off = o
  do {
    d[--o] = 48 + (v % 10)
    v = (v / 10) | 0
  } while (v > 0)
}

/** The message written since begin(), as a view of the slab. */
function finish(): Buffer {
  const b = Buffer.from(scratch.buffer, scratch.byteOffset + start, off - start)
  slabPos = (off + 7) & ~7
  start = slabPos
  off = slabPos
  return b
}

const ascii = (s: string): Uint8Array => Buffer.from(s, 'latin1')
const B_CRLF = ascii('\r\n')
const B_VIA = ascii('Via: ')
const B_FROM = ascii('From: ')
const B_TO = ascii('To: ')
const B_CALL_ID = ascii('Call-ID: ')
const B_CSEQ = ascii('CSeq: ')
const B_ROUTE = ascii('Route: ')
const B_SIP20_SP = ascii('SIP/2.0 ')
const B_SP_SIP20_CRLF = ascii(' SIP/2.0\r\n')
const B_TAG = ascii(';tag=')
const B_CT = ascii('Content-Type: ')
const B_CL = ascii('Content-Length: ')
const B_CL0_END = ascii('Content-Length: 0\r\n\r\n')
const B_MF70 = ascii('Max-Forwards: 70\r\n')
const B_CRLF_CRLF = ascii('\r\n\r\n')
const B_SP = ascii(' ')
const B_COLON_SP = ascii(': ')

function line(name: Uint8Array, msg: SipMessage, f: HeaderField): void {
  putBytes(name)
  putRange(msg.buf, f.valueStart, f.valueEnd)
  putBytes(B_CRLF)
}

/** The first Via line with received/rport filled in from the source (see BuildResponseOptions.source). */
function topViaLine(req: SipMessage, f: HeaderField, src: { address: string; port: number }): void {
  const s = req.rawValue(f)
  const r = splitList(s)
  const spans: ParamSpan[] = []
  let host: string
  try { host = parseVia(s, r[0], r[1], spans).host } catch { line(B_VIA, req, f); return }
  const rport = spans.find(x => x.name === 'rport')
  const sameHost = host.replace(/^\[|\]$/g, '').toLowerCase() === src.address.toLowerCase()
  if (rport === undefined && sameHost) { line(B_VIA, req, f); return }
  // Drop any received/rport already there, then append ours, keeping every other byte.
  const drop = spans.filter(x => x.name === 'received' || x.name === 'rport').sort((a, b) => a.semi - b.semi)
  let top = ''
  let at = r[0]!
  for (const d of drop) { top += s.slice(at, d.semi); at = d.end }
  top += s.slice(at, r[1]!).trimEnd()
  top += ';received=' + src.address
  if (rport !== undefined) top += ';rport=' + src.port
  putBytes(B_VIA)
  putStr(top + s.slice(r[1]!))
  putBytes(B_CRLF)
}

export interface BuildResponseOptions {
  toTag?: string
  /**
   * Where the request came from. RFC 3261 §18.2.1 / RFC 3581 §4: the response's top Via gets
   * `received=` when the source address differs from sent-by, and when the request asked with
   * `rport`, `rport=<source port>` plus `received=` (even if identical).
   */
  source?: { address: string; port: number }
  headers?: Array<[string, string]>
  body?: Buffer | string
  contentType?: string
}

/**
 * Response to `req`: Via lines (all, in order), From, To (+ tag), Call-ID, CSeq copied from the
 * request (§8.2.6.2), then opts.headers, Content-Type/Content-Length and the body. A To-tag is
 * added to every response but 100 when the request's To has none (opts.toTag or a random one).
 */
export function buildResponse(req: SipMessage, status: number, reason?: string, opts?: BuildResponseOptions): Buffer {
  begin()
  try {
    return buildResponseInner(req, status, reason, opts)
  } catch (e) {
    abort()
    throw e
  }
}

function buildResponseInner(req: SipMessage, status: number, reason: string | undefined, opts: BuildResponseOptions | undefined): Buffer {
  putBytes(B_SIP20_SP)
  if (typeof status === 'number') putUint(status)
  else putStr(String(status))
  putBytes(B_SP)
  putStr(reason ?? REASONS[status] ?? 'Unknown')
  putBytes(B_CRLF)
  const hs = req.headers
  let from: HeaderField | undefined
  let to: HeaderField | undefined
  let callId: HeaderField | undefined
  let cseq: HeaderField | undefined
  const source = opts?.source
  let topVia = true
  for (let i = 0; i < hs.length; i++) {
    const f = hs[i]!
    const id = f.id
    if (id === H_VIA) {
      if (topVia && source !== undefined) topViaLine(req, f, source)
      else line(B_VIA, req, f)
      topVia = false
    }
    else if (id === H_FROM) { if (from === undefined) from = f }
    else if (id === H_TO) { if (to === undefined) to = f }
    else if (id === H_CALL_ID) { if (callId === undefined) callId = f }
    else if (id === H_CSEQ) { if (cseq === undefined) cseq = f }
  }
  if (from !== undefined) line(B_FROM, req, from)
  if (to !== undefined) {
    let hasTag = false
    try { hasTag = req.to.tag !== undefined } catch { hasTag = false }
    const toTag = opts?.toTag
    if (!hasTag && (toTag !== undefined || status > 100)) {
      putBytes(B_TO)
      putRange(req.buf, to.valueStart, to.valueEnd)
      putBytes(B_TAG)
      putStr(toTag ?? randomTag())
      putBytes(B_CRLF)
    } else {
      line(B_TO, req, to)
    }
  }
  if (callId !== undefined) line(B_CALL_ID, req, callId)
  if (cseq !== undefined) line(B_CSEQ, req, cseq)
  if (opts === undefined) {
    putBytes(B_CL0_END)
    return finish()
  }
  const extra = opts.headers
  if (extra !== undefined) {
    for (const [n, v] of extra) {
      putStr(wireName(n))
      putBytes(B_COLON_SP)
      putStr(v)
      putBytes(B_CRLF)
    }
  }
  const body = opts.body === undefined ? undefined : typeof opts.body === 'string' ? Buffer.from(opts.body, 'utf8') : opts.body
  if (body !== undefined && body.length > 0 && opts.contentType !== undefined) {
    putBytes(B_CT)
    putStr(opts.contentType)
    putBytes(B_CRLF)
  }
  if (body === undefined || body.length === 0) {
    putBytes(B_CL0_END)
    return finish()
  }
  putBytes(B_CL)
  putUint(body.length)
  putBytes(B_CRLF_CRLF)
  putRange(body, 0, body.length)
  return finish()
}

/**
 * The first element of the top Via value in buf[s, e): the same range splitList() would give
 * (top-level comma outside quoted strings and <...>, trimmed of LWS), found on the bytes.
 * Returns the start; the end is left in viaEnd.
 */
let viaEnd = 0
function firstViaElement(buf: Buffer, s: number, e: number): number {
  let i = s
  let stop = e
  while (i < e) {
    const c = buf[i]!
    if (c === 34) {
      i++
      while (i < e) {
        const d = buf[i]!
        if (d === 92) i += 2
        else if (d === 34) break
        else i++
      }
      i = i < e ? i + 1 : e
      continue
    }
    if (c === 60) {
      const j = buf.indexOf(62, i)
      i = j < 0 || j >= e ? e : j + 1
      continue
    }
    if (c === 44) { stop = i; break }
    i++
  }
  let a = s
  while (a < stop && isLwsByte(buf[a]!)) a++
  let b = stop
  while (b > a && isLwsByte(buf[b - 1]!)) b--
  viaEnd = b
  return a
}

function isLwsByte(c: number): boolean {
  return c === 32 || c === 9 || c === 13 || c === 10
}

/** The first header field `id` of `msg`; a SipParseError (Missing ...) when there is none. */
function field(msg: SipMessage, id: number): HeaderField {
  const i = msg.indexOf(id)
  if (i < 0) throw new SipParseError(ErrorCodes.ERR_SIP_MISSING_HEADER, 'Missing ' + WIRE[id]!, 400, 'Missing ' + WIRE[id]! + ' header')
  return msg.headers[i]!
}

function common(invite: SipMessage, method: string, toSource: SipMessage): Buffer {
  begin()
  try {
    putStr(method)
    putBytes(B_SP)
    putStr(invite.uri)
    putBytes(B_SP_SIP20_CRLF)
    const ih = invite.headers
    const vf = ih[invite.indexOf(H_VIA)]!
    const vs = firstViaElement(invite.buf, vf.valueStart, vf.valueEnd)
    putBytes(B_VIA)
    putRange(invite.buf, vs, viaEnd)
    putBytes(B_CRLF)
    // Route header fields of the original request are copied (§9.1, §17.1.1.3)
    for (let i = 0; i < ih.length; i++) if (ih[i]!.id === H_ROUTE) line(B_ROUTE, invite, ih[i]!)
    putBytes(B_MF70)
    line(B_FROM, invite, field(invite, H_FROM))
    // the response being acknowledged comes off the network with only its top Via decoded: a
    // missing To is a malformed response (a typed error the caller drops it for), not a TypeError
    line(B_TO, toSource, field(toSource, H_TO))
    line(B_CALL_ID, invite, field(invite, H_CALL_ID))
    const seq = invite.cseq.seq
    putBytes(B_CSEQ)
    putUint(seq)
    putBytes(B_SP)
    putStr(method)
    putBytes(B_CRLF)
    putBytes(B_CL0_END)
    return finish()
  } catch (e) {
    abort()
    throw e
  }
}

/**
 * ACK for a non-2xx final response (§17.1.1.3): same Request-URI, Call-ID, From, CSeq number
 * and top Via (hence branch) as the INVITE, To from the response (with its tag), CSeq method ACK.
 */
export function buildAckForNonTwoXx(invite: SipMessage, response: SipMessage): Buffer {
  return common(invite, 'ACK', response)
}

/** CANCEL (§9.1): same Request-URI, Call-ID, To, From, CSeq number and top Via as the INVITE. */
export function buildCancel(invite: SipMessage): Buffer {
  return common(invite, 'CANCEL', invite)
}
