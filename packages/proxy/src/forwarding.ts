// Stateful forwarding (RFC 3261 §16.6) and the response side of it (§16.7, §16.8): one client
// transaction per attempt, sequential failover over the hops of the request's plan, the best
// final response relayed upstream.
import { MessageEditor, SipParseError, formatUri, parseUri, splitList, tryParseMessage, type SipMessage } from '@sipedge/sip'
import { H_VIA_ID } from './header-ids.js'
import { ownBytes, type ClientTransaction, type TimeoutReason } from '@sipedge/transaction'
import { betterFinal, type RequestContext } from './context.js'
import { defaultPort, type Listener } from './identity.js'
import type { CoreState } from './internals.js'
import type { NextHop } from './module.js'
import { reply, settle } from './replies.js'
import { editRouteSet, markReceived } from './route-set.js'
import type { Destination, TransportName } from './types.js'

/** §16.6: try the hops in order (sequential failover); when none is left, answer the best final. */
export function forward(core: CoreState, ctx: RequestContext): void {
  if (ctx.cancelled) { finishCancelled(core, ctx); return }
  while (ctx.next < ctx.hops.length) {
    const h = ctx.hops[ctx.next++]!
    let address = h.flow !== undefined ? h.flow.address : h.address
    if (address === null) {
      const a = core.resolver.peek(h.hop.host)
      if (a === undefined) {
        // The one await of the request path: an unknown host name (cached from then on).
        core.counters.dnsWaits++
        ctx.next--
        core.resolver.resolve(h.hop.host).then(
          r => { if (r === null) { ctx.next++; keepGenerated(ctx, 503) } forward(core, ctx) },
          () => { ctx.next++; keepGenerated(ctx, 503); forward(core, ctx) },
        )
        return
      }
      if (a === null) { keepGenerated(ctx, 503); continue }
      address = a
    }
    const flow = h.flow
    const listener = core.local.listenerFor(h.hop.transport) ?? (flow !== undefined ? core.local.listenerFor(flow.transport) : undefined)
    if (listener === undefined) { keepGenerated(ctx, 503); continue }
    sendAttempt(core, ctx, h, listener, address)
    return
  }
  sendBest(core, ctx)
}

function sendAttempt(core: CoreState, ctx: RequestContext, h: NextHop, out: Listener, address: string): void {
  const req = ctx.req
  const ed = new MessageEditor(req)
  const forceRport = core.layer.forceRport && ctx.source.transport === 'udp'
  markReceived(ed, req.topVia, ctx.source, forceRport)

  // Request-URI and Route set (§16.4 and §16.6 steps 2, 6, 7).
  let ruri = ctx.ruri
  let changed = ctx.ruriChanged
  if (h.requestUri !== undefined) { ruri = h.requestUri; changed = true }
  const rw = ctx.rule?.rewriteHost
  if (rw !== null && rw !== undefined) {
    const u = parseUri(ruri)
    u.host = rw.host
    if (rw.port !== null) u.port = rw.port
    ruri = formatUri(u)
    changed = true
  }
  if (ctx.ourRoutes > 0 || ctx.dropLastRoute || h.strict === true) {
    const next = editRouteSet(ed, req.routes, ctx.ourRoutes, ctx.dropLastRoute, h.strict === true ? h.uri : null, ruri)
    if (next !== null) { ruri = next; changed = true }
  }
  if (changed) ed.setRequestUri(ruri)

  // §16.6 step 3: Max-Forwards.
  const mf = req.maxForwards
  ed.setMaxForwards(mf < 0 ? core.config.proxy.max_forwards : mf - 1)

  ctx.currentHop = h
  ctx.outListener = out
  ctx.rrParams = ''
  ctx.singleRecordRoute = false
  ctx.restoresVias = false
  const hooks = core.hooks.onForward
  for (let i = 0; i < hooks.length; i++) hooks[i]!.onForward!(ctx, ed)

  // §16.6 step 8: our Via, its branch carrying the loop hash and a MAC of where responses to it
  // go back to (RFC 3581 §4: the source port when the client asked for rport or force_rport put
  // it there, else its sent-by port).
  const via = req.topVia
  const src = ctx.source
  const branch = core.branches.signed(ctx.hash, core.signer, src.address, via.rport !== undefined || forceRport ? src.port : via.port ?? defaultPort(src.transport))
  ed.prependVia(out.viaPrefix + branch)

  // §16.6 step 4: Record-Route; RFC 5658: two entries when the request changes listener
  // (transport or interface), the lower one facing the side it came from. Prepended after our Via:
  // when the request has no Record-Route yet and starts with its Via, ours then lands above the
  // Vias, not between our Via and the previous hop's (legal, but a UAS that copies "the Via lines"
  // as one block loses the lower ones, and its responses come back with no Via for the caller).
  // Modules may add parameters (the signed dialog parameter, docs/dispatcher.md), or ask for the
  // upper entry only (topology hiding shows each side only the listener facing it,
  // docs/topology-hiding.md).
  if (ctx.recordRoute) {
    const inL = ctx.singleRecordRoute ? out : ctx.inListener
    const p = ctx.rrParams
    if (p === '') {
      if (inL !== undefined && inL !== out) ed.prependRecordRoute(inL.recordRoute)
      ed.prependRecordRoute(out.recordRoute)
    } else {
      if (inL !== undefined && inL !== out) ed.prependRecordRoute(inL.recordRoute.slice(0, -1) + p + '>')
      ed.prependRecordRoute(out.recordRoute.slice(0, -1) + p + '>')
    }
  }

  const add = ctx.rule?.addHeaders
  if (add !== undefined) for (let i = 0; i < add.length; i++) ed.addHeader(add[i]![0], add[i]![1])
  if (h.headers !== undefined) for (const [n, v] of h.headers) ed.addHeader(n, v)
  const flow = h.flow
  const transport: TransportName = flow?.transport ?? h.hop.transport
  if (transport !== 'udp') ed.ensureContentLength()

  const dest: Destination = flow ?? { transport, address, port: h.hop.port, socketId: out.socketId }
  core.counters.forwardedRequests++
  // §16.6 step 10 / 11: a new client transaction (Timer C for INVITE is the layer's).
  ctx.current = core.layer.createClient({
    request: ed.toBuffers(),
    method: req.method,
    branch,
    dest,
    onResponse: core.onClientResponse,
    onTimeout: core.onClientTimeout,
    context: ctx,
  })
}

