// Regression guard for the hot-path shortcuts: memchr line scanning in callIdHash, the
// (first byte, length) header-name table, interned parameter names / Via transports, and the
// single-slab message builders must give exactly what the plain definitions give, on the
// corpus, the torture messages and seeded random mutations of them.
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  tryParseMessage, SipMessage, callIdHash, callIdHashOf, findCallId, callIdRangeStart, callIdRangeLength, parseVia,
  parseNameAddr, splitList, lookupHeaderName, canonicalName, buildResponse, buildAckForNonTwoXx, buildCancel, wireName,
  REASONS, SipParseError,
} from '@sipedge/sip'
import { TORTURE_DIR } from './fixtures/torture-dir.js'

const here = fileURLToPath(new URL('.', import.meta.url))
const files: string[] = []
const walk = (d: string): void => {
  if (!fs.existsSync(d)) return
  for (const f of fs.readdirSync(d)) {
    const p = path.join(d, f)
    if (fs.statSync(p).isDirectory()) walk(p)
    else if (!/\.(json|md)$|SHA256/.test(f)) files.push(p)
  }
}
walk(path.join(here, 'corpus'))
if (TORTURE_DIR !== undefined) walk(TORTURE_DIR)
const crlf = (s: string): Buffer => Buffer.from(s.replace(/\n/g, '\r\n'))
const seeds: Buffer[] = files.map(f => fs.readFileSync(f))
seeds.push(crlf(`SIP/2.0 486 Busy Here
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060 ; branch = z9hG4bK776asdhds ;rport=5,SIP/2.0/TCP [2001:db8::1]:5061;branch=x
v: sip / 2.0 / tls h.example.com;BRANCH=z9hG4bK3;TTL=3;maddr=1.2.3.4;Transport=x
t: "Bob \\"B\\"" <sip:bob@biloxi.example.com> ; TAG = a6c85cf;x
f: sip:alice@atlanta.example.com;tag=1928301774;foo="bar;tag=zz"
i: a84b4c76e66710@pc33.atlanta.example.com
CSeq: 314159 INVITE
Route: <sip:p1.example.com;lr>, <sip:p2.example.com;LR>
Content-Length: 0

`))

// deterministic mutations, biased into the header section
let rnd = 0x5eed
const rand = (n: number): number => { rnd = (Math.imul(rnd, 1103515245) + 12345) >>> 0; return (rnd >>> 8) % n }
const CH = [32, 9, 13, 10, 59, 44, 34, 60, 62, 58, 61, 92, 97, 84, 0xc3, 0xa9, 0, 47, 64, 63, 116, 103, 91, 93, 42, 49, 127]
const INS = [';tag=', ',', ' ;branch=z9hG4bKq', '"', '<sip:x@y>', ';x', '\r\n ', 'tag', ';TAG', '=', ' ', 'i:', 'Call-ID:']
const messages: Buffer[] = [...seeds]
for (let k = 0; k < 1500; k++) {
  let b = Buffer.from(seeds[rand(seeds.length)]!)
  for (let j = 1 + rand(3); j > 0; j--) {
    const he = b.indexOf('\r\n\r\n')
    const pos = rand(Math.max(1, he > 0 ? he : b.length))
    const kind = rand(4)
    if (kind === 0) b[pos] = CH[rand(CH.length)]!
    else if (kind === 1) b = Buffer.concat([b.subarray(0, pos), Buffer.from([CH[rand(CH.length)]!]), b.subarray(pos)])
    else if (kind === 2) b = Buffer.concat([b.subarray(0, pos), b.subarray(pos + 1 + rand(4))])
    else b = Buffer.concat([b.subarray(0, pos), Buffer.from(INS[rand(INS.length)]!), b.subarray(pos)])
  }
  messages.push(b)
}

const outcome = (f: () => unknown): unknown => {
  try { return { ok: f() } } catch (e) { return { err: (e as { code?: string }).code ?? (e as Error).constructor.name, msg: (e as Error).message } }
}

