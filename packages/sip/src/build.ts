/**
 * Building messages from a request: responses (RFC 3261 §8.2.6, §16.7), the ACK for a
 * non-2xx final response (§17.1.1.3) and CANCEL (§9.1). Copied header values are the original
 * bytes; only new text is encoded.
 */
import { randomFillSync } from 'node:crypto'
import { H_CALL_ID, H_CSEQ, H_FROM, H_ROUTE, H_TO, H_VIA, wireName } from './headers.js'
import type { HeaderField, SipMessage } from './message.js'
import { MAGIC_COOKIE } from './via.js'
import { splitList } from './params.js'

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

const CRLF_B = Buffer.from('\r\n')

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

function line(out: Buffer[], wire: string, msg: SipMessage, f: HeaderField): void {
  out.push(Buffer.from(wire + ': ', 'latin1'), msg.buf.subarray(f.valueStart, f.valueEnd), CRLF_B)
}

function text(out: Buffer[], s: string): void {
  out.push(Buffer.from(s, 'utf8'))
}

export interface BuildResponseOptions {
  toTag?: string
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
  const out: Buffer[] = []
  text(out, 'SIP/2.0 ' + status + ' ' + (reason ?? REASONS[status] ?? 'Unknown') + '\r\n')
  const hs = req.headers
  for (let i = 0; i < hs.length; i++) if (hs[i]!.id === H_VIA) line(out, 'Via', req, hs[i]!)
  for (let i = 0; i < hs.length; i++) {
    const f = hs[i]!
    if (f.id === H_FROM) { line(out, 'From', req, f); break }
  }
  for (let i = 0; i < hs.length; i++) {
    const f = hs[i]!
    if (f.id !== H_TO) continue
    let hasTag = false
    try { hasTag = req.to.tag !== undefined } catch { hasTag = false }
    if (!hasTag && (opts?.toTag !== undefined || status > 100)) {
      out.push(Buffer.from('To: ', 'latin1'), req.buf.subarray(f.valueStart, f.valueEnd))
      text(out, ';tag=' + (opts?.toTag ?? randomTag()) + '\r\n')
    } else {
      line(out, 'To', req, f)
    }
    break
  }
  for (let i = 0; i < hs.length; i++) {
    const f = hs[i]!
    if (f.id === H_CALL_ID) { line(out, 'Call-ID', req, f); break }
  }
  for (let i = 0; i < hs.length; i++) {
    const f = hs[i]!
    if (f.id === H_CSEQ) { line(out, 'CSeq', req, f); break }
  }
  if (opts?.headers !== undefined) for (const [n, v] of opts.headers) text(out, wireName(n) + ': ' + v + '\r\n')
  const body = opts?.body === undefined ? undefined : typeof opts.body === 'string' ? Buffer.from(opts.body, 'utf8') : opts.body
  if (body !== undefined && body.length > 0 && opts?.contentType !== undefined) text(out, 'Content-Type: ' + opts.contentType + '\r\n')
  text(out, 'Content-Length: ' + (body === undefined ? 0 : body.length) + '\r\n\r\n')
  if (body !== undefined && body.length > 0) out.push(body)
  return Buffer.concat(out)
}

function topViaValue(msg: SipMessage): Buffer {
  const i = msg.indexOf(H_VIA)
  const f = msg.headers[i]!
  const s = msg.rawValue(f)
  const r = splitList(s)
  return msg.buf.subarray(f.valueStart + r[0]!, f.valueStart + r[1]!)
}

function common(invite: SipMessage, method: string, toSource: SipMessage): Buffer[] {
  const out: Buffer[] = []
  text(out, method + ' ' + invite.uri + ' SIP/2.0\r\nVia: ')
  out.push(topViaValue(invite), CRLF_B)
  // Route header fields of the original request are copied (§9.1, §17.1.1.3)
  for (const f of invite.headers) if (f.id === H_ROUTE) line(out, 'Route', invite, f)
  text(out, 'Max-Forwards: 70\r\n')
  line(out, 'From', invite, invite.headers[invite.indexOf(H_FROM)]!)
  line(out, 'To', toSource, toSource.headers[toSource.indexOf(H_TO)]!)
  line(out, 'Call-ID', invite, invite.headers[invite.indexOf(H_CALL_ID)]!)
  text(out, 'CSeq: ' + invite.cseq.seq + ' ' + method + '\r\nContent-Length: 0\r\n\r\n')
  return out
}

/**
 * ACK for a non-2xx final response (§17.1.1.3): same Request-URI, Call-ID, From, CSeq number
 * and top Via (hence branch) as the INVITE, To from the response (with its tag), CSeq method ACK.
 */
export function buildAckForNonTwoXx(invite: SipMessage, response: SipMessage): Buffer {
  return Buffer.concat(common(invite, 'ACK', response))
}

/** CANCEL (§9.1): same Request-URI, Call-ID, To, From, CSeq number and top Via as the INVITE. */
export function buildCancel(invite: SipMessage): Buffer {
  return Buffer.concat(common(invite, 'CANCEL', invite))
}
