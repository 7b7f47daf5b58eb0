/**
 * Shared scanners over header values. Values are latin1-decoded strings whose folding CR/LF
 * have been replaced by SP one-for-one, so a string index is also a byte offset from the
 * value's start (the editor relies on that).
 */
import { GENVALUE, TOKEN } from './tables.js'
import { ErrorCodes, SipParseError } from './errors.js'

export function isLws(c: number): boolean {
  return c === 32 || c === 9 || c === 13 || c === 10
}

export function skipLws(s: string, i: number, n: number): number {
  while (i < n && isLws(s.charCodeAt(i))) i++
  return i
}

export function trimEnd(s: string, a: number, b: number): number {
  while (b > a && isLws(s.charCodeAt(b - 1))) b--
  return b
}

/** Index after the closing quote of the quoted-string opening at s[i] === '"', or -1. */
export function skipQuoted(s: string, i: number, n: number): number {
  i++
  while (i < n) {
    const c = s.charCodeAt(i)
    if (c === 92 /* \ */) i += 2
    else if (c === 34) return i + 1
    else i++
  }
  return -1
}

/** Content of a quoted-string s[a, b) (quotes included) with quoted-pairs resolved. */
export function unquote(s: string, a: number, b: number): string {
  let out = ''
  let from = a + 1
  for (let i = a + 1; i < b - 1; i++) {
    if (s.charCodeAt(i) === 92) {
      out += s.slice(from, i) + s[i + 1]
      i++
      from = i + 1
    }
  }
  return out + s.slice(from, b - 1)
}

/**
 * Elements one header line may list when a decoder splits it (`splitList` with `what`): far more
 * than any real Via, Route, Record-Route or Contact list (Max-Forwards caps a path at 255 hops),
 * and few enough that a hostile line of thousands of commas costs a bounded amount of work
 * before it is refused (400 Too Many <header> Values), not one parse per element.
 */
export const MAX_LIST_ELEMENTS = 256

/**
 * Split a comma-separated header value s[a, b) into element ranges (trimmed), not splitting
 * inside quoted strings or <...>. Empty elements are kept (a === b) so that strict callers can
 * reject "Via: a,,b" (RFC 4475 badinv01). Returns [s0, e0, s1, e1, ...].
 * One pass over the value: every character is looked at once (a quoted string or <...> is
 * skipped by index, an unterminated one ends the scan). With `what` (the header's name) a line
 * of more than MAX_LIST_ELEMENTS elements throws SipParseError ERR_SIP_TOO_MANY_VALUES (400
 * naming the header) as soon as the element after the last allowed one begins.
 */
export function splitList(s: string, a = 0, b = s.length, what?: string): number[] {
  const out: number[] = []
  const max = what === undefined ? Infinity : MAX_LIST_ELEMENTS * 2
  let start = a
  let i = a
  while (i < b) {
    const c = s.charCodeAt(i)
    if (c === 34) {
      const j = skipQuoted(s, i, b)
      i = j < 0 ? b : j
      continue
    }
    if (c === 60 /* < */) {
      const j = s.indexOf('>', i)
      i = j < 0 || j >= b ? b : j + 1
      continue
    }
    if (c === 44) {
      if (out.length >= max) throw tooManyValues(what!)
      const st = skipLws(s, start, i)
      out.push(st, trimEnd(s, st, i))
      start = i + 1
    }
    i++
  }
  if (out.length >= max) throw tooManyValues(what!)
  const st = skipLws(s, start, b)
  out.push(st, trimEnd(s, st, b))
  return out
}

function tooManyValues(what: string): SipParseError {
  return new SipParseError(ErrorCodes.ERR_SIP_TOO_MANY_VALUES, 'Too Many ' + what + ' Values', 400,
    `${what} header lists more than ${MAX_LIST_ELEMENTS} values on one line`)
}

