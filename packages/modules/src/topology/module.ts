// The `topology_hiding` module (docs/topology-hiding.md): each side of a dialog sees the edge as
// the only hop. Requests leave with our Via only, Record-Route reduced to our entry facing the
// receiver, Contacts replaced by edge URIs (token.ts) and, with `call_id`, the Call-ID masked
// towards the callee side; responses come back with the previous hop's own Vias, our entry facing
// it, the far side's Contact as an edge URI and its own Call-ID. Everything in-dialog routing
// needs travels sealed in the edge URIs, so nothing is kept between requests: a restart, a worker
// crash, a lost dialog table or the other node of an HA pair route in-dialog requests the same.
import { MessageEditor, SipParseError, tryParseMessage, type NameAddr, type SipMessage, type SipUri } from '@sipedge/sip'
import {
  Reply,
  type CoreApi, type DialogRequestInfo, type Listener, type ModuleContext, type ModuleDeclaration, type ModuleInstance,
  type NextHop, type RequestView, type Restored, type Source, type Destination,
} from '@sipedge/proxy'
import type { FrozenConfig } from '@sipedge/config'
import { CallIdMask, SealKeys, type SealKey } from './crypto.js'
import { EDGE_PREFIX, EdgeClaim, ROUTE_PARAM, edgeUri, openClaim, openRoutes, parseToken, sealClaim, sealRoutes, type RouteSeal } from './token.js'
import { addedParams, claimTarget, contactParams, flowToward, isOurRoute, routeParam, upstreamVias } from './rewrite.js'

export class TopologyCounters {
  /** Requests forwarded hidden (each attempt), ACKs among them, and responses relayed hidden. */
  hiddenRequests = 0
  hiddenAcks = 0
  hiddenResponses = 0
  /** In-dialog requests (ACK included) whose edge URI opened and was restored. */
  restored = 0
  /** Edge URIs that did not open (forged, altered, of another dialog, or of a key we do not have): 403, an ACK dropped. */
  forged = 0
}

const FORGED = new Reply(403, 'Invalid Edge URI')
const BROKEN = new Reply(400, 'Bad Request')
/** Per-request state when the request is not hidden (so later attempts do not ask again). */
const PLAIN = 0

/**
 * What a hidden request needs until its final response (module state on the request view, or
 * attached to a restored request). "Up" is the side the request came from, "down" the side it goes to.
 */
class Hide {
  readonly key: SealKey
  readonly mask: boolean
  readonly upMasked: boolean
  readonly downMasked: boolean
  /** The dialog's original Call-ID (the authenticated header of its edge URIs). */
  readonly callId: string
  /** The Call-ID as the previous hop knows it (responses carry it back). */
  readonly upCallId: string
  /** Route values towards the previous hop's side, and towards the next hop's (null: from the Record-Route of the response). */
  readonly upRoutes: readonly string[]
  readonly downRoutes: readonly string[] | null
  /**
   * The dialog has our Record-Route: its route sets travel in our entry (`;th=`), the edge URIs
   * we mint need not repeat them (they stay short, also through a chain of nodes).
   */
  readonly routed: boolean
  /** The hop the response being relayed came from (onResponse). */
  hop: NextHop | null
  /** Cache: the masked Call-ID, and the last Contact (+ route set) and edge URI minted. */
  masked: string | null
  lastContact: string
  lastEdge: string
  constructor(key: SealKey, mask: boolean, upMasked: boolean, downMasked: boolean, callId: string, upCallId: string, upRoutes: readonly string[], downRoutes: readonly string[] | null, routed: boolean) {
    this.key = key
    this.mask = mask
    this.upMasked = upMasked
    this.downMasked = downMasked
    this.callId = callId
    this.upCallId = upCallId
    this.upRoutes = upRoutes
    this.downRoutes = downRoutes
    this.routed = routed
    this.hop = null
    this.masked = null
    this.lastContact = ''
    this.lastEdge = ''
  }
}

const EMPTY: readonly string[] = []

function rawRoutes(list: readonly NameAddr[], from = 0, to = list.length): string[] {
  const out: string[] = []
  for (let i = from; i < to; i++) out.push(list[i]!.raw)
  return out
}

export class TopologyModule implements ModuleInstance {
  readonly counters: TopologyCounters
  private readonly core: CoreApi
  private readonly slot: number
  private readonly keys: SealKeys
  private readonly masks: CallIdMask
  /** State of the requests this module restored, until the core forwards them. */
  private readonly restoredState: WeakMap<SipMessage, Hide>
  private config: FrozenConfig
  /** Per rule index: whether requests it routes are hidden. */
  private ruleHides: boolean[]

