/**
 * MessageEditor: Kamailio-style "lumps". Edits are recorded as (start, end, bytes) splices
 * against the original buffer and applied only in toBuffers(), so every byte we do not touch
 * goes out exactly as it came in (no re-serialisation).
 *
 * Rules when edits meet: at the same offset, pure insertions come before a replacement or
 * removal; "prepend" insertions made later come first (a second prependVia() ends up on top);
 * appends keep call order. An edit that starts inside a range already replaced or removed by
 * an earlier-sorted edit is dropped. Replacing the exact same range twice keeps the last one.
 */
import { SipParseError, ErrorCodes } from './errors.js'
import { H_CONTACT, H_CONTENT_LENGTH, H_CONTENT_TYPE, H_MAX_FORWARDS, H_OTHER, H_RECORD_ROUTE, H_ROUTE, H_VIA, lookupHeaderName, wireName } from './headers.js'
import type { HeaderField, SipMessage } from './message.js'
import { splitList, type ParamSpan } from './params.js'
import { parseVia } from './via.js'

const CRLF = '\r\n'

class Edit {
  start: number
  end: number
  bytes: Buffer
  order: number
  constructor(start: number, end: number, bytes: Buffer, order: number) {
    this.start = start
    this.end = end
    this.bytes = bytes
    this.order = order
  }
}

function cmp(a: Edit, b: Edit): number {
  if (a.start !== b.start) return a.start - b.start
  const ai = a.start === a.end ? 0 : 1
  const bi = b.start === b.end ? 0 : 1
  if (ai !== bi) return ai - bi
  return a.order - b.order
}

export class MessageEditor {
  readonly msg: SipMessage
  private edits: Edit[]
  private seq: number

  constructor(msg: SipMessage) {
    this.msg = msg
    this.edits = []
    this.seq = 0
  }

  private insert(at: number, text: string | Buffer, prepend: boolean): void {
    const order = prepend ? -(++this.seq) : ++this.seq
    this.edits.push(new Edit(at, at, typeof text === 'string' ? Buffer.from(text, 'utf8') : text, order))
  }

  private replace(start: number, end: number, text: string | Buffer): void {
    const bytes = typeof text === 'string' ? Buffer.from(text, 'utf8') : text
    for (const e of this.edits) {
      if (e.start === start && e.end === end && start !== end) { e.bytes = bytes; return }
    }
    this.edits.push(new Edit(start, end, bytes, ++this.seq))
  }

  private firstIndex(id: number): number {
    return this.msg.indexOf(id)
  }

  /** Where new header lines go when there is no line of the same kind: the first header line. */
  private headersStart(): number {
    const hs = this.msg.headers
    return hs.length > 0 ? hs[0]!.lineStart : this.msg.headersEnd
  }

  /** Insert a header line above the first line of `id` (or at the top of the headers). */
  private prependLine(id: number, wire: string, value: string): this {
    const i = this.firstIndex(id)
    const at = i >= 0 ? this.msg.headers[i]!.lineStart : this.headersStart()
    this.insert(at, wire + ': ' + value + CRLF, true)
    return this
  }

  /** Remove the first value of header `id`: its whole line, or its first comma-separated element. */
  private removeFirstValue(id: number): this {
    const i = this.firstIndex(id)
    if (i < 0) return this
    const f = this.msg.headers[i]!
    const s = this.msg.rawValue(f)
    const r = splitList(s)
    if (r.length <= 2) {
      this.replace(f.lineStart, f.lineEnd, Buffer.alloc(0))
    } else {
      // drop "first," plus the white space before the second element
      this.replace(f.valueStart, f.valueStart + r[2]!, Buffer.alloc(0))
    }
    return this
  }

  prependVia(value: string): this {
    return this.prependLine(H_VIA, 'Via', value)
  }

  removeTopVia(): this {
    return this.removeFirstValue(H_VIA)
  }

  /**
   * Fill in received / rport on the top Via (RFC 3581 §4, RFC 3261 §18.2.1). An existing
   * received or rport is rewritten; an absent one is appended to the top Via element.
   */
  setTopViaParams(p: { received?: string; rport?: number }): this {
    const i = this.firstIndex(H_VIA)
    if (i < 0) return this
    const f = this.msg.headers[i]!
    const s = this.msg.rawValue(f)
    const r = splitList(s)
    const spans: ParamSpan[] = []
    parseVia(s, r[0], r[1], spans)
    const base = f.valueStart
    let appendAt = base + r[1]!
    let extra = ''
    const set = (name: string, value: string): void => {
      const sp = spans.find(x => x.name === name)
      if (sp !== undefined) this.replace(base + sp.semi, base + sp.end, ';' + name + '=' + value)
      else extra += ';' + name + '=' + value
    }
    if (p.received !== undefined) set('received', p.received)
    if (p.rport !== undefined) set('rport', String(p.rport))
    if (extra !== '') this.insert(appendAt, extra, false)
    appendAt = 0
    return this
  }

