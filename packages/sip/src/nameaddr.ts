/**
 * name-addr / addr-spec with header parameters (RFC 3261 §20.10, §20.20, §20.39, §25.1):
 * From, To, Contact, Route, Record-Route, Reply-To, Path ...
 */
import { SipParseError, ErrorCodes } from './errors.js'
import { SCHEMECHAR, TOKEN, latin1ToUtf8 } from './tables.js'
import { EMPTY_PARAMS, isLws, parseParams, skipLws, skipQuoted, trimEnd, unquote } from './params.js'

export interface NameAddr {
  displayName: string | undefined   // unquoted, quoted-pairs resolved, UTF-8 decoded
  uri: string                       // the URI text (not parsed; see parseUri)
  params: Map<string, string | null>
  tag: string | undefined
  star?: boolean                    // Contact: *
  raw: string
}

/** display-name characters outside quotes: token, LWS, and bytes >= 0x80 (unquoted UTF-8) */
const DISPCHAR = new Uint8Array(256)
for (let c = 0; c < 256; c++) DISPCHAR[c] = TOKEN[c] === 1 || isLws(c) || c >= 128 ? 1 : 0
/** characters not allowed raw inside <...>: controls, SP, '<', '"', DEL and above */
const URIBAD = new Uint8Array(256)
for (let c = 0; c < 256; c++) URIBAD[c] = c <= 32 || c === 60 || c === 34 || c >= 127 ? 1 : 0

function bad(what: string, s: string, why: string): SipParseError {
  return new SipParseError(ErrorCodes.ERR_SIP_BAD_NAME_ADDR, 'Bad ' + what + ' header', 400,
    'Bad ' + what + ' header (' + why + '): ' + s.slice(0, 200))
}

function hasScheme(s: string, a: number, b: number): boolean {
  let i = a
  while (i < b) {
    const c = s.charCodeAt(i)
    if (c === 58) return i > a
    if (c > 255 || SCHEMECHAR[c] === 0) return false
    i++
  }
  return false
}

/**
 * Parse one element s[a, b) (latin1 string as produced by the message getters). `what` names
 * the header in error reasons. allowStar: Contact's "*" form.
 */
export function parseNameAddr(s: string, what = 'name-addr', a = 0, b = s.length, allowStar = false): NameAddr {
  let i = skipLws(s, a, b)
  b = trimEnd(s, i, b)
  if (i >= b) throw bad(what, s, 'empty value')
  const raw = latin1ToUtf8(s.slice(i, b))
  if (allowStar && s.charCodeAt(i) === 42 && skipLws(s, i + 1, b) === b) {
    return { displayName: undefined, uri: '*', params: EMPTY_PARAMS, tag: undefined, star: true, raw }
  }
  let displayName: string | undefined
  let uri: string
  let c = s.charCodeAt(i)
  let angle = false
  if (c === 34) {
    const q = skipQuoted(s, i, b)
    if (q < 0) throw bad(what, s, 'unterminated quoted string')
    displayName = latin1ToUtf8(unquote(s, i, q))
    i = skipLws(s, q, b)
    if (i >= b || s.charCodeAt(i) !== 60) throw bad(what, s, 'expected <')
    angle = true
  } else if (c !== 60) {
    // either display-name tokens followed by '<', or an addr-spec
    let j = i
    const disp = DISPCHAR
    while (j < b) {
      c = s.charCodeAt(j)
      if (c === 60) break
      // tokens and LWS; bytes >= 0x80 tolerated (unquoted UTF-8 display names exist in the wild)
      if (c > 255 || disp[c] === 0) break
      j++
    }
    if (j < b && s.charCodeAt(j) === 60) {
      const de = trimEnd(s, i, j)
      displayName = de > i ? latin1ToUtf8(s.slice(i, de)) : undefined
      i = j
      angle = true
    }
  } else {
    angle = true
  }
  let after: number
  if (angle) {
    // LAQUOT = SWS "<", RAQUOT = ">" SWS: no white space inside the brackets (RFC 4475 badaspec)
    const us = i + 1
    const close = s.indexOf('>', us)
    if (close < 0 || close >= b) throw bad(what, s, 'unterminated <')
    if (close === us) throw bad(what, s, 'empty URI')
    if (isLws(s.charCodeAt(us)) || isLws(s.charCodeAt(close - 1))) throw bad(what, s, 'white space inside <>')
    const ub = URIBAD
    for (let k = us; k < close; k++) {
      const ch = s.charCodeAt(k)
      if (ch > 255 || ub[ch] === 1) throw bad(what, s, 'invalid character in URI')
    }
    if (!hasScheme(s, us, close)) throw bad(what, s, 'URI without scheme')
    uri = s.slice(us, close)
    after = close + 1
  } else {
    // addr-spec: "If the URI contains a comma, question mark or semicolon, the URI MUST be
    // enclosed in angle brackets" (§20) - so here it ends at ';' or LWS, and '?' or ',' is an
    // error (RFC 4475 regbadct).
    let j = i
    while (j < b) {
      const ch = s.charCodeAt(j)
      if (ch === 59 || isLws(ch)) break
      if (ch === 63 || ch === 44 || ch === 60 || ch === 62 || ch === 34 || ch < 32 || ch >= 127) {
        throw bad(what, s, 'URI needs <> or has invalid characters')
      }
      j++
    }
    if (!hasScheme(s, i, j)) throw bad(what, s, 'URI without scheme')
    uri = s.slice(i, j)
    after = j
  }
  // nothing after the address: the shared empty Map (parseParams then sets nothing)
  const params = skipLws(s, after, b) >= b ? EMPTY_PARAMS : new Map<string, string | null>()
  if (parseParams(s, after, b, params, null) < 0) throw bad(what, s, 'bad parameters')
  const tag = params.get('tag')
  return { displayName, uri, params, tag: tag === null || tag === undefined ? undefined : tag, raw }
}