  constructor(ctx: ModuleContext) {
    this.core = ctx.core
    this.slot = ctx.slot
    this.config = ctx.config
    this.counters = new TopologyCounters()
    this.keys = new SealKeys(ctx.config.dialog.secret)
    this.masks = new CallIdMask(ctx.core.workers)
    this.restoredState = new WeakMap()
    this.ruleHides = ruleHides(ctx.config)
  }

  // ------------------------------------------------------------------------------ restore

  /**
   * An in-dialog request or ACK to a URI of ours: when it is one of our edge URIs, open it (403
   * when it does not open) and rebuild the request the far side would have sent without hiding.
   */
  onRestore(req: SipMessage, edge: SipUri, info: DialogRequestInfo): Restored | Reply | null {
    const user = edge.user
    if (user === undefined || !user.startsWith(EDGE_PREFIX)) return null
    const head = parseToken(user.slice(EDGE_PREFIX.length))
    if (head === null) return this.forged()
    const received = req.callId
    let callId = received
    if (head.mask && !head.targetMasked) {
      // From the masked side: its Call-ID is our masked one, the dialog's is inside.
      const u = this.masks.unmask(this.keys.keys, received)
      if (u === null) return this.forged()
      callId = u.callId
    }
    const opened = openClaim(this.keys.keys, head, callId)
    if (opened === null) return this.forged()
    const c = opened.claim
    // Through our Record-Route: the entry carries the dialog's route set towards the target and
    // the parameters other modules signed (token.ts RouteSeal); absent, there were none.
    let seal: RouteSeal | null = null
    for (let i = 0; i < info.ours && seal === null; i++) {
      const v = routeParam(info.routes[i]!.uri)
      if (v === null) continue
      seal = openRoutes(this.keys.keys, v, callId)
      if (seal === null) return this.forged()
    }
    const viaRoute = info.ours > 0 || info.requestUri !== null
    const routes = viaRoute ? seal?.routes ?? EMPTY : c.routes
    const ed = new MessageEditor(req)
    ed.setRequestUri(c.contact)
    const keep = routes.slice()
    const end = info.routes.length - (info.requestUri !== null ? 1 : 0)
    for (let i = info.ours; i < end; i++) keep.push(info.routes[i]!.raw)
    if (keep.length > 0) ed.replaceHeader('Route', keep.join(', '))
    else if (info.routes.length > 0) ed.removeHeader('Route')
    if (callId !== received) ed.replaceHeader('Call-ID', callId)
    const copy = tryParseMessage(ed.toBuffer(), { maxSize: this.config.limits.max_message_size * 2 })
    if (copy instanceof SipParseError) return BROKEN
    let target: NextHop
    try { target = claimTarget(routes, c) } catch { return BROKEN }
    const upMasked = c.mask && !c.targetMasked
    this.restoredState.set(copy, new Hide(opened.key, c.mask, upMasked, c.mask && c.targetMasked, callId, received, c.peerRoutes, routes, viaRoute))
    this.counters.restored++
    return { req: copy, target, routes: seal === null ? undefined : withParams(info, seal.params) }
  }

  private forged(): Reply {
    this.counters.forged++
    return FORGED
  }

  // ------------------------------------------------------------------------------ requests

  /** The hiding state of a request (created on its first attempt), or null when it is not hidden. */
  private stateOf(view: RequestView): Hide | null {
    const s = view.getState(this.slot)
    if (s instanceof Hide) return s
    if (s === PLAIN) return null
    let h = this.restoredState.get(view.req) ?? null
    if (h === null && view.rule !== null && this.ruleHides[view.rule.index] === true) {
      const req = view.req
      const mask = this.config.topology_hiding.call_id
      let up: string[] = []
      try { up = req.has('record-route') ? rawRoutes(req.recordRoutes) : up } catch { /* a broken Record-Route is not kept */ }
      h = new Hide(this.keys.current, mask, false, mask, req.callId, req.callId, up, null, view.recordRoute)
    }
    view.setState(this.slot, h ?? PLAIN)
    return h
  }

  /**
   * Before each attempt: our Via only (the core adds it), no Record-Route of the previous hop's
   * side (ours alone, facing the next hop), the Contacts as edge URIs, the Call-ID masked towards
   * the masked side.
   */
  onForward(view: RequestView, ed: MessageEditor): void {
    const st = this.stateOf(view)
    if (st === null) return
    this.counters.hiddenRequests++
    const req = view.req
    ed.removeHeader('Via')
    view.restoresVias = true
    if (req.has('record-route')) ed.removeHeader('Record-Route')
    if (view.recordRoute) {
      view.singleRecordRoute = true
      // The previous hop's side's proxies, for requests from the next hop (token.ts RouteSeal).
      if (st.upRoutes.length > 0) view.rrParams += ';' + ROUTE_PARAM + '=' + sealRoutes(st.key, st.callId, { routes: st.upRoutes, params: '' })
    }
    const out = view.outListener
    if (out !== undefined && req.method !== 'REGISTER' && req.has('contact')) this.hideContacts(ed, req, st, out, view.source)
    if (st.downMasked) ed.replaceHeader('Call-ID', this.maskedOf(st))
  }