  removeFirstRoute(): this {
    return this.removeFirstValue(H_ROUTE)
  }

  prependRecordRoute(value: string): this {
    return this.prependLine(H_RECORD_ROUTE, 'Record-Route', value)
  }

  setRequestUri(uri: string): this {
    if (!this.msg.isRequest) throw new SipParseError(ErrorCodes.ERR_SIP_BAD_REQUEST_URI, 'Bad Request-URI', 400, 'A response has no Request-URI')
    this.replace(this.msg.uriStart, this.msg.uriEnd, uri)
    return this
  }

  /** Rewrite Max-Forwards in place (§16.6 step 3), or add the header when absent. */
  setMaxForwards(n: number): this {
    const i = this.firstIndex(H_MAX_FORWARDS)
    if (i >= 0) {
      const f = this.msg.headers[i]!
      this.replace(f.valueStart, f.valueEnd, String(n))
    } else {
      this.insert(this.msg.headersEnd, 'Max-Forwards: ' + n + CRLF, false)
    }
    return this
  }

  addHeader(name: string, value: string): this {
    this.insert(this.msg.headersEnd, wireName(name) + ': ' + value + CRLF, false)
    return this
  }

  private linesOf(name: string): HeaderField[] {
    const id = lookupHeaderName(name)
    const lname = name.toLowerCase()
    return this.msg.headers.filter(f => (id !== H_OTHER ? f.id === id : f.id === H_OTHER && f.name === lname))
  }

  removeHeader(name: string): this {
    for (const f of this.linesOf(name)) this.replace(f.lineStart, f.lineEnd, Buffer.alloc(0))
    return this
  }

  /** Replace the value of the first line of `name`, remove its other lines; add when absent. */
  replaceHeader(name: string, value: string): this {
    const lines = this.linesOf(name)
    if (lines.length === 0) return this.addHeader(name, value)
    this.replace(lines[0]!.valueStart, lines[0]!.valueEnd, value)
    for (let k = 1; k < lines.length; k++) this.replace(lines[k]!.lineStart, lines[k]!.lineEnd, Buffer.alloc(0))
    return this
  }

  /** Replace the index-th Contact value (counting across lines and commas). */
  replaceContact(index: number, value: string): this {
    let n = 0
    for (const f of this.msg.headers) {
      if (f.id !== H_CONTACT) continue
      const s = this.msg.rawValue(f)
      const r = splitList(s)
      for (let k = 0; k < r.length; k += 2) {
        if (n === index) {
          this.replace(f.valueStart + r[k]!, f.valueStart + r[k + 1]!, value)
          return this
        }
        n++
      }
    }
    throw new RangeError('No Contact value at index ' + index)
  }

  /** Replace the body and fix Content-Length (and Content-Type when given). */
  setBody(body: Buffer | string, contentType?: string): this {
    const b = typeof body === 'string' ? Buffer.from(body, 'utf8') : body
    this.replace(this.msg.bodyStart, this.msg.end, b)
    this.setContentLength(b.length)
    if (contentType !== undefined) this.replaceHeader('Content-Type', contentType)
    else if (b.length === 0) this.removeHeader('Content-Type')
    return this
  }

  private setContentLength(n: number): void {
    const i = this.firstIndex(H_CONTENT_LENGTH)
    if (i >= 0) {
      const f = this.msg.headers[i]!
      this.replace(f.valueStart, f.valueEnd, String(n))
    } else {
      this.insert(this.msg.headersEnd, 'Content-Length: ' + n + CRLF, false)
    }
  }

  /** Add Content-Length when the message (e.g. from UDP) has none: stream transports need it (§18.3). */
  ensureContentLength(): this {
    if (!this.msg.hasContentLength && !this.edits.some(e => e.start === this.msg.headersEnd && e.bytes.includes('Content-Length'))) {
      this.insert(this.msg.headersEnd, 'Content-Length: ' + (this.msg.end - this.msg.bodyStart) + CRLF, false)
    }
    return this
  }

  /** Number of recorded edits. */
  get size(): number {
    return this.edits.length
  }

  /** Slices of the original plus inserted bytes, ready for dgram.send / socket.writev. */
  toBuffers(): Buffer[] {
    const buf = this.msg.buf
    const edits = this.edits.slice().sort(cmp)
    const out: Buffer[] = []
    let pos = this.msg.startLineStart
    for (const e of edits) {
      if (e.start < pos) continue
      if (e.start > pos) out.push(buf.subarray(pos, e.start))
      if (e.bytes.length > 0) out.push(e.bytes)
      pos = e.end
    }
    if (pos < this.msg.end) out.push(buf.subarray(pos, this.msg.end))
    return out
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.toBuffers())
  }
}

void H_CONTENT_TYPE
