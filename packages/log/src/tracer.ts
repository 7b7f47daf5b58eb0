// SIP message tracing, switched on at run time for given Call-IDs and/or source addresses.
// The hot path pays one property read while no filter is set:
//   if (tracer.active && tracer.matches(callId, address, port)) tracer.trace('in', ...)
import type { Logger } from 'pino'

export interface TraceFilters { callIds: string[]; sources: string[] }
export interface TraceMeta { callId: string; address: string; port: number; transport: string }

/** Largest message text put in one trace line. */
const MAX_TRACE_BYTES = 65_535

export class Tracer {
  /** True while at least one filter is set; check it before anything else. */
  active = false
  private readonly callIds = new Set<string>()
  /** "1.2.3.4" (any port) or "1.2.3.4:5060" / "[::1]:5060". */
  private readonly sources = new Set<string>()

  private readonly log: Logger
  /** `log`: e.g. logging.logger('trace'); tracing writes regardless of that module's level (it was asked for). */
  constructor(log: Logger) {
    this.log = log.child({}, { level: 'trace' })
  }

  setFilters(f: TraceFilters): TraceFilters {
    this.callIds.clear()
    this.sources.clear()
    for (const c of f.callIds) if (c !== '') this.callIds.add(c)
    for (const s of f.sources) if (s !== '') this.sources.add(s)
    this.active = this.callIds.size > 0 || this.sources.size > 0
    return this.filters()
  }

  filters(): TraceFilters { return { callIds: [...this.callIds], sources: [...this.sources] } }

  clear(): void { this.setFilters({ callIds: [], sources: [] }) }

  /** Only meaningful when `active`; a Set lookup or two. */
  matches(callId: string, address: string, port: number): boolean {
    if (this.callIds.size > 0 && this.callIds.has(callId)) return true
    if (this.sources.size === 0) return false
    if (this.sources.has(address)) return true
    return this.sources.has(address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`)
  }

  /**
   * Logs the whole message at info level under module "trace" (bypasses the module's level: asked
   * for explicitly), with the credentials of Authorization / Proxy-Authorization redacted.
   */
  trace(direction: 'in' | 'out', meta: TraceMeta, message: Uint8Array | string): void {
    const text = typeof message === 'string'
      ? message.slice(0, MAX_TRACE_BYTES)
      : Buffer.from(message.buffer, message.byteOffset, Math.min(message.byteLength, MAX_TRACE_BYTES)).toString('utf8')
    this.log.info({ trace: direction, callId: meta.callId, peer: `${meta.address}:${meta.port}`, transport: meta.transport, sip: redactCredentials(text) }, 'sip trace')
  }
}

/**
 * An Authorization / Proxy-Authorization header: the name (any case, optional space before the
 * colon, RFC 3261 §7.3.1) and the whole value, folded continuation lines included (a line that
 * starts with SP or HT continues the header). WWW-Authenticate / Proxy-Authenticate are
 * challenges (realm, nonce): no secret, kept.
 */
const CREDENTIALS_RE = /^((?:Proxy-)?Authorization[ \t]*:)([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)/gim
/** Leading LWS and the auth scheme (a token, RFC 3261 §25.1), when something follows it. */
const SCHEME_RE = /^(\s*[A-Za-z0-9!#$%&'*+.^_`|~-]+)(?=[ \t\r\n])/

/**
 * The trace text with the credentials after the scheme replaced by `<redacted>`
 * ("Authorization: Digest <redacted>"; a value without a scheme is redacted whole). A digest
 * response with its nonce, realm and username is enough for an offline dictionary attack on the
 * password (RFC 3261 §26.3.2.1, RFC 7616 §5.12), and a Basic or Bearer credential is the secret
 * itself: a trace file must hold neither.
 */
export function redactCredentials(text: string): string {
  // cheap pre-check: most traced messages carry no credentials
  if (!/authorization/i.test(text)) return text
  return text.replace(CREDENTIALS_RE, (_all, name: string, value: string) => {
    const m = SCHEME_RE.exec(value)
    return m !== null ? `${name}${m[1]} <redacted>` : `${name} <redacted>`
  })
}
