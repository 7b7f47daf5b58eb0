// What the core forwards without a transaction: the ACK for a 2xx (§16.6, §17.2.3, RFC 6026 §7.1)
// along its Route set, and responses that match no client transaction (§16.7, §16.11).
import { MessageEditor, callIdHashOf, parseUri, type NameAddr, type SipMessage, type SipUri } from '@sipedge/sip'
import { defaultPort } from './identity.js'
import type { CoreState } from './internals.js'
import { BRANCH_MARK } from './loop.js'
import { Reply, type DialogRequestInfo, type NextHop, type Restored } from './module.js'
import { hopOf, type Hop } from './resolver.js'
import { editRouteSet, markReceived } from './route-set.js'
import type { Destination, Source, TransportName } from './types.js'

export const EMPTY_ROUTES: NameAddr[] = []

/** Our listener (host and port) or a bare local domain: a Route/Request-URI naming this proxy. */
export function isOurUri(core: CoreState, u: SipUri): boolean {
  const tp = u.params.get('transport')
  return core.local.isLocalHostPort(u.host, u.port, typeof tp === 'string' ? tp.toLowerCase() : 'udp', u.scheme)
}

/** How many Route values at the top name this proxy (two in a row: our double Record-Route, RFC 5658). */
export function countOurRoutes(core: CoreState, routes: readonly NameAddr[], limit = routes.length): number {
  let ours = 0
  while (ours < limit && isOurUri(core, parseUri(routes[ours]!.uri))) ours++
  return ours
}

/**
 * Asks the modules (dialog tracking, ...) where an in-dialog request through our Route goes:
 * the first hop or Reply a module gives, else null (follow the Route set / Request-URI).
 */
export function dialogDecision(core: CoreState, msg: SipMessage, routes: DialogRequestInfo['routes'], ours: number, source: Source, requestUri: string | null = null): NextHop | Reply | null {
  const hooks = core.hooks.onDialogRequest
  if (hooks.length === 0) return null
  const info = { routes, ours, source, requestUri }
  for (let i = 0; i < hooks.length; i++) {
    const d = hooks[i]!.onDialogRequest!(msg, info)
    if (d !== null) return d
  }
  return null
}

/**
 * Asks the on-restore hooks (topology hiding) about an in-dialog request or ACK whose Request-URI
 * `edge` names us with a user part: the first Restored or Reply a module gives, else null.
 */
export function restoreDecision(core: CoreState, msg: SipMessage, edge: SipUri, routes: readonly NameAddr[], ours: number, source: Source, requestUri: string | null): Restored | Reply | null {
  const hooks = core.hooks.onRestore
  const info = { routes, ours, source, requestUri }
  for (let i = 0; i < hooks.length; i++) {
    const r = hooks[i]!.onRestore!(msg, edge, info)
    if (r !== null) return r
  }
  return null
}

/**
 * ACK for a 2xx: forwarded statelessly along its Route set, only for dialogs we record-routed, or
 * to the target of an edge URI a module restored (then the restored ACK is what is forwarded).
 */
