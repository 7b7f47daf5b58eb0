// The SIP mutation fuzzer shared by the parser fuzz test (packages/sip/test/fuzz.test.ts), the
// worker handler fuzz test (packages/tests/test/handler-fuzz.test.ts) and the long run
// (benchmarks/fuzz.mjs). Plain JavaScript so the benchmark can load it without a build.
//
// Deterministic: input i of a run with seed S comes from its own PRNG seeded with (S, i), so any
// input can be rebuilt alone (`mutant(seeds, S, i)`), whatever worker or batch produced it.
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

/** Largest input produced (bytes): past the parser's default 64 KiB limit, to test it too. */
export const MAX_INPUT = 96 * 1024

// ------------------------------------------------------------------ PRNG (mulberry32)

function mix32(x) {
  x = Math.imul(x ^ (x >>> 16), 0x7feb352d)
  x = Math.imul(x ^ (x >>> 15), 0x846ca68b)
  return (x ^ (x >>> 16)) >>> 0
}

export class Rng {
  constructor(seed) { this.s = seed >>> 0 }
  u32() {
    this.s = (this.s + 0x6d2b79f5) | 0
    let t = Math.imul(this.s ^ (this.s >>> 15), 1 | this.s)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return (t ^ (t >>> 14)) >>> 0
  }
  /** 0 <= r < n (n >= 1) */
  int(n) { return n <= 1 ? 0 : this.u32() % n }
  chance(p) { return this.u32() < p * 4294967296 }
  pick(a) { return a[this.int(a.length)] }
}

/** The PRNG of input `index` in a run with `seed`. */
export function rngFor(seed, index) {
  return new Rng(mix32(mix32(seed >>> 0) ^ mix32((index + 0x9e3779b9) >>> 0) ^ Math.floor(index / 4294967296)))
}

// ------------------------------------------------------------------ seeds

const here = path.dirname(fileURLToPath(import.meta.url))
/** packages/sip/test */
const testDir = path.resolve(here, '..')
/**
 * ../shared/sip-torture next to the repository (read in place, never copied: its README); from a
 * git worktree one or two levels further down (/work/wt/NAME), the nearest such folder above.
 */
function findTorture() {
  let dir = path.resolve(testDir, '../../../..')
  for (let k = 0; k < 3; k++, dir = path.dirname(dir)) {
    const d = path.join(dir, 'shared/sip-torture')
    if (fs.existsSync(path.join(d, 'rfc4475'))) return d
  }
  return null
}
const tortureDir = findTorture()

function filesIn(dir, ext) {
  if (!fs.existsSync(dir)) return []
  return fs.readdirSync(dir).filter(f => f.endsWith(ext)).sort().map(f => path.join(dir, f))
}

/**
 * The seed corpus: packages/sip/test/fuzz-corpus/*.sip (checked in for fuzzing), the parser
 * corpus (test/corpus/{valid,invalid}) and, when present, the RFC 4475 / RFC 5118 torture
 * messages. Sorted, so a seed index means the same message on every machine with the same files.
 */
export function loadSeeds() {
  const files = [
    ...filesIn(path.join(testDir, 'fuzz-corpus'), '.sip'),
    ...filesIn(path.join(testDir, 'corpus/valid'), '.sip'),
    ...filesIn(path.join(testDir, 'corpus/invalid'), '.sip'),
    ...(tortureDir !== null ? filesIn(path.join(tortureDir, 'rfc4475'), '.dat') : []),
    ...(tortureDir !== null ? filesIn(path.join(tortureDir, 'rfc5118'), '.dat') : []),
  ]
  const root = path.resolve(testDir, '../../..')
  return files.map(f => ({ name: f.startsWith(root) ? path.relative(root, f) : f, buf: fs.readFileSync(f) }))
}

export const hasTorture = () => tortureDir !== null

// ------------------------------------------------------------------ mutations

const B = s => Buffer.from(s, 'latin1')
/** Bytes and short strings that sit on the parser's decision points. */
const INTERESTING = [
  '\r', '\n', '\r\n', '\0', '\xff', '\x80', ':', ',', '<', '>', '"', ';', '=', '\\', '%', '@', ' ', '\t', '[', ']', '?', '&',
  '\r\n ', '\r\n\t', '\r\n\r\n', '%00', '%zz', '"\\', '\\"', 'sip:', 'sips:', 'tel:', '<sip:', '>;', ';;', ',,', '::', '<>',
  ';branch=z9hG4bK', ';branch=', ';tag=', ';received=', ';rport', ';rport=', ';lr', ';maddr=', ';transport=tcp', ';transport=ws',
  ';expires=', ';q=', ';ob', ';reg-id=1', '[::1]', '[fe80::1%25eth0]', ':0', ':65536', ':99999', 'SIP/2.0', 'SIP/2.0/UDP ',
  '\xc3\xa9', '\xe6\x97\xa5', '\xf0\x9f\x98\x80', '\xed\xa0\x80',
].map(B)
const HUGE_UNITS = ['a', ',', ';', ';x=y', '<sip:a@b>,', '"', ' ', '9', 'SIP/2.0/UDP h;branch=z9hG4bK1,', '\r\n ', '%25', '\\"', '[', ':'].map(B)
const NUMBERS = ['0', '-1', '1', '4294967296', '4294967295', '2147483648', '2147483647', '99999999999999999999', '1e3', '0x10', '',
  '00000000000000000001', '65536', '65535', '256', '255', '70', '9007199254740993', '1.5', ' 1', '+1'].map(B)