/** §16.7: a response on one of our client transactions. */
export function clientResponse(core: CoreState, resp: SipMessage, tx: ClientTransaction): void {
  const ctx = tx.context as RequestContext | undefined
  if (ctx === undefined) return // released when a non-INVITE request settled (replies.ts settle)
  const status = resp.status
  if (!ctx.restoresVias && !hasViaBelowOurs(resp)) { viaLess(core, ctx, tx, status); return }
  const current = tx === ctx.current && !ctx.done
  const hooks = core.hooks.onResponse
  if (status >= 200 && status < 300) {
    // §16.7 step 5 / RFC 6026: every 2xx is forwarded at once, retransmissions and 2xx of an
    // earlier attempt included (a dialog the UAC must ACK).
    for (let i = 0; i < hooks.length; i++) hooks[i]!.onResponse!(resp, ctx, current ? ctx.currentHop : null, current)
    forwardResponse(core, ctx, resp)
    settle(core, ctx, status)
    return
  }
  if (!current) return // a late non-2xx of an abandoned attempt
  for (let i = 0; i < hooks.length; i++) hooks[i]!.onResponse!(resp, ctx, ctx.currentHop, true)
  if (status < 200) {
    // §16.7 step 5: provisional responses other than 100 are forwarded immediately.
    if (status > 100) forwardResponse(core, ctx, resp)
    return
  }
  // §16.10: the 487 of a cancelled attempt is what the caller who cancelled gets, also over a
  // final this proxy only generated for an earlier attempt (408 after a silent contact, 503):
  // a caller that sent CANCEL must not be told its request timed out.
  if (betterFinal(status, ctx.bestStatus) || (ctx.cancelled && status === 487 && ctx.best === null && ctx.bestStatus < 500)) {
    // Kept past this call: copy (the message may sit in ring memory).
    ctx.best = copyMessage(resp)
    ctx.bestStatus = status
  }
  if (status >= 600) { sendBest(core, ctx); return } // §16.7 step 5: 6xx ends the search
  if (!ctx.cancelled && failoverOnStatus(ctx, status) && ctx.next < ctx.hops.length) {
    core.counters.failovers++
    forward(core, ctx)
    return
  }
  sendBest(core, ctx)
}

/** Does the response keep a Via below ours (two Via lines, or a list in the one line)? */
function hasViaBelowOurs(resp: SipMessage): boolean {
  const hs = resp.headers
  let line: (typeof hs)[number] | undefined
  for (let i = 0; i < hs.length; i++) {
    if (hs[i]!.id !== H_VIA_ID) continue
    if (line !== undefined) return true
    line = hs[i]
  }
  if (line === undefined) return false
  // no element cap here (splitList throws past it): a line that parsed is bounded by the message size
  const s = resp.rawValue(line)
  return s.indexOf(',') >= 0 && splitList(s, 0, s.length).length > 2
}

/**
 * §16.7 step 3: "If no Via header field values remain in the response, the response was meant for
 * this element and MUST NOT be forwarded." A downstream that dropped the Vias below ours is not
 * relayed (the caller could not match or ACK it, and would be answered again and again until
 * Timer H). A final ends the attempt as a 502 (Bad Gateway, §21.5.3: "an invalid response from the
 * downstream server"), or as the 487 the caller is owed after its CANCEL; a provisional is dropped.
 * Counted with the responses that failed the sanity check.
 */