/** Reference Call-ID finder: a plain per-byte line walk over the header section. */
function refCallIdHash(buf: Buffer): number {
  let p = buf.indexOf(10)
  if (p < 0) return -1
  p++
  while (p < buf.length) {
    if (buf[p] === 13 || buf[p] === 10) return -1
    let e = p
    while (e < buf.length && buf[e] !== 10) e++
    const lineText = buf.toString('latin1', p, e)
    const m = /^(call-id|i)[ \t]*:((?:[ \t]|\r?\n[ \t])*)([^\r\n \t]*)/i.exec(lineText + buf.toString('latin1', e, Math.min(buf.length, e + 300)))
    if (m !== null) {
      if (m[3] === '') return -1
      return callIdHashOf(m[3]!)
    }
    p = e + 1
  }
  return -1
}

t.test('callIdHash / findCallId agree with a plain line walk', async t => {
  let n = 0
  for (const b of messages) {
    const h = callIdHash(b)
    if (h !== refCallIdHash(b)) t.fail('hash differs: ' + JSON.stringify(b.toString('latin1').slice(0, 300)))
    const p = findCallId(b)
    if ((p < 0) !== (h < 0)) t.fail('findCallId/callIdHash disagree')
    if (p >= 0 && callIdHashOf(b.toString('latin1', callIdRangeStart(p), callIdRangeStart(p) + callIdRangeLength(p))) !== h) t.fail('range')
    n++
  }
  t.ok(n > 1000)
})

t.test('header ids, decoded Via / From / To agree with the generic parsers', async t => {
  let checked = 0
  for (const b of messages) {
    const m = tryParseMessage(b)
    if (!(m instanceof SipMessage)) continue
    for (const f of m.headers) {
      const name = b.toString('latin1', f.lineStart, f.lineStart + b.subarray(f.lineStart).findIndex(c => c === 58 || c === 32 || c === 9))
      if (f.id !== lookupHeaderName(name) || f.name !== canonicalName(name)) t.fail('header name ' + name)
    }
    const vi = m.headers.findIndex(f => f.name === 'via')
    if (vi >= 0) {
      // the definition: the first element of the first Via line, found as the getter always did
      const s = m.rawValue(m.headers[vi]!)
      let e = s.indexOf(',')
      if (e >= 0 && s.indexOf('"') >= 0) e = splitList(s)[1]!
      t.same(outcome(() => m.topVia), outcome(() => parseVia(s, 0, e < 0 ? s.length : e)), 'top Via')
    }
    for (const [name, get] of [['from', () => m.from], ['to', () => m.to]] as const) {
      const f = m.headers.find(h => h.name === name)
      if (f === undefined) continue
      t.same(outcome(get), outcome(() => parseNameAddr(m.rawValue(f), name === 'from' ? 'From' : 'To')), name)
    }
    checked++
  }
  t.ok(checked > 50)
})

