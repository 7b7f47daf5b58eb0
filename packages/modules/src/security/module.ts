// The `security` module: cheap on-arrival protections for a node on a public address
// (docs/security.md). Today: `security.drop_user_agents`, requests from known SIP scanners
// dropped without any answer (issue "Safe on a public address" 8: `friendly-scanner` was
// answered like any client, which tells the scanner that something listens here and hands it
// responses to reflect).
import { lookupHeaderName, type SipMessage } from '@sipedge/sip'
import { DROP, type ModuleContext, type ModuleDeclaration, type ModuleInstance, type Source } from '@sipedge/proxy'
import type { FrozenConfig } from '@sipedge/config'

const H_USER_AGENT = lookupHeaderName('user-agent')

/** ASCII lower case of a byte (other bytes unchanged): the table makes the test one lookup. */
const LOWER = new Uint8Array(256)
for (let c = 0; c < 256; c++) LOWER[c] = c >= 0x41 && c <= 0x5a ? c | 0x20 : c

function userAgentsOf(config: FrozenConfig): readonly string[] {
  return (config as unknown as { security?: { drop_user_agents?: readonly string[] } }).security?.drop_user_agents ?? []
}

/** The patterns as lower-cased UTF-8 bytes, built once per configuration. */
export function compilePatterns(list: readonly string[]): Uint8Array[] {
  const out: Uint8Array[] = []
  for (const p of list) {
    const b = Buffer.from(p, 'utf8')
    if (b.length === 0) continue
    const l = new Uint8Array(b.length)
    for (let i = 0; i < b.length; i++) l[i] = LOWER[b[i]!]!
    out.push(l)
  }
  return out
}

/**
 * Whether buf[start, end) contains `pat` (lower case), ASCII case-insensitively. On the bytes of
 * the message: no string is made per request.
 */
export function containsFolded(buf: Uint8Array, start: number, end: number, pat: Uint8Array): boolean {
  const n = pat.length
  const first = pat[0]!
  const last = end - n
  for (let i = start; i <= last; i++) {
    if (LOWER[buf[i]!] !== first) continue
    let k = 1
    while (k < n && LOWER[buf[i + k]!] === pat[k]) k++
    if (k === n) return true
  }
  return false
}

export class SecurityModule implements ModuleInstance {
  /** Requests dropped for a scanner User-Agent, since start. */
  scannersDropped: number
  private patterns: Uint8Array[]

  constructor(ctx: ModuleContext) {
    this.scannersDropped = 0
    this.patterns = compilePatterns(userAgentsOf(ctx.config))
  }

  onArrival(req: SipMessage, _source: Source): typeof DROP | null {
    const pats = this.patterns
    if (pats.length === 0) return null
    const hs = req.headers
    const buf = req.buf
    for (let i = 0; i < hs.length; i++) {
      const f = hs[i]!
      if (f.id !== H_USER_AGENT) continue
      for (let k = 0; k < pats.length; k++) {
        if (containsFolded(buf, f.valueStart, f.valueEnd, pats[k]!)) {
          this.scannersDropped++
          return DROP
        }
      }
    }
    return null
  }

  applyConfig(config: FrozenConfig): void {
    this.patterns = compilePatterns(userAgentsOf(config))
  }

  stats(): Record<string, unknown> {
    return { security: { scannersDropped: this.scannersDropped } }
  }
}

export const securityModule: ModuleDeclaration<SecurityModule> = {
  name: 'security',
  configSection: 'security',
  requires: [],
  uses: [],
  actions: [],
  metrics: ['sipedge_messages_dropped_total'],
  // Loaded while the list is not empty (a reload that empties it leaves the instance with no patterns).
  enabled: config => userAgentsOf(config).length > 0,
  create: ctx => new SecurityModule(ctx),
}