/** Header names to transplant, long and compact (RFC 3261 §7.3.3). */
const NAMES = ['Via', 'v', 'From', 'f', 'To', 't', 'Call-ID', 'i', 'CSeq', 'Contact', 'm', 'Content-Length', 'l', 'Content-Type', 'c',
  'Max-Forwards', 'Route', 'Record-Route', 'Expires', 'Authorization', 'Proxy-Authorization', 'Require', 'Proxy-Require',
  'Supported', 'k', 'Path', 'User-Agent', 'Date', 'Event', 'o', 'Refer-To', 'r', 'Session-Expires', 'x'].map(B)

const CRLF = B('\r\n')

/** Start offsets of the lines of the header section (up to the first empty line). */
function headerLines(b) {
  const out = []
  let p = 0
  const end = b.indexOf('\r\n\r\n')
  const limit = end < 0 ? b.length : end + 2
  while (p < limit) {
    out.push(p)
    const n = b.indexOf(10, p)
    if (n < 0) break
    p = n + 1
  }
  return out
}
/** [start, end) of the line at offset p, end including its LF (or the buffer end). */
function lineAt(b, p) {
  const n = b.indexOf(10, p)
  return [p, n < 0 ? b.length : n + 1]
}
const cat = (...parts) => Buffer.concat(parts)

function insert(b, at, x) { return cat(b.subarray(0, at), x, b.subarray(at)) }

