/**
 * Header-name table. Names are matched on bytes with ASCII case folding (c | 0x20), the
 * compact forms of RFC 3261 §7.3.3 / §20 (and later RFCs) included. Buckets are indexed by the
 * folded first byte, built once at load (the same idea as Kamailio's header-name map).
 */
export const H_OTHER = 0
export const H_VIA = 1
export const H_FROM = 2
export const H_TO = 3
export const H_CALL_ID = 4
export const H_CSEQ = 5
export const H_MAX_FORWARDS = 6
export const H_ROUTE = 7
export const H_RECORD_ROUTE = 8
export const H_CONTACT = 9
export const H_CONTENT_LENGTH = 10
export const H_CONTENT_TYPE = 11
export const H_CONTENT_ENCODING = 12
export const H_SUBJECT = 13
export const H_SUPPORTED = 14
export const H_ALLOW_EVENTS = 15
export const H_EVENT = 16
export const H_REFER_TO = 17
export const H_REFERRED_BY = 18
export const H_SESSION_EXPIRES = 19
export const H_IDENTITY = 20
export const H_ACCEPT_CONTACT = 21
export const H_REJECT_CONTACT = 22
export const H_REQUEST_DISPOSITION = 23
export const H_EXPIRES = 24
export const H_DATE = 25
export const H_REQUIRE = 26
export const H_PROXY_REQUIRE = 27
export const H_ALLOW = 28
export const H_ACCEPT = 29
export const H_PATH = 30
export const H_AUTHORIZATION = 31
export const H_PROXY_AUTHORIZATION = 32
export const H_WWW_AUTHENTICATE = 33
export const H_PROXY_AUTHENTICATE = 34
export const H_USER_AGENT = 35
export const H_SERVER = 36
export const H_UNSUPPORTED = 37
export const H_MIN_EXPIRES = 38
export const H_TIMESTAMP = 39
export const H_RETRY_AFTER = 40
export const H_CONTENT_DISPOSITION = 41
export const H_MIME_VERSION = 42
export const H_ORGANIZATION = 43
export const H_PRIORITY = 44
export const H_REPLY_TO = 45
export const H_WARNING = 46
export const H_ALERT_INFO = 47
export const H_CALL_INFO = 48
export const H_ERROR_INFO = 49
export const H_IN_REPLY_TO = 50
export const H_ACCEPT_ENCODING = 51
export const H_ACCEPT_LANGUAGE = 52
export const H_CONTENT_LANGUAGE = 53
export const H_AUTHENTICATION_INFO = 54
export const H_SERVICE_ROUTE = 55
export const H_P_ASSERTED_IDENTITY = 56
export const H_P_PREFERRED_IDENTITY = 57
export const H_RSEQ = 58
export const H_RACK = 59
export const H_REASON = 60
export const H_MIN_SE = 61
export const H_SUBSCRIPTION_STATE = 62
export const H_PRIVACY = 63