  /** The stateless ACK for a 2xx of a hidden dialog: the same as a request. */
  onForwardAck(ed: MessageEditor, ack: SipMessage, source: Source, out: Listener): void {
    const st = this.restoredState.get(ack)
    if (st === undefined) return
    this.counters.hiddenAcks++
    ed.removeHeader('Via')
    if (ack.has('record-route')) ed.removeHeader('Record-Route')
    if (ack.has('contact')) this.hideContacts(ed, ack, st, out, source)
    if (st.downMasked) ed.replaceHeader('Call-ID', this.maskedOf(st))
  }

  private maskedOf(st: Hide): string {
    return st.masked ?? (st.masked = this.masks.mask(st.key, st.callId))
  }

  /** The request's Contacts (of the previous hop's side) as edge URIs on `out` (the listener the next hop sees). */
  private hideContacts(ed: MessageEditor, req: SipMessage, st: Hide, out: Listener, source: Source): void {
    let contacts: NameAddr[]
    try { contacts = req.contacts } catch { ed.removeHeader('Contact'); return }
    let symmetric = false
    try { symmetric = req.topVia.rport !== undefined } catch { /* no usable Via: not symmetric */ }
    const fix = this.config.nat.fix_contact
    for (let i = 0; i < contacts.length; i++) {
      const c = contacts[i]!
      if (c.star === true) continue
      const claim = st.routed
        ? new EdgeClaim(c.uri, EMPTY, flowToward(c.uri, source, symmetric, fix), EMPTY, st.mask, st.upMasked)
        : new EdgeClaim(c.uri, st.upRoutes, flowToward(c.uri, source, symmetric, fix), st.downRoutes ?? EMPTY, st.mask, st.upMasked)
      ed.replaceContact(i, '<' + edgeUri(out, sealClaim(st.key, st.callId, claim)) + '>' + contactParams(c))
    }
  }

  // ------------------------------------------------------------------------------ responses

  onResponse(resp: SipMessage, view: RequestView, hop: NextHop | null): void {
    const s = view.getState(this.slot)
    if (s instanceof Hide && hop !== null && resp.status > 100) s.hop = hop
  }

  /**
   * A response relayed upstream: the previous hop's Vias and Call-ID back, Record-Route reduced to
   * our entry facing it (plus its own side's entries), the far side's Contact as an edge URI.
   */
  onReply(ed: MessageEditor, resp: SipMessage, view: RequestView): void {
    const st = view.getState(this.slot)
    if (!(st instanceof Hide)) return
    this.counters.hiddenResponses++
    const req = view.req
    ed.removeHeader('Via')
    const vias = upstreamVias(req, view.source)
    for (let i = vias.length - 1; i >= 0; i--) ed.prependVia(vias[i]!)
    if (st.mask && resp.callId !== st.upCallId) ed.replaceHeader('Call-ID', st.upCallId)
    const status = resp.status
    const dialog = status > 100 && status < 300
    let downRoutes = st.downRoutes ?? EMPTY
    if (resp.has('record-route')) {
      ed.removeHeader('Record-Route')
      if (view.recordRoute && dialog) downRoutes = this.recordRoute(ed, resp, view, st)
    }
    if (dialog && resp.has('contact')) this.hideResponseContacts(ed, resp, view, st, downRoutes)
  }

  /**
   * Record-Route towards the previous hop: our entry on the listener facing it, then its own
   * side's entries as it sent them. Our entry carries, sealed, the route set towards the next
   * hop's side (the entries above ours, reversed: RFC 3261 §12.1.2) and the parameters modules
   * put on the entry the next hop saw (the signed dialog parameter names the destination: never
   * in clear towards the caller's side). Returns that route set.
   */
  private recordRoute(ed: MessageEditor, resp: SipMessage, view: RequestView, st: Hide): string[] {
    let rrs: NameAddr[]
    try { rrs = resp.recordRoutes } catch { return [] }
    let mine = -1
    for (let i = rrs.length - 1; i >= 0 && mine < 0; i--) if (isOurRoute(this.core.local, rrs[i]!.uri)) mine = i
    const down: string[] = []
    for (let i = (mine < 0 ? rrs.length : mine) - 1; i >= 0; i--) down.push(rrs[i]!.raw)
    let params = ''
    if (mine >= 0) { try { params = addedParams(rrs[mine]!.uri, ROUTE_PARAM) } catch { /* none kept */ } }
    const inL = view.inListener ?? this.core.local.listenerFor(view.source.transport)
    if (inL === undefined) return down
    let ours = inL.recordRoute
    if (down.length > 0 || params !== '') ours = ours.slice(0, -1) + ';' + ROUTE_PARAM + '=' + sealRoutes(st.key, st.callId, { routes: down, params }) + '>'
    ed.prependRecordRoute(st.upRoutes.length === 0 ? ours : ours + ', ' + st.upRoutes.join(', '))
    return down
  }

