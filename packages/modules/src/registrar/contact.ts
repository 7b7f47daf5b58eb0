// Contact / AOR helpers of the registrar (RFC 3261 §10.3, RFC 5626 §6, RFC 3327).
import { formatUri, parseUri, type NameAddr, type SipUri } from '@sipedge/sip'

/** Canonical address of record: `sip:user@host` (scheme sips folded to sip, host lower-cased). */
export function aorOf(u: SipUri): string | null {
  if ((u.scheme !== 'sip' && u.scheme !== 'sips') || u.user === undefined || u.user === '') return null
  return 'sip:' + u.user + '@' + u.host.toLowerCase()
}

/**
 * The form a Contact URI is stored and compared in: scheme and host lower-cased, parameters and
 * headers as written (the store compares strings; RFC 3261 §10.3 step 7 compares URIs).
 */
export function normalizeContact(uri: string): string {
  const u = parseUri(uri)
  u.host = u.host.toLowerCase()
  return formatUri(u)
}

/** delta-seconds (RFC 3261 §25.1), or NaN when malformed. Large values saturate (2^32-1). */
export function parseDeltaSeconds(s: string): number {
  const t = s.trim()
  if (!/^\d{1,20}$/.test(t)) return NaN
  const n = Number(t)
  return n > 4294967295 ? 4294967295 : n
}

/** q-value 0..1 with at most 3 decimals (RFC 3261 §20.10), or NaN. */
export function parseQ(s: string): number {
  const t = s.trim()
  if (!/^(0(\.\d{0,3})?|1(\.0{0,3})?)$/.test(t)) return NaN
  return Number(t)
}

/** `+sip.instance` value without its quotes: `<urn:uuid:...>`. */
export function instanceOf(c: NameAddr): string | undefined {
  const v = c.params.get('+sip.instance')
  if (v === undefined || v === null) return undefined
  const t = v.trim()
  return t.length >= 2 && t.startsWith('"') && t.endsWith('"') ? t.slice(1, -1) : t
}

/** reg-id (RFC 5626 §4.2.1: 1..2^31-1), or undefined when absent or malformed. */
export function regIdOf(c: NameAddr): number | undefined {
  const v = c.params.get('reg-id')
  if (v === undefined || v === null || !/^\d{1,10}$/.test(v.trim())) return undefined
  const n = Number(v.trim())
  return n >= 1 && n <= 2147483647 ? n : undefined
}

/** The URI inside a Path / Route value `<sip:...;lr>` (first element only). */
export function uriOfRouteValue(v: string): string {
  const a = v.indexOf('<')
  if (a < 0) {
    const semi = v.indexOf(';')
    return (semi < 0 ? v : v.slice(0, semi)).trim()
  }
  const b = v.indexOf('>', a)
  return v.slice(a + 1, b < 0 ? v.length : b).trim()
}

/** `Contact: <uri>;expires=N[;q=..][;+sip.instance=".."][;reg-id=N]` value of the 200 (§10.3 step 8). */
export function contactValue(contact: string, expiresS: number, q: number, instance: string | undefined, regId: number | undefined): string {
  let s = '<' + contact + '>;expires=' + expiresS
  if (q !== 1) s += ';q=' + formatQ(q)
  if (instance !== undefined) s += ';+sip.instance="' + instance + '"'
  if (regId !== undefined && instance !== undefined) s += ';reg-id=' + regId
  return s
}

export function formatQ(q: number): string {
  return q === 0 ? '0' : q === 1 ? '1' : String(Math.round(q * 1000) / 1000)
}
