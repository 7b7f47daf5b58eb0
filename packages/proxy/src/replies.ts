// Responses the proxy generates itself: through the server transaction (and then the request is
// settled) or, without a transaction, once (bad requests, draining).
import { buildResponse, type SipMessage } from '@sipedge/sip'
import { responseDestination } from '@sipedge/transaction'
import type { RequestContext } from './context.js'
import type { CoreState } from './internals.js'
import type { Destination, Source } from './types.js'

/**
 * The request has its final answer: modules hear of it once, the in-flight count drops.
 *
 * A non-INVITE request's transactions then let go of the context: the server transaction stays
 * in Completed for Timer J (64*T1, 32 s over UDP) and the client transaction for Timer K, but
 * neither calls back any more (§17.2.2 and §17.1.2.2: request and response retransmissions are
 * absorbed there), and the context holds the parsed request, its headers and the attempts. Kept,
 * they were most of what a burst promoted into the old generation (issue 17: ~2.5 KB per
 * proxied request for 32 s, ~40,000 live at S=10, all marked by every major GC). An INVITE keeps
 * its context: a CANCEL, 2xx retransmissions (RFC 6026 Accepted) and the ACK still need it; its
 * request lets go of its parsed header values (SipMessage.releaseParsed).
 */
export function settle(core: CoreState, ctx: RequestContext, status: number): void {
  if (ctx.done) return
  ctx.done = true
  core.inflight--
  const hs = core.hooks.onFinished
  for (let i = 0; i < hs.length; i++) hs[i]!.onFinished!(ctx, status)
  if (ctx.server.kind === 'nist') {
    ctx.server.context = undefined
    const c = ctx.current
    if (c !== null && !c.awaitingFinal) c.context = undefined
  } else {
    // The INVITE stays for RFC 6026's Accepted state (32 s) but its routing is decided: its
    // parsed header values go (up to ~1.9 KB a call), a late reader parses them again from the bytes.
    ctx.req.releaseParsed()
  }
}

/**
 * What a locally answered request may cost in response bytes over UDP, as a multiple of what it
 * brought in (request and retransmissions), unless a module vouches for its source (`trusts`).
 * Issue "Safe on a public address" 6: an INVITE answered 403 No Route was retransmitted by Timer G
 * (RFC 3261 §17.2.1) until Timer H: 12.4x its bytes towards a spoofed source. The first final is
 * always sent; the transaction withholds retransmissions beyond this (ServerBase.limitResponses
 * quotes §17.2.1 on why a real client still gets the response).
 */
export const LOCAL_REPLY_RATIO = 3

/** Whether a module vouches for the request's source (a configured peer, valid credentials). */
function trusted(core: CoreState, ctx: RequestContext): boolean {
  const hs = core.hooks.trusts
  for (let i = 0; i < hs.length; i++) if (hs[i]!.trusts!(ctx.req, ctx.source)) return true
  return false
}

/** A local response through the server transaction; a final one settles the request. */
export function reply(core: CoreState, ctx: RequestContext, status: number, reason?: string, headers?: ReadonlyArray<readonly [string, string]>): void {
  core.counters.localReplies++
  if (core.metrics !== undefined) core.metrics.serverResponse(ctx.req.method, ctx.source.recvTime, ctx.server.lastStatus, status, false)
  if (status >= 200 && !ctx.server.reliable && !trusted(core, ctx)) ctx.server.limitResponses(LOCAL_REPLY_RATIO)
  const h = headers ?? core.localHeaders
  ctx.server.respond(status, reason, h.length > 0 ? { headers: h as Array<[string, string]> } : undefined)
  if (status >= 200) settle(core, ctx, status)
}

/** A reply with the module's headers and ours (Server). */
export function replyWith(core: CoreState, ctx: RequestContext, status: number, reason: string, headers: ReadonlyArray<readonly [string, string]>): void {
  reply(core, ctx, status, reason, headers.length === 0 ? core.localHeaders : [...headers, ...core.localHeaders])
}

/** No transaction (bad request, draining): build and send once. */
export function statelessReply(core: CoreState, msg: SipMessage, source: Source, status: number, reason: string, extra?: Array<[string, string]>): void {
  let bytes: Buffer
  let dest: Destination
  try {
    bytes = buildResponse(msg, status, reason, { headers: extra !== undefined ? [...extra, ...core.localHeaders] : core.localHeaders, source })
    dest = responseDestination(msg, source, core.layer.isReliable(source.transport), core.layer.forceRport)
  } catch {
    return
  }
  core.counters.localReplies++
  core.sendFn(dest, bytes)
}
