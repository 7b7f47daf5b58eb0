// Minimal SIP text handling for the harness's own user agents. Deliberately independent of
// @sipedge/sip: the harness must measure sipedge and Kamailio with the same, neutral code, and a
// bug in the product's parser must not hide itself by being on both ends of the wire.
// Only what the harness's flows need: start line, header lines in order, compact forms, body.

const COMPACT = { v: 'via', f: 'from', t: 'to', i: 'call-id', m: 'contact', l: 'content-length', c: 'content-type', e: 'content-encoding', k: 'supported', s: 'subject', o: 'event', r: 'refer-to', b: 'referred-by' }

/** Parses one datagram (Buffer). Returns null for garbage (counted by the caller). */
export function parse(buf) {
  const s = buf.toString('latin1')
  const end = s.indexOf('\r\n\r\n')
  if (end < 0) return null
  const lines = s.slice(0, end).split('\r\n')
  const first = lines[0]
  const msg = { raw: s, headers: [], body: s.slice(end + 4), isReq: true, method: '', uri: '', status: 0, reason: '' }
  if (first.startsWith('SIP/2.0 ')) {
    msg.isReq = false
    msg.status = Number(first.slice(8, 11))
    msg.reason = first.slice(12)
  } else {
    const sp1 = first.indexOf(' ')
    const sp2 = first.lastIndexOf(' ')
    if (sp1 < 0 || sp2 <= sp1) return null
    msg.method = first.slice(0, sp1)
    msg.uri = first.slice(sp1 + 1, sp2)
  }
  for (let i = 1; i < lines.length; i++) {
    const l = lines[i]
    if (l.length === 0) continue
    if ((l[0] === ' ' || l[0] === '\t') && msg.headers.length > 0) { msg.headers[msg.headers.length - 1][1] += ' ' + l.trim(); continue }
    const c = l.indexOf(':')
    if (c < 0) continue
    let name = l.slice(0, c).trim().toLowerCase()
    if (name.length === 1) name = COMPACT[name] ?? name
    msg.headers.push([name, l.slice(c + 1).trim()])
  }
  return msg
}

export function get(msg, name) {
  for (const h of msg.headers) if (h[0] === name) return h[1]
  return undefined
}

/** All values of a header, split at top-level commas (Via, Record-Route, Route may be folded). */
export function all(msg, name) {
  const out = []
  for (const h of msg.headers) if (h[0] === name) for (const v of splitComma(h[1])) out.push(v)
  return out
}

function splitComma(v) {
  if (!v.includes(',')) return [v]
  const out = []
  let depth = 0, quoted = false, start = 0
  for (let i = 0; i < v.length; i++) {
    const ch = v[i]
    if (ch === '"') quoted = !quoted
    else if (!quoted && ch === '<') depth++
    else if (!quoted && ch === '>') depth--
    else if (!quoted && depth === 0 && ch === ',') { out.push(v.slice(start, i).trim()); start = i + 1 }
  }
  out.push(v.slice(start).trim())
  return out
}

export function param(v, name) {
  if (v === undefined) return undefined
  const re = new RegExp(`;\\s*${name}=([^;>,\\s]+)`, 'i')
  const m = re.exec(v)
  return m ? m[1] : undefined
}

/** Branch of the top Via. */
export function topBranch(msg) {
  return param(get(msg, 'via'), 'branch')
}

export function cseq(msg) {
  const v = get(msg, 'cseq') ?? ''
  const sp = v.indexOf(' ')
  return { n: Number(v.slice(0, sp)), method: v.slice(sp + 1).trim() }
}

/** URI inside a name-addr (<...>) or the bare addr-spec. */
export function uriOf(v) {
  if (v === undefined) return undefined
  const a = v.indexOf('<')
  if (a >= 0) return v.slice(a + 1, v.indexOf('>', a))
  const semi = v.indexOf(';')
  return semi < 0 ? v.trim() : v.slice(0, semi).trim()
}

/** host and port of a sip: URI (IPv4 or name; default 5060). */
export function hostPort(uri) {
  let s = uri.replace(/^sips?:/i, '')
  const at = s.indexOf('@')
  if (at >= 0) s = s.slice(at + 1)
  s = s.split(/[;?>]/)[0]
  const c = s.lastIndexOf(':')
  return c < 0 ? { host: s, port: 5060 } : { host: s.slice(0, c), port: Number(s.slice(c + 1)) }
}

/**
 * A response to `req`: Via, From, To (To-tag added when missing and given), Call-ID, CSeq copied;
 * Record-Route copied too when asked (UAS 18x/2xx to a dialog-creating request, RFC 3261 §12.1.1).
 */
export function response(req, status, reason, { toTag, rr = false, contact, extra = '', body = '' } = {}) {
  let out = `SIP/2.0 ${status} ${reason}\r\n`
  for (const h of req.headers) {
    const n = h[0]
    if (n === 'via') out += `Via: ${h[1]}\r\n`
    else if (n === 'record-route' && rr) out += `Record-Route: ${h[1]}\r\n`
  }
  let to = get(req, 'to') ?? ''
  if (toTag !== undefined && !/;\s*tag=/i.test(to)) to += `;tag=${toTag}`
  out += `From: ${get(req, 'from')}\r\nTo: ${to}\r\nCall-ID: ${get(req, 'call-id')}\r\nCSeq: ${get(req, 'cseq')}\r\n`
  if (contact !== undefined) out += `Contact: <${contact}>\r\n`
  out += extra
  out += `Content-Length: ${Buffer.byteLength(body, 'latin1')}\r\n\r\n${body}`
  return Buffer.from(out, 'latin1')
}

/** Microsecond monotonic clock shared by every thread and process of the machine (CLOCK_MONOTONIC). */
export function nowUs() {
  return Number(process.hrtime.bigint() / 1000n)
}

// ------------------------------------------------------------------------------ latency histogram
// 5 µs buckets up to 10 ms, 1 ms buckets up to 1 s, one overflow bucket. Mergeable by addition.
export const HIST_SIZE = 2000 + 990 + 1

export function histIndex(us) {
  if (us < 0) us = 0
  if (us < 10000) return Math.floor(us / 5)
  if (us < 1000000) return 2000 + Math.floor((us - 10000) / 1000)
  return HIST_SIZE - 1
}

function bucketUpperUs(i) {
  if (i < 2000) return (i + 1) * 5
  if (i < HIST_SIZE - 1) return 10000 + (i - 2000 + 1) * 1000
  return 1000000 // overflow: reported as 1000 ms, meaning 1 s or more
}

/** Percentiles (ms, bucket upper bound) of a histogram (array of counts). */
export function percentiles(h, ps = [50, 95, 99]) {
  let total = 0
  for (const c of h) total += c
  const out = { count: total }
  for (const p of ps) {
    if (total === 0) { out[`p${p}`] = null; continue }
    const rank = Math.ceil((p / 100) * total)
    let acc = 0
    for (let i = 0; i < h.length; i++) {
      acc += h[i]
      if (acc >= rank) { out[`p${p}`] = bucketUpperUs(i) / 1000; break }
    }
  }
  return out
}