/** [canonical lower-case name, wire name, compact letter or '', comma-separated list?] */
const DEFS: ReadonlyArray<readonly [number, string, string, string, boolean]> = [
  [H_VIA, 'via', 'Via', 'v', true],
  [H_FROM, 'from', 'From', 'f', false],
  [H_TO, 'to', 'To', 't', false],
  [H_CALL_ID, 'call-id', 'Call-ID', 'i', false],
  [H_CSEQ, 'cseq', 'CSeq', '', false],
  [H_MAX_FORWARDS, 'max-forwards', 'Max-Forwards', '', false],
  [H_ROUTE, 'route', 'Route', '', true],
  [H_RECORD_ROUTE, 'record-route', 'Record-Route', '', true],
  [H_CONTACT, 'contact', 'Contact', 'm', true],
  [H_CONTENT_LENGTH, 'content-length', 'Content-Length', 'l', false],
  [H_CONTENT_TYPE, 'content-type', 'Content-Type', 'c', false],
  [H_CONTENT_ENCODING, 'content-encoding', 'Content-Encoding', 'e', true],
  [H_SUBJECT, 'subject', 'Subject', 's', false],
  [H_SUPPORTED, 'supported', 'Supported', 'k', true],
  [H_ALLOW_EVENTS, 'allow-events', 'Allow-Events', 'u', true],
  [H_EVENT, 'event', 'Event', 'o', false],
  [H_REFER_TO, 'refer-to', 'Refer-To', 'r', false],
  [H_REFERRED_BY, 'referred-by', 'Referred-By', 'b', false],
  [H_SESSION_EXPIRES, 'session-expires', 'Session-Expires', 'x', false],
  [H_IDENTITY, 'identity', 'Identity', 'y', false],
  [H_ACCEPT_CONTACT, 'accept-contact', 'Accept-Contact', 'a', true],
  [H_REJECT_CONTACT, 'reject-contact', 'Reject-Contact', 'j', true],
  [H_REQUEST_DISPOSITION, 'request-disposition', 'Request-Disposition', 'd', true],
  [H_EXPIRES, 'expires', 'Expires', '', false],
  [H_DATE, 'date', 'Date', '', false],
  [H_REQUIRE, 'require', 'Require', '', true],
  [H_PROXY_REQUIRE, 'proxy-require', 'Proxy-Require', '', true],
  [H_ALLOW, 'allow', 'Allow', '', true],
  [H_ACCEPT, 'accept', 'Accept', '', true],
  [H_PATH, 'path', 'Path', '', true],
  [H_AUTHORIZATION, 'authorization', 'Authorization', '', false],
  [H_PROXY_AUTHORIZATION, 'proxy-authorization', 'Proxy-Authorization', '', false],
  [H_WWW_AUTHENTICATE, 'www-authenticate', 'WWW-Authenticate', '', false],
  [H_PROXY_AUTHENTICATE, 'proxy-authenticate', 'Proxy-Authenticate', '', false],
  [H_USER_AGENT, 'user-agent', 'User-Agent', '', false],
  [H_SERVER, 'server', 'Server', '', false],
  [H_UNSUPPORTED, 'unsupported', 'Unsupported', '', true],
  [H_MIN_EXPIRES, 'min-expires', 'Min-Expires', '', false],
  [H_TIMESTAMP, 'timestamp', 'Timestamp', '', false],
  [H_RETRY_AFTER, 'retry-after', 'Retry-After', '', false],
  [H_CONTENT_DISPOSITION, 'content-disposition', 'Content-Disposition', '', false],
  [H_MIME_VERSION, 'mime-version', 'MIME-Version', '', false],
  [H_ORGANIZATION, 'organization', 'Organization', '', false],
  [H_PRIORITY, 'priority', 'Priority', '', false],
  [H_REPLY_TO, 'reply-to', 'Reply-To', '', false],
  [H_WARNING, 'warning', 'Warning', '', true],
  [H_ALERT_INFO, 'alert-info', 'Alert-Info', '', true],
  [H_CALL_INFO, 'call-info', 'Call-Info', '', true],
  [H_ERROR_INFO, 'error-info', 'Error-Info', '', true],
  [H_IN_REPLY_TO, 'in-reply-to', 'In-Reply-To', '', true],
  [H_ACCEPT_ENCODING, 'accept-encoding', 'Accept-Encoding', '', true],
  [H_ACCEPT_LANGUAGE, 'accept-language', 'Accept-Language', '', true],
  [H_CONTENT_LANGUAGE, 'content-language', 'Content-Language', '', true],
  [H_AUTHENTICATION_INFO, 'authentication-info', 'Authentication-Info', '', false],
  [H_SERVICE_ROUTE, 'service-route', 'Service-Route', '', true],
  [H_P_ASSERTED_IDENTITY, 'p-asserted-identity', 'P-Asserted-Identity', '', true],
  [H_P_PREFERRED_IDENTITY, 'p-preferred-identity', 'P-Preferred-Identity', '', true],
  [H_RSEQ, 'rseq', 'RSeq', '', false],
  [H_RACK, 'rack', 'RAck', '', false],
  [H_REASON, 'reason', 'Reason', '', true],
  [H_MIN_SE, 'min-se', 'Min-SE', '', false],
  [H_SUBSCRIPTION_STATE, 'subscription-state', 'Subscription-State', '', false],
  [H_PRIVACY, 'privacy', 'Privacy', '', false],
]

