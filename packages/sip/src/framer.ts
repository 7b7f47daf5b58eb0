/**
 * Stream framing for TCP/TLS (RFC 3261 §18.3): cut a byte stream into messages using
 * Content-Length, which stream transports MUST carry, and recognise RFC 5626 §3.5.1 CRLF
 * keep-alives ("\r\n\r\n" ping, "\r\n" pong).
 *
 * Buffers returned by next() are never written to again by the framer (it reallocates rather
 * than compacting in place), so a caller may keep them.
 */
import { SipParseError, ErrorCodes } from './errors.js'
import { DEFAULT_MAX_SIZE } from './message.js'

export const KEEPALIVE_PING: unique symbol = Symbol.for('sipedge.sip.keepalive.ping')
export const KEEPALIVE_PONG: unique symbol = Symbol.for('sipedge.sip.keepalive.pong')

const EMPTY = Buffer.alloc(0)

export interface StreamFramerOptions { maxSize?: number }

export class StreamFramer {
  private buf: Buffer
  private start: number
  private end: number
  /** buf is ours and bytes at >= end were never handed out */
  private owned: boolean
  /** where to resume looking for the end of the headers */
  private scan: number
  private readonly maxSize: number

  constructor(opts?: StreamFramerOptions) {
    this.buf = EMPTY
    this.start = 0
    this.end = 0
    this.owned = false
    this.scan = 0
    this.maxSize = opts?.maxSize ?? DEFAULT_MAX_SIZE
  }

  push(chunk: Buffer): void {
    const n = chunk.length
    if (n === 0) return
    if (this.start === this.end) {
      // nothing pending: adopt the chunk itself (zero copy for whole-message segments)
      this.buf = chunk
      this.start = 0
      this.end = n
      this.owned = false
      this.scan = 0
      return
    }
    if (this.owned && this.buf.length - this.end >= n) {
      chunk.copy(this.buf, this.end)
      this.end += n
      return
    }
    const pending = this.end - this.start
    const size = Math.max(4096, (pending + n) * 2)
    const nb = Buffer.allocUnsafe(size)
    this.buf.copy(nb, 0, this.start, this.end)
    chunk.copy(nb, pending)
    this.scan -= this.start
    this.buf = nb
    this.start = 0
    this.end = pending + n
    this.owned = true
  }

  get buffered(): number {
    return this.end - this.start
  }

  /** Next whole message, a keep-alive marker, or null when more bytes are needed. */
  next(): Buffer | typeof KEEPALIVE_PING | typeof KEEPALIVE_PONG | null {
    const buf = this.buf
    let s = this.start
    const end = this.end
    if (s >= end) return null
    if (buf[s] === 13) {
      if (end - s < 2) return null
      if (buf[s + 1] === 10) {
        if (end - s >= 4 && buf[s + 2] === 13 && buf[s + 3] === 10) {
          this.consume(s + 4)
          return KEEPALIVE_PING
        }
        if (end - s === 3 && buf[s + 2] === 13) return null // maybe a ping split in two
        // a lone CRLF: the pong (or stray CRLF before a start line, which §7.5 says to ignore)
        this.consume(s + 2)
        return KEEPALIVE_PONG
      }
    }
    if (buf[s] === 10) {
      // bare LF noise before a start line
      while (s < end && buf[s] === 10) s++
      this.consume(s)
      return this.next()
    }
    // find the end of the headers: CRLFCRLF (or LFLF from sloppy peers)
    let i = this.scan > s + 1 ? this.scan : s + 1
    let hdrEnd = -1
    for (; i < end; i++) {
      if (buf[i] !== 10) continue
      if (i + 1 < end && buf[i + 1] === 10) { hdrEnd = i + 2; break }
      if (i + 2 < end && buf[i + 1] === 13 && buf[i + 2] === 10) { hdrEnd = i + 3; break }
    }
    if (hdrEnd < 0) {
      // resume a little before the end: a CRLFCRLF may straddle chunks
      this.scan = end - 3 > s + 1 ? end - 3 : s + 1
      if (end - s > this.maxSize) throw new SipParseError(ErrorCodes.ERR_SIP_TOO_LARGE, 'Message Too Large', 513)
      return null
    }
    const cl = contentLength(buf, s, hdrEnd)
    if (cl === -1) throw new SipParseError(ErrorCodes.ERR_SIP_MISSING_CONTENT_LENGTH, 'Missing Content-Length', 400,
      'Missing Content-Length on a stream transport (RFC 3261 §18.3)')
    if (cl === -2) throw new SipParseError(ErrorCodes.ERR_SIP_BAD_CONTENT_LENGTH, 'Bad Content-Length')
    if (cl === -3) throw new SipParseError(ErrorCodes.ERR_SIP_DUPLICATE_HEADER, 'Multiple Content-Length values')
    const total = hdrEnd - s + cl
    if (total > this.maxSize) throw new SipParseError(ErrorCodes.ERR_SIP_TOO_LARGE, 'Message Too Large', 513)
    if (end - s < total) {
      // resume before the terminator (never inside the body, which may hold a blank line)
      this.scan = hdrEnd - 4 > s + 1 ? hdrEnd - 4 : s + 1
      return null
    }
    const msg = buf.subarray(s, s + total)
    this.consume(s + total)
    return msg
  }

  /** Drop everything buffered (e.g. after a framing error the connection is closed). */
  reset(): void {
    this.buf = EMPTY
    this.start = this.end = this.scan = 0
    this.owned = false
  }

  private consume(to: number): void {
    this.start = to
    this.scan = to
    if (to >= this.end) {
      // release the memory; never rewind into bytes we have handed out
      this.buf = EMPTY
      this.start = this.end = this.scan = 0
      this.owned = false
    }
  }
}

/**
 * Content-Length from the header lines in buf[s, e): value >= 0, -1 absent, -2 malformed,
 * -3 more than one.
 */
function contentLength(buf: Buffer, s: number, e: number): number {
  let p = s
  while (p < e && buf[p] !== 10) p++
  p++
  let found = -1
  while (p < e) {
    const c = buf[p]! | 0x20
    let q = -1
    if (c === 0x6c /* l */) {
      q = p + 1
    } else if (c === 0x63 && p + 14 <= e) {
      const name = 'content-length'
      let k = 1
      while (k < 14 && (buf[p + k]! | 0x20) === name.charCodeAt(k)) k++
      if (k === 14) q = p + 14
    }
    if (q >= 0) {
      while (q < e && (buf[q] === 32 || buf[q] === 9)) q++
      if (q < e && buf[q] === 58) {
        if (found !== -1) return -3
        q++
        while (q < e && (buf[q] === 32 || buf[q] === 9)) q++
        let v = 0
        const d0 = q
        while (q < e && buf[q]! >= 48 && buf[q]! <= 57) {
          v = v * 10 + buf[q]! - 48
          q++
          if (v > 0x7fffffff) return -2
        }
        while (q < e && (buf[q] === 32 || buf[q] === 9)) q++
        if (q === d0 || (buf[q] !== 13 && buf[q] !== 10)) return -2
        found = v
      }
    }
    while (p < e && buf[p] !== 10) p++
    p++
  }
  return found
}