  private hideResponseContacts(ed: MessageEditor, resp: SipMessage, view: RequestView, st: Hide, downRoutes: readonly string[]): void {
    let contacts: NameAddr[]
    try { contacts = resp.contacts } catch { ed.removeHeader('Contact'); return }
    const inL = view.inListener ?? this.core.local.listenerFor(view.source.transport)
    if (inL === undefined) { ed.removeHeader('Contact'); return }
    const peer = this.hopDestination(st.hop ?? view.currentHop, view)
    const fix = this.config.nat.fix_contact
    for (let i = 0; i < contacts.length; i++) {
      const c = contacts[i]!
      if (c.star === true) continue
      // 2xx retransmissions and a 200 after a 180 with the same Contact and route set: sealed once.
      const cacheKey = c.uri + '\n' + downRoutes.join(',')
      let uri = st.lastEdge
      if (cacheKey !== st.lastContact || uri === '') {
        const flow = peer === null ? null : st.hop?.flow ?? flowToward(c.uri, peer, true, fix)
        const claim = st.routed
          ? new EdgeClaim(c.uri, EMPTY, flow, EMPTY, st.mask, st.downMasked)
          : new EdgeClaim(c.uri, downRoutes, flow, st.upRoutes, st.mask, st.downMasked)
        uri = edgeUri(inL, sealClaim(st.key, st.callId, claim))
        st.lastContact = cacheKey
        st.lastEdge = uri
      }
      ed.replaceContact(i, '<' + uri + '>' + contactParams(c))
    }
  }

  /** Where we sent the request the response answers (the flow of a registered contact, or the hop resolved). */
  private hopDestination(h: NextHop | null, view: RequestView): Destination | null {
    if (h === null) return null
    if (h.flow !== undefined) return h.flow
    const address = h.address ?? this.core.resolver.peek(h.hop.host) ?? null
    if (address === null) return null
    const d: Destination = { transport: h.hop.transport, address, port: h.hop.port }
    const out = view.outListener
    if (out !== undefined) d.socketId = out.socketId
    return d
  }

  // ------------------------------------------------------------------------------ control

  applyConfig(config: FrozenConfig): void {
    this.config = config
    this.ruleHides = ruleHides(config)
    const before = this.keys.current
    this.keys.rekey(config.dialog.secret)
    if (this.keys.current !== before) this.masks.clear(this.core.workers)
  }

  stats(): Record<string, unknown> {
    return { topology: { ...this.counters } }
  }
}

/**
 * The Route values for the on-dialog-request hooks: our entries that came without parameters
 * (the bare entry shown to the caller's side) get the sealed ones back.
 */
function withParams(info: DialogRequestInfo, params: string): DialogRequestInfo['routes'] | undefined {
  if (params === '') return undefined
  let out: Array<{ uri: string; raw: string }> | undefined
  for (let i = 0; i < info.ours; i++) {
    const r = info.routes[i]!
    let bare = true
    try { bare = addedParams(r.uri, ROUTE_PARAM) === '' } catch { /* not ours to fix */ }
    if (!bare) continue
    out ??= info.routes.slice()
    out[i] = { uri: r.uri + params, raw: '<' + r.uri + params + '>' }
  }
  return out
}

function ruleHides(config: FrozenConfig): boolean[] {
  const on = config.topology_hiding.enabled
  return config.routes.map(r => r.topology_hiding ?? on)
}

export const topologyModule: ModuleDeclaration<TopologyModule> = {
  name: 'topology_hiding',
  configSection: 'topology_hiding',
  requires: [],
  uses: [],
  actions: [],
  metrics: [],
  // Always loaded: edge URIs handed out while hiding was on keep routing after it is turned off
  // (reload or restart); with hiding off nothing new is hidden and the hooks return at once.
  enabled: () => true,
  create: ctx => new TopologyModule(ctx),
}