export const HEADER_COUNT = 64
/** id -> canonical lower-case long name */
export const CANONICAL: string[] = new Array<string>(HEADER_COUNT).fill('')
/** id -> conventional wire spelling */
export const WIRE: string[] = new Array<string>(HEADER_COUNT).fill('')
/** id -> values are a comma-separated list (RFC 3261 §7.3.1) */
export const IS_LIST = new Uint8Array(HEADER_COUNT)

/** any-case name string (long or compact) -> id */
const BY_NAME = new Map<string, number>()

interface Entry { bytes: Uint8Array; id: number }
/** folded first byte -> candidates */
const BUCKETS: Entry[][] = []
for (let i = 0; i < 256; i++) BUCKETS.push([])

function addName(name: string, id: number): void {
  BY_NAME.set(name, id)
  const bytes = new Uint8Array(name.length)
  for (let i = 0; i < name.length; i++) bytes[i] = name.charCodeAt(i)
  BUCKETS[bytes[0]!]!.push({ bytes, id })
}
for (const [id, canon, wire, compact, list] of DEFS) {
  CANONICAL[id] = canon
  WIRE[id] = wire
  IS_LIST[id] = list ? 1 : 0
  addName(canon, id)
  if (compact !== '') addName(compact, id)
}
// longest first so that no prefix confusion can arise (lengths are compared anyway)
for (const b of BUCKETS) b.sort((x, y) => y.bytes.length - x.bytes.length)

// Dispatch on (folded first byte, length): almost every slot holds at most one name, so a
// lookup is one table read plus one byte comparison loop. SLOT[(c << 5) | len] is the index of
// the first candidate in SLOT_IDS / SLOT_NAMES (runs end where the next slot's begin), -1 empty.
const MAX_NAME = 31
const SLOT_FIRST = new Int16Array(256 * 32).fill(-1)
const SLOT_COUNT = new Uint8Array(256 * 32)
const SLOT_IDS: number[] = []
const SLOT_NAMES: Uint8Array[] = []
for (let c = 0; c < 256; c++) {
  for (let l = 1; l <= MAX_NAME; l++) {
    const cands = BUCKETS[c]!.filter(x => x.bytes.length === l)
    if (cands.length === 0) continue
    SLOT_FIRST[(c << 5) | l] = SLOT_IDS.length
    SLOT_COUNT[(c << 5) | l] = cands.length
    for (const x of cands) { SLOT_IDS.push(x.id); SLOT_NAMES.push(x.bytes) }
  }
}

/** Look up the header name in buf[s, e) (already trimmed). Returns H_OTHER when unknown. */
export function lookupHeaderBytes(buf: Uint8Array, s: number, e: number): number {
  const len = e - s
  if (len > MAX_NAME || len <= 0) return H_OTHER
  const slot = ((buf[s]! | 0x20) << 5) | len
  const first = SLOT_FIRST[slot]!
  if (first < 0) return H_OTHER
  const last = first + SLOT_COUNT[slot]!
  for (let k = first; k < last; k++) {
    const nb = SLOT_NAMES[k]!
    let j = 1
    // '-' | 0x20 === '-' so folding is harmless for the punctuation found in header names
    while (j < len && (buf[s + j]! | 0x20) === nb[j]) j++
    if (j === len) return SLOT_IDS[k]!
  }
  return H_OTHER
}

/** Look up a header name given as a string in any case, long or compact. */
export function lookupHeaderName(name: string): number {
  const id = BY_NAME.get(name)
  if (id !== undefined) return id
  return BY_NAME.get(name.toLowerCase()) ?? H_OTHER
}

/** Canonical lower-case long form of a name string (unknown names are just lower-cased). */
export function canonicalName(name: string): string {
  const id = lookupHeaderName(name)
  return id === H_OTHER ? name.toLowerCase() : CANONICAL[id]!
}

/** Conventional wire spelling for a name (unknown names are returned as given). */
export function wireName(name: string): string {
  const id = lookupHeaderName(name)
  return id === H_OTHER ? name : WIRE[id]!
}
