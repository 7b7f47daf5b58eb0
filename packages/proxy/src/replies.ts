// Responses the proxy generates itself: through the server transaction (and then the request is
// settled) or, without a transaction, once (bad requests, draining).
import { buildResponse, type SipMessage } from '@sipedge/sip'
import { responseDestination } from '@sipedge/transaction'
import type { RequestContext } from './context.js'
import type { CoreState } from './internals.js'
import type { Destination, Source } from './types.js'

/** The request has its final answer: modules hear of it once, the in-flight count drops. */
export function settle(core: CoreState, ctx: RequestContext, status: number): void {
  if (ctx.done) return
  ctx.done = true
  core.inflight--
  const hs = core.hooks.onFinished
  for (let i = 0; i < hs.length; i++) hs[i]!.onFinished!(ctx, status)
}

/** A local response through the server transaction; a final one settles the request. */
export function reply(core: CoreState, ctx: RequestContext, status: number, reason?: string, headers?: ReadonlyArray<readonly [string, string]>): void {
  core.counters.localReplies++
  if (core.metrics !== undefined) core.metrics.serverResponse(ctx.req.method, ctx.source.recvTime, ctx.server.lastStatus, status, false)
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
