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

/**
 * Patterns indexed by their first (folded) byte: one pass over the User-Agent bytes, and only the
 * few patterns that start with the byte at hand are compared there (8 patterns over a 70-byte
 * User-Agent: ~0.1 µs instead of ~0.8 µs for one search per pattern).
 */
export class PatternSet {
  readonly size: number
  private readonly byFirst: Uint8Array[][]
  /** 1 for a raw byte that (folded) starts some pattern: the common case is one typed-array read. */
  private readonly starts: Uint8Array
  constructor(list: readonly string[]) {
    const pats = compilePatterns(list)
    this.size = pats.length
    this.byFirst = []
    for (let c = 0; c < 256; c++) this.byFirst.push([])
    this.starts = new Uint8Array(256)
    for (const p of pats) this.byFirst[p[0]!]!.push(p)
    for (let c = 0; c < 256; c++) if (this.byFirst[LOWER[c]!]!.length > 0) this.starts[c] = 1
  }

  /** Whether buf[start, end) contains one of the patterns (ASCII case-insensitive). */
  matches(buf: Uint8Array, start: number, end: number): boolean {
    const starts = this.starts
    for (let i = start; i < end; i++) {
      if (starts[buf[i]!] === 0) continue
      const cand = this.byFirst[LOWER[buf[i]!]!]!
      for (let k = 0; k < cand.length; k++) {
        const p = cand[k]!
        const n = p.length
        if (i + n > end) continue
        let j = 1
        while (j < n && LOWER[buf[i + j]!] === p[j]) j++
        if (j === n) return true
      }
    }
    return false
  }
}

export class SecurityModule implements ModuleInstance {
  /** Requests dropped for a scanner User-Agent, since start. */
  scannersDropped: number
  private patterns: PatternSet

  constructor(ctx: ModuleContext) {
    this.scannersDropped = 0
    this.patterns = new PatternSet(userAgentsOf(ctx.config))
  }

  onArrival(req: SipMessage, _source: Source): typeof DROP | null {
    const pats = this.patterns
    if (pats.size === 0) return null
    const hs = req.headers
    for (let i = 0; i < hs.length; i++) {
      const f = hs[i]!
      if (f.id === H_USER_AGENT && pats.matches(req.buf, f.valueStart, f.valueEnd)) {
        this.scannersDropped++
        return DROP
      }
    }
    return null
  }

  applyConfig(config: FrozenConfig): void {
    this.patterns = new PatternSet(userAgentsOf(config))
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