/** One mutation of `b` (a new Buffer; `b` is not written to). `other` is another seed, for splicing. */
function mutateOnce(r, b, other) {
  const len = b.length
  const pos = () => r.int(len + 1)
  switch (r.int(17)) {
    case 0: { // byte set
      if (len === 0) return B('\r\n')
      const c = Buffer.from(b)
      c[r.int(len)] = r.chance(0.5) ? r.pick(INTERESTING)[0] : r.int(256)
      return c
    }
    case 1: { // bit flip
      if (len === 0) return b
      const c = Buffer.from(b)
      c[r.int(len)] ^= 1 << r.int(8)
      return c
    }
    case 2: return insert(b, pos(), r.pick(INTERESTING))
    case 3: { // delete a range
      const p = pos()
      return cat(b.subarray(0, p), b.subarray(Math.min(len, p + 1 + r.int(r.chance(0.2) ? 400 : 16))))
    }
    case 4: { // duplicate a header line elsewhere
      const ls = headerLines(b)
      if (ls.length < 2) return b
      const [s, e] = lineAt(b, ls[1 + r.int(ls.length - 1)])
      let line = b.subarray(s, e)
      if (line[line.length - 1] !== 10) line = cat(line, CRLF)
      const reps = r.chance(0.1) ? 1 + r.int(600) : 1
      return insert(b, ls[1 + r.int(ls.length - 1)], Buffer.concat(Array(reps).fill(line)))
    }
    case 5: { // remove a header line
      const ls = headerLines(b)
      if (ls.length < 2) return b
      const [s, e] = lineAt(b, ls[1 + r.int(ls.length - 1)])
      return cat(b.subarray(0, s), b.subarray(e))
    }
    case 6: return b.subarray(0, pos()) // truncate
    case 7: { // a huge value
      const unit = r.pick(HUGE_UNITS)
      const n = r.chance(0.1) ? 1 + r.int(Math.floor(70_000 / unit.length)) : 1 + r.int(Math.floor(4_000 / unit.length))
      return insert(b, pos(), Buffer.concat(Array(n).fill(unit)))
    }
    case 8: { // a number replaced by a boundary value
      const digits = []
      for (let i = 0; i < len && digits.length < 64; i++) if (b[i] >= 48 && b[i] <= 57 && (i === 0 || b[i - 1] < 48 || b[i - 1] > 57)) digits.push(i)
      if (digits.length === 0) return b
      const s = r.pick(digits)
      let e = s
      while (e < len && b[e] >= 48 && b[e] <= 57) e++
      return cat(b.subarray(0, s), r.pick(NUMBERS), b.subarray(e))
    }
    case 9: { // splice: this one's head, the other's tail (at line starts half of the time)
      let p = pos()
      let q = r.int(other.length + 1)
      if (r.chance(0.5)) {
        const a = headerLines(b), o = headerLines(other)
        if (a.length > 0 && o.length > 0) { p = r.pick(a); q = r.pick(o) }
      }
      return cat(b.subarray(0, p), other.subarray(q))
    }
    case 10: { // a header line of the other seed
      const ls = headerLines(b), o = headerLines(other)
      if (ls.length < 1 || o.length < 2) return b
      const [s, e] = lineAt(other, o[1 + r.int(o.length - 1)])
      return insert(b, ls[Math.min(ls.length - 1, 1 + r.int(ls.length))], other.subarray(s, e))
    }
    case 11: { // line endings: all LF, one CR dropped, or a fold after a colon
      const k = r.int(3)
      if (k === 0) return B(b.toString('latin1').replace(/\r\n/g, '\n'))
      if (k === 1) { const i = b.indexOf('\r\n', pos()); return i < 0 ? b : cat(b.subarray(0, i), b.subarray(i + 1)) }
      const i = b.indexOf(': ', pos())
      return i < 0 ? b : insert(b, i + 1, r.chance(0.5) ? B('\r\n ') : B('\r\n\t\r\n '))
    }
    case 12: { // case flip over a range (methods, header names, schemes, params)
      const c = Buffer.from(b)
      const s = r.int(len + 1), n = 1 + r.int(24)
      for (let i = s; i < Math.min(len, s + n); i++) if ((c[i] | 0x20) >= 97 && (c[i] | 0x20) <= 122) c[i] ^= 0x20
      return c
    }
    case 13: { // Content-Length: off by some, huge, negative, missing value
      const m = /\r\n(Content-Length|l)[ \t]*:[ \t]*(\d*)/i.exec(b.toString('latin1'))
      if (m === null) return insert(b, Math.max(0, b.indexOf('\r\n') + 2), B(`Content-Length: ${r.int(300)}\r\n`))
      const s = m.index + m[0].length - m[2].length
      const v = r.pick(['0', '1', String(Math.max(0, Number(m[2] || 0) + r.int(7) - 3)), '-5', '99999999', '65536', '', '1 2', '0x10'])
      return cat(b.subarray(0, s), B(v), b.subarray(s + m[2].length))
    }
    case 14: { // swap two header lines (Via order, From/To)
      const ls = headerLines(b)
      if (ls.length < 3) return b
      const i = 1 + r.int(ls.length - 1), j = 1 + r.int(ls.length - 1)
      if (i === j) return b
      const [a, c] = i < j ? [i, j] : [j, i]
      const [as, ae] = lineAt(b, ls[a]), [cs, ce] = lineAt(b, ls[c])
      return cat(b.subarray(0, as), b.subarray(cs, ce), b.subarray(ae, cs), b.subarray(as, ae), b.subarray(ce))
    }
    case 15: { // repeat a slice in place
      const p = pos(), n = 1 + r.int(64)
      return insert(b, p, b.subarray(p, p + n))
    }
    default: { // a header name replaced (long <-> compact, or another header altogether)
      const ls = headerLines(b)
      if (ls.length < 2) return b
      const s = ls[1 + r.int(ls.length - 1)]
      const colon = b.indexOf(58, s)
      const eol = b.indexOf(10, s)
      if (colon < 0 || (eol >= 0 && colon > eol)) return b
      return cat(b.subarray(0, s), r.pick(NAMES), b.subarray(colon))
    }
  }
}

/** Input `index` of the run `seed`: a seed message with 1-8 stacked mutations (a few left as they are). */
export function mutant(seeds, seed, index) {
  const r = rngFor(seed, index)
  let b = r.pick(seeds).buf
  if (r.chance(0.02)) return b // the seeds themselves, now and then
  const n = 1 + (r.chance(0.5) ? 0 : r.chance(0.5) ? r.int(3) : r.int(8))
  for (let k = 0; k < n; k++) {
    b = mutateOnce(r, b, r.pick(seeds).buf)
    if (b.length > MAX_INPUT) b = b.subarray(0, MAX_INPUT)
  }
  return b
}

/** A small mutation of a given message (1-2 steps), with the PRNG given: for derived inputs (responses the harness builds). */
export function mutateLightly(r, b, seeds) {
  const n = 1 + r.int(2)
  for (let k = 0; k < n; k++) {
    b = mutateOnce(r, b, r.pick(seeds).buf)
    if (b.length > MAX_INPUT) b = b.subarray(0, MAX_INPUT)
  }
  return b
}
