// Loop detection (RFC 3261 §16.3 step 4, §16.6 step 8; RFC 5393 §4.2 style).
//
// Our Via branch is  z9hG4bK + "sE" + H + "." + unique  where H (8 hex digits) is a hash of the
// request fields that decide where it goes: Request-URI, From tag, To tag, Call-ID, CSeq number,
// Proxy-Require and the Route set left after our own entries are removed. When a request comes in
// carrying a Via of ours (sent-by = one of our listeners) whose H equals the H of the request as
// it is now, nothing that matters for routing changed since we forwarded it: a loop (482). A
// different H means it came back with e.g. a new Request-URI: a spiral, which is forwarded.
// The top Via is deliberately not hashed (it differs on every hop, which would hide every loop).
import { H_VIA_ID } from './header-ids.js'
import type { SipMessage } from '@sipedge/sip'
import type { LocalIdentity } from './identity.js'

export const BRANCH_MARK = 'z9hG4bKsE'
const MARK_BYTES = Buffer.from(BRANCH_MARK, 'latin1')
const FNV_OFFSET = 0x811c9dc5
const FNV_PRIME = 0x01000193

function mix(h: number, s: string): number {
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i) & 0xff
    h = Math.imul(h, FNV_PRIME)
  }
  // field separator, so ("ab","c") and ("a","bc") differ
  h ^= 0x1f
  return Math.imul(h, FNV_PRIME)
}

const HEX = '0123456789abcdef'

function hex8(h: number): string {
  let s = ''
  for (let i = 28; i >= 0; i -= 4) s += HEX[(h >>> i) & 15]
  return s
}

/**
 * H for `req` as it is when we forward it: `requestUri` is the Request-URI after strict-router
 * repair (§16.4), `routesSkipped` the number of our own Route values removed from the top.
 */
export function loopHash(req: SipMessage, requestUri: string, routesSkipped: number): string {
  let h = FNV_OFFSET
  h = mix(h, requestUri)
  h = mix(h, req.from.tag ?? '')
  h = mix(h, req.to.tag ?? '')
  h = mix(h, req.callId)
  h = mix(h, String(req.cseq.seq))
  const pr = req.header('proxy-require')
  if (pr !== undefined) h = mix(h, pr)
  if (req.has('route')) {
    const routes = req.routes
    for (let i = routesSkipped; i < routes.length; i++) h = mix(h, routes[i]!.uri)
  }
  return hex8(h >>> 0)
}

/** Is there one of our branches in any Via? A byte search, so the common case parses nothing. */
export function hasOurBranch(req: SipMessage): boolean {
  const hs = req.headers
  const buf = req.buf
  for (let i = 0; i < hs.length; i++) {
    const f = hs[i]!
    if (f.id !== H_VIA_ID) continue
    const at = buf.indexOf(MARK_BYTES, f.valueStart)
    if (at >= 0 && at < f.valueEnd) return true
  }
  return false
}

/**
 * §16.3 step 4: the request carries a Via of ours with the same hash: a loop. Only sent-by values
 * naming our listeners count (another sipedge node uses the same branch shape).
 */
export function isLoop(req: SipMessage, hash: string, local: LocalIdentity): boolean {
  if (!hasOurBranch(req)) return false
  const vias = req.vias
  for (let i = 0; i < vias.length; i++) {
    const v = vias[i]!
    const b = v.branch
    if (b === undefined || !b.startsWith(BRANCH_MARK)) continue
    if (!local.isLocalHostPort(v.host, v.port, v.transport.toLowerCase())) continue
    if (b.startsWith(hash, BRANCH_MARK.length)) return true
  }
  return false
}

/** Per-process unique suffix source: a random prefix per worker start plus a counter. */
export class BranchFactory {
  private readonly prefix: string
  private n: number
  constructor(workerIndex: number) {
    this.prefix = workerIndex.toString(36) + Math.floor(Math.random() * 0x7fffffff).toString(36) + 'x'
    this.n = 0
  }

  /** z9hG4bKsE<hash>.<unique>, unique per client transaction (§16.6 step 8). */
  next(hash: string): string {
    return BRANCH_MARK + hash + '.' + this.prefix + (++this.n).toString(36)
  }

  /**
   * z9hG4bKsE<hash>.<unique>.<mac>: a forwarded request's branch, signed for the address a
   * response to it is relayed to (stateless.ts forwardStray checks it).
   */
  signed(hash: string, signer: { sign(id: string, address: string, port: number): string }, address: string, port: number): string {
    const id = hash + '.' + this.prefix + (++this.n).toString(36)
    return BRANCH_MARK + id + '.' + signer.sign(id, address, port)
  }

  /** The branch of a statelessly forwarded request (ACK for 2xx): no transaction, still unique. */
  stateless(hash: string): string {
    return BRANCH_MARK + hash + '.s' + this.prefix + (++this.n).toString(36)
  }
}