export function forwardAck(core: CoreState, msg: SipMessage, source: Source): void {
  const c = core.counters
  const mf = msg.maxForwards
  if (mf === 0) { c.acksDropped++; return }
  const routes = msg.has('route') ? msg.routes : EMPTY_ROUTES
  const ours = countOurRoutes(core, routes)
  let ack = msg
  let target: NextHop | null = null
  let seen: DialogRequestInfo['routes'] = routes
  if (core.hooks.onRestore.length > 0) {
    const u = msg.requestUri
    if (u.user !== undefined && isOurUri(core, u)) {
      const r = restoreDecision(core, msg, u, routes, ours, source, null)
      if (r instanceof Reply) { c.acksDropped++; c.moduleRefused++; return }
      if (r !== null) { ack = r.req; target = r.target; seen = r.routes ?? routes }
    }
  }
  // Only ACKs of dialogs we record-routed (our Route on top) or restored; nothing else is ours to relay.
  if (ours === 0 && target === null) { c.acksDropped++; return }
  const d = ours > 0 ? dialogDecision(core, ack, seen, ours, source) : null
  if (d instanceof Reply) { c.acksDropped++; c.moduleRefused++; return }
  let hop: Hop
  let strictNext: string | null = null
  let flow: Destination | undefined
  if (target !== null) {
    // The restored ACK carries only the route set beyond us (ours are gone from it).
    hop = target.hop
    flow = target.flow
    if (target.strict === true) strictNext = target.uri
  } else if (ours < routes.length) {
    const u = parseUri(routes[ours]!.uri)
    hop = hopOf(u)
    if (!u.params.has('lr')) strictNext = routes[ours]!.uri
  } else {
    const u = msg.requestUri
    if (u.user === undefined && isOurUri(core, u)) { c.acksDropped++; return }
    hop = hopOf(u)
  }
  if (d !== null) { hop = d.hop; flow = d.flow }
  const address = flow !== undefined ? flow.address : d !== null && d.address !== null ? d.address : core.resolver.peek(hop.host)
  if (address === undefined || address === null) {
    // Not resolved yet: warm the cache; the UAC retransmits its ACK with the next 2xx.
    if (address === undefined) void core.resolver.resolve(hop.host)
    c.acksDropped++
    return
  }
  const transport: TransportName = flow !== undefined ? flow.transport : hop.transport
  const out = core.local.listenerFor(transport)
  if (out === undefined) { c.acksDropped++; return }
  const ed = new MessageEditor(ack)
  const via = ack.topVia
  markReceived(ed, via, source, core.layer.forceRport)
  const ruri = target !== null
    ? (strictNext !== null ? editRouteSet(ed, ack.has('route') ? ack.routes : EMPTY_ROUTES, 0, false, strictNext, ack.uri) : null)
    : editRouteSet(ed, routes, ours, false, strictNext, msg.uri)
  if (ruri !== null) ed.setRequestUri(ruri)
  ed.setMaxForwards(mf < 0 ? core.config.proxy.max_forwards : mf - 1)
  const hooks = core.hooks.onForwardAck
  for (let i = 0; i < hooks.length; i++) hooks[i]!.onForwardAck!(ed, ack, source, out)
  // Deterministic per UAC branch, so a retransmitted ACK carries the same branch as the first.
  const b = via.branch ?? msg.callId
  ed.prependVia(out.viaPrefix + BRANCH_MARK + '00000000.a' + (callIdHashOf(b) >>> 0).toString(36) + core.workerIndex.toString(36))
  if (transport !== 'udp') ed.ensureContentLength()
  c.acksForwarded++
  // A module's hop over a recorded flow (a NATed or stream peer, docs/nat.md) keeps its connection.
  core.sendFn(flow ?? { transport, address, port: hop.port, socketId: out.socketId }, ed.toBuffers())
}

/**
 * §16.11 / §16.7: a response matching no client transaction (a 2xx retransmission after Timer M,
 * a late response) is forwarded statelessly by Via — only when the top Via is ours and the
 * next one is sane (a parseable sent-by that does not point back at us).
 */
export function forwardStray(core: CoreState, msg: SipMessage, _source: Destination): void {
  const c = core.counters
  let vias
  try { vias = msg.vias } catch { c.strayDropped++; return }
  if (vias.length < 2) { c.strayDropped++; return }
  const top = vias[0]!
  const b = top.branch
  if (b === undefined || !b.startsWith(BRANCH_MARK) || !core.local.isLocalHostPort(top.host, top.port, top.transport.toLowerCase())) {
    c.strayDropped++
    return
  }
  const next = vias[1]!
  const transport = next.transport.toLowerCase() as TransportName
  const out = core.local.listenerFor(transport)
  const host = next.received ?? next.host
  const address = core.resolver.peek(host.startsWith('[') ? host.slice(1, -1) : host)
  const port = typeof next.rport === 'number' ? next.rport : next.port ?? defaultPort(transport)
  if (out === undefined || address === undefined || address === null || !(port > 0 && port < 65536) || core.local.isLocalHostPort(address, port, transport)) {
    c.strayDropped++
    return
  }
  // Only a branch we signed for exactly this previous hop (forwarding.ts): a forged response
  // whose top Via merely looks like ours is dropped, never relayed to the host it names.
  const dot = b.lastIndexOf('.')
  if (dot <= BRANCH_MARK.length || !core.signer.verify(b.slice(BRANCH_MARK.length, dot), address, port, b.slice(dot + 1))) {
    c.strayForged++
    c.strayDropped++
    return
  }
  const ed = new MessageEditor(msg)
  ed.removeTopVia()
  if (transport !== 'udp') ed.ensureContentLength()
  c.strayForwarded++
  core.sendFn({ transport, address, port, socketId: out.socketId }, ed.toBuffers())
}