function viaLess(core: CoreState, ctx: RequestContext, tx: ClientTransaction, status: number): void {
  core.counters.badResponses++
  if (status < 200 || tx !== ctx.current || ctx.done) return
  if (ctx.cancelled) { finishCancelled(core, ctx); return }
  keepGenerated(ctx, 502)
  if (failoverOnStatus(ctx, 502) && ctx.next < ctx.hops.length) {
    core.counters.failovers++
    forward(core, ctx)
    return
  }
  sendBest(core, ctx)
}

function failoverOnStatus(ctx: RequestContext, status: number): boolean {
  if (ctx.failover !== null) return ctx.failover.failoverCodes.has(status)
  return status >= 500 || status === 408 // lookup/forward targets: next contact on server errors
}

/** The current attempt got no response: Timer B/F/C, a transport error, or the §9.1 CANCEL timeout. */
export function clientTimeout(core: CoreState, tx: ClientTransaction, reason: TimeoutReason): void {
  const ctx = tx.context as RequestContext | undefined
  if (ctx === undefined || tx !== ctx.current || ctx.done) return
  if (reason === 'transport-error') core.counters.transportErrors++
  else core.counters.timeouts++
  if (reason === 'cancel-timeout' || ctx.cancelled) { finishCancelled(core, ctx); return }
  const hop = ctx.currentHop
  const hooks = core.hooks.onAttemptFailed
  if (hop !== null) for (let i = 0; i < hooks.length; i++) hooks[i]!.onAttemptFailed!(ctx, hop, reason)
  // §16.8: Timer C without provisional: "behave as if the transaction received a 408"; a
  // transport error likewise (§8.1.3.1: treated as a 503, which §16.7 step 6 turns into 500) —
  // unless the hop says what its loss means (a registered flow that is gone: 480, or 430 for
  // RFC 5626 Outbound, NextHop.failStatus).
  const fs = hop !== null ? hop.failStatus : undefined
  keepGenerated(ctx, reason === 'transport-error' ? (fs !== undefined && fs > 0 ? fs : 503) : 408)
  const failover = ctx.failover !== null ? ctx.failover.failoverOnTimeout : true
  if (failover && ctx.next < ctx.hops.length) {
    core.counters.failovers++
    forward(core, ctx)
    return
  }
  sendBest(core, ctx)
}

/** Reason phrases of the finals the core generates for failed attempts. */
const GENERATED_REASONS: Readonly<Record<number, string>> = {
  408: 'Request Timeout', 430: 'Flow Failed', 480: 'Temporarily Unavailable', 500: 'Server Internal Error', 502: 'Bad Gateway', 503: 'Service Unavailable',
}

function keepGenerated(ctx: RequestContext, status: number): void {
  if (betterFinal(status, ctx.bestStatus)) { ctx.best = null; ctx.bestStatus = status }
}

/** §16.7 step 6/7: forward the best final, 503 turned into 500, generated ones built here. */
export function sendBest(core: CoreState, ctx: RequestContext): void {
  if (ctx.done) return
  if (ctx.cancelled && ctx.bestStatus === 0) { finishCancelled(core, ctx); return }
  const best = ctx.best
  const status = ctx.bestStatus
  if (best === null || status === 503) {
    // §16.7 step 6: "If the selected response is 503 (Service Unavailable), the proxy MUST
    // generate a 500 (Server Internal Error)"; our own 408/503 keep their code.
    const code = status === 0 ? 500 : best !== null ? 500 : status
    reply(core, ctx, code, GENERATED_REASONS[code] ?? 'Server Internal Error')
    return
  }
  // Relayed: the server transaction keeps the bytes it sent (for Timer G). Nothing reads the
  // copy again: a later 2xx is relayed on its own and a late non-2xx is dropped (clientResponse),
  // while an INVITE's context lives on for 32 s (Timer L/M) and the copy with it (issue 17: at
  // S=20, 6,400 copied finals of cancelled and rejected calls, ~2.5 KB each, marked by every GC).
  ctx.best = null
  forwardResponse(core, ctx, best)
  settle(core, ctx, status)
}

export function finishCancelled(core: CoreState, ctx: RequestContext): void {
  if (ctx.done) return
  reply(core, ctx, 487, 'Request Terminated')
}

/** §16.7 step 9: remove our Via, let modules edit, hand the response to the server transaction. */
function forwardResponse(core: CoreState, ctx: RequestContext, resp: SipMessage): void {
  const ed = new MessageEditor(resp)
  ed.removeTopVia()
  const hooks = core.hooks.onReply
  for (let i = 0; i < hooks.length; i++) hooks[i]!.onReply!(ed, resp, ctx)
  if (ctx.server.reliable) ed.ensureContentLength()
  core.counters.forwardedResponses++
  if (core.metrics !== undefined) core.metrics.serverResponse(ctx.req.method, ctx.source.recvTime, ctx.server.lastStatus, resp.status, true)
  // toBuffer copies: the server transaction keeps the bytes for retransmission.
  ctx.server.sendResponse(ed.toBuffer(), resp.status)
}

function copyMessage(m: SipMessage): SipMessage {
  const r = tryParseMessage(ownBytes(m.buf.subarray(m.startLineStart, m.end)))
  return r instanceof SipParseError ? m : r
}
