/**
 * 256-entry byte classification tables (RFC 3261 §25.1 character classes), built once at load.
 */
export const CR = 13
export const LF = 10
export const SP = 32
export const HT = 9

/** token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~") */
export const TOKEN = new Uint8Array(256)
/** SP / HTAB */
export const WS = new Uint8Array(256)
/** SP / HTAB / CR / LF: linear white space once a value has been unfolded */
export const LWS = new Uint8Array(256)
/** hostname / IPv4 characters (plus "_" which real deployments use) */
export const HOSTCHAR = new Uint8Array(256)
/** IPv6 reference inner characters */
export const IPV6CHAR = new Uint8Array(256)
export const DIGIT = new Uint8Array(256)
/** scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) */
export const SCHEMECHAR = new Uint8Array(256)
/** Characters allowed (raw) in the user part of a SIP URI: unreserved / user-unreserved / "%" escapes. */
export const USERCHAR = new Uint8Array(256)
/** password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," ) */
export const PASSCHAR = new Uint8Array(256)
/** paramchar = param-unreserved / unreserved / escaped */
export const PARAMCHAR = new Uint8Array(256)
/** hnv-unreserved / unreserved / escaped */
export const HDRCHAR = new Uint8Array(256)
/** Characters of a generic-param value outside quotes: token / host (incl. IPv6 ref) */
export const GENVALUE = new Uint8Array(256)

function mark(t: Uint8Array, chars: string): void {
  for (let i = 0; i < chars.length; i++) t[chars.charCodeAt(i)] = 1
}
const ALNUM = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'
const MARK = "-_.!~*'()"
mark(TOKEN, ALNUM + "-.!%*_+`'~")
mark(WS, ' \t')
mark(LWS, ' \t\r\n')
mark(HOSTCHAR, ALNUM + '-._')
mark(IPV6CHAR, '0123456789abcdefABCDEF:.')
mark(DIGIT, '0123456789')
mark(SCHEMECHAR, ALNUM + '+-.')
mark(USERCHAR, ALNUM + MARK + '%&=+$,;?/')
mark(PASSCHAR, ALNUM + MARK + '%&=+$,')
mark(PARAMCHAR, ALNUM + MARK + '%[]/:&+$')
mark(HDRCHAR, ALNUM + MARK + '%[]/?:+$')
mark(GENVALUE, ALNUM + "-.!%*_+`'~:[]")

export function isToken(s: string): boolean {
  if (s.length === 0) return false
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c > 255 || TOKEN[c] === 0) return false
  }
  return true
}

/** True when every char of s is in table t (chars above 0xff never are). */
export function allIn(s: string, t: Uint8Array): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c > 255 || t[c] === 0) return false
  }
  return true
}

/** Bytes >= 0x80 present? (then a latin1-decoded string must be re-decoded as UTF-8 for display) */
export function hasHighBit(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 127) return true
  return false
}

/** A latin1 string whose chars are really UTF-8 bytes -> proper JS string. */
export function latin1ToUtf8(s: string): string {
  return hasHighBit(s) ? Buffer.from(s, 'latin1').toString('utf8') : s
}

/** Node's Buffer#latin1Slice (undocumented, stable since v0.x; no argument coercion overhead). */
interface FastSlices { latin1Slice(start: number, end: number): string; utf8Slice(start: number, end: number): string }

/** Latin1 decode of buf[s, e): one char per byte, so string indices stay byte offsets. */
export function latin1(buf: Buffer, s: number, e: number): string {
  return (buf as unknown as FastSlices).latin1Slice(s, e)
}

export function utf8(buf: Buffer, s: number, e: number): string {
  return (buf as unknown as FastSlices).utf8Slice(s, e)
}