// The builders as first written (one Buffer per piece, concatenated): the reference output.
function refLine(out: Buffer[], wire: string, msg: SipMessage, i: number): void {
  const f = msg.headers[i]
  // a header the ACK/CANCEL must copy is missing: a typed error (fuzz-ack-for-response-without-to)
  if (f === undefined) throw new SipParseError('ERR_SIP_MISSING_HEADER', 'Missing ' + wire, 400, 'Missing ' + wire + ' header')
  out.push(Buffer.from(wire + ': ', 'latin1'), msg.buf.subarray(f.valueStart, f.valueEnd), Buffer.from('\r\n'))
}
function refResponse(req: SipMessage, status: number, reason: string | undefined, toTag: string | undefined, headers?: Array<[string, string]>, body?: string, ct?: string): Buffer {
  const out: Buffer[] = [Buffer.from('SIP/2.0 ' + status + ' ' + (reason ?? REASONS[status] ?? 'Unknown') + '\r\n', 'utf8')]
  const hs = req.headers
  hs.forEach((f, i) => { if (f.name === 'via') refLine(out, 'Via', req, i) })
  const first = (n: string): number => hs.findIndex(f => f.name === n)
  if (first('from') >= 0) refLine(out, 'From', req, first('from'))
  if (first('to') >= 0) {
    let hasTag = false
    try { hasTag = req.to.tag !== undefined } catch { hasTag = false }
    const f = hs[first('to')]!
    if (!hasTag && (toTag !== undefined || status > 100)) out.push(Buffer.from('To: '), req.buf.subarray(f.valueStart, f.valueEnd), Buffer.from(';tag=' + toTag + '\r\n', 'utf8'))
    else refLine(out, 'To', req, first('to'))
  }
  if (first('call-id') >= 0) refLine(out, 'Call-ID', req, first('call-id'))
  if (first('cseq') >= 0) refLine(out, 'CSeq', req, first('cseq'))
  for (const [n, v] of headers ?? []) out.push(Buffer.from(wireName(n) + ': ' + v + '\r\n', 'utf8'))
  const bb = body === undefined ? undefined : Buffer.from(body, 'utf8')
  if (bb !== undefined && bb.length > 0 && ct !== undefined) out.push(Buffer.from('Content-Type: ' + ct + '\r\n', 'utf8'))
  out.push(Buffer.from('Content-Length: ' + (bb === undefined ? 0 : bb.length) + '\r\n\r\n'))
  if (bb !== undefined && bb.length > 0) out.push(bb)
  return Buffer.concat(out)
}
function refCommon(inv: SipMessage, method: string, toSrc: SipMessage): Buffer {
  const out: Buffer[] = [Buffer.from(method + ' ' + inv.uri + ' SIP/2.0\r\nVia: ', 'utf8')]
  const vf = inv.headers.find(f => f.name === 'via')!
  const s = inv.rawValue(vf)
  const r = splitList(s)
  out.push(inv.buf.subarray(vf.valueStart + r[0]!, vf.valueStart + r[1]!), Buffer.from('\r\n'))
  inv.headers.forEach((f, i) => { if (f.name === 'route') refLine(out, 'Route', inv, i) })
  out.push(Buffer.from('Max-Forwards: 70\r\n'))
  refLine(out, 'From', inv, inv.headers.findIndex(f => f.name === 'from'))
  refLine(out, 'To', toSrc, toSrc.headers.findIndex(f => f.name === 'to'))
  refLine(out, 'Call-ID', inv, inv.headers.findIndex(f => f.name === 'call-id'))
  out.push(Buffer.from('CSeq: ' + inv.cseq.seq + ' ' + method + '\r\nContent-Length: 0\r\n\r\n'))
  return Buffer.concat(out)
}

t.test('buildResponse / buildAckForNonTwoXx / buildCancel match the piecewise reference', async t => {
  let built = 0
  const hdrs: Array<[string, string]> = [['contact', '<sip:x@y>'], ['X-Ä', 'ü'], ['retry-after', '30']]
  for (const b of messages) {
    const m = tryParseMessage(b)
    if (!(m instanceof SipMessage) || !m.isRequest) continue
    for (const [st, reason, body] of [[180, undefined, undefined], [200, 'OK é', 'v=0\r\n'], [486, 'Busy', ''], [603, undefined, 'x'.repeat(5000)]] as const) {
      const got = outcome(() => buildResponse(m, st, reason, { toTag: 'tg1', headers: hdrs, body, contentType: 'application/sdp' }))
      const want = outcome(() => refResponse(m, st, reason, 'tg1', hdrs, body, 'application/sdp'))
      if (JSON.stringify(got) !== JSON.stringify(want)) t.fail('response ' + st + ' ' + JSON.stringify(b.toString('latin1').slice(0, 200)))
    }
    const trying = outcome(() => buildResponse(m, 100))
    if (JSON.stringify(trying) !== JSON.stringify(outcome(() => refResponse(m, 100, undefined, undefined)))) t.fail('100 Trying')
    const ack = outcome(() => buildAckForNonTwoXx(m, m))
    if (JSON.stringify(ack) !== JSON.stringify(outcome(() => refCommon(m, 'ACK', m)))) t.fail('ACK ' + JSON.stringify(b.toString('latin1').slice(0, 200)))
    const cancel = outcome(() => buildCancel(m))
    if (JSON.stringify(cancel) !== JSON.stringify(outcome(() => refCommon(m, 'CANCEL', m)))) t.fail('CANCEL')
    built++
  }
  t.ok(built > 50)
  // outputs are independent views: building more must not change an earlier result
  const m = tryParseMessage(seeds[0]!) as SipMessage
  const keep = Array.from({ length: 200 }, (_, i) => buildResponse(m, 180, 'R' + i, { toTag: 'k' + i }))
  const copies = keep.map(x => Buffer.from(x))
  for (let i = 0; i < 300; i++) buildAckForNonTwoXx(m, m)
  t.ok(keep.every((x, i) => x.equals(copies[i]!)), 'earlier outputs intact')
})