// Parameter names seen on every message, interned: a fresh string per name costs an
// allocation plus hashing it again for the Map. Matching folds ASCII case (c | 0x20) on token
// characters only, which gives exactly what s.slice(a, b).toLowerCase() would.
const COMMON_PARAMS = ['branch', 'rport', 'received', 'maddr', 'ttl', 'tag', 'lr', 'transport', 'user', 'method',
  'expires', 'q', 'reg-id', '+sip.instance', 'ob', 'comp', 'sigcomp-id', 'alias', 'keep', 'epid', 'gr', 'duration',
  'reason', 'cause', 'text', 'handling', 'purpose', 'x']
const PARAMS_BY_LEN: string[][] = []
for (let l = 0; l <= 16; l++) PARAMS_BY_LEN.push([])
for (const n of COMMON_PARAMS) PARAMS_BY_LEN[n.length]!.push(n)

/** s.slice(a, b).toLowerCase() for a token s[a, b), without allocating for common names. */
export function paramName(s: string, a: number, b: number): string {
  const len = b - a
  if (len <= 16) {
    const cands = PARAMS_BY_LEN[len]!
    for (let k = 0; k < cands.length; k++) {
      const n = cands[k]!
      let j = 0
      while (j < len && (s.charCodeAt(a + j) | 0x20) === n.charCodeAt(j)) j++
      if (j === len) return n
    }
  }
  return s.slice(a, b).toLowerCase()
}

/** Span of one parameter: name (lower-case), index of its ';', index after its value. */
/**
 * The parameters (or URI headers) of every parsed value that has none: one shared Map that stays
 * empty, so a parse allocates no Map for them (a Map with its table is ~180 bytes of heap; a
 * parsed INVITE kept for its call had several). Parsed values are read-only: writing to this
 * one throws, so a caller that wants to edit parameters copies them (`new Map(x.params)`).
 */
class EmptyMap<K, V> extends Map<K, V> {
  override set(): this { throw new TypeError('the parameters of a parsed SIP value are read-only (copy them into a new Map to edit)') }
  override delete(): boolean { return false }
  override clear(): void { /* already empty */ }
}
export const EMPTY_PARAMS: Map<string, string | null> = Object.freeze(new EmptyMap<string, string | null>())
export const EMPTY_URI_HEADERS: Map<string, string> = Object.freeze(new EmptyMap<string, string>())

export interface ParamSpan { name: string; semi: number; end: number }

/**
 * *( SEMI generic-param ) with SEMI = SWS ";" SWS, EQUAL = SWS "=" SWS,
 * gen-value = token / host / quoted-string. Values are kept as written (quotes included).
 * Returns -1 on a syntax error (empty parameter, junk), otherwise the index where parsing stopped (n).
 */
export function parseParams(
  s: string, i: number, n: number, params: Map<string, string | null>, spans: ParamSpan[] | null,
): number {
  const token = TOKEN
  const genvalue = GENVALUE
  for (;;) {
    i = skipLws(s, i, n)
    if (i >= n) return n
    if (s.charCodeAt(i) !== 59) return -1
    const semi = i
    i = skipLws(s, i + 1, n)
    const ns = i
    while (i < n) {
      const c = s.charCodeAt(i)
      if (c > 255 || token[c] === 0) break
      i++
    }
    if (i === ns) return -1
    const name = paramName(s, ns, i)
    let j = skipLws(s, i, n)
    let value: string | null = null
    if (j < n && s.charCodeAt(j) === 61) {
      j = skipLws(s, j + 1, n)
      if (j < n && s.charCodeAt(j) === 34) {
        const q = skipQuoted(s, j, n)
        if (q < 0) return -1
        value = s.slice(j, q)
        i = q
      } else {
        const vs = j
        while (j < n) {
          const c = s.charCodeAt(j)
          if (c > 255 || genvalue[c] === 0) break
          j++
        }
        if (j === vs) return -1
        value = s.slice(vs, j)
        i = j
      }
    }
    if (params.size === 0 || !params.has(name)) params.set(name, value)
    if (spans !== null) spans.push({ name, semi, end: i })
  }
}
