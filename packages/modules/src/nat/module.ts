// The `nat` module's declaration and instance (docs/nat.md): the signed flow parameter of our
// Record-Route (in-dialog requests reach a NATed or stream peer over the flow it used, whether it
// was the caller or the callee), NAT keep-alives for the registrations this worker accepted, and
// the removal of bindings that stop answering. Detection (detect.ts) is shared with the
// registrar, which stores the result in the binding; force_rport is the core's (transaction layer
// and Via edits), switched by the same configuration section.
import { setImmediate as yieldToIo } from 'node:timers/promises'
import { callIdHashOf, parseUri, type SipMessage } from '@sipedge/sip'
import {
  Reply, TargetHop,
  type CoreApi, type Destination, type DialogRequestInfo, type ModuleContext, type ModuleDeclaration, type ModuleInstance,
  type NextHop, type RequestView, type Source, type ControlMessage,
} from '@sipedge/proxy'
import type { FrozenConfig } from '@sipedge/config'
import { NatDetector } from './detect.js'
import { FLOW_PARAM, FlowTokens, flowParamOf } from './flow-token.js'
import { KeepaliveScheduler, NatCounters, type BindingRef, type PingEntry } from './keepalive.js'

/** A flow parameter whose MAC fails: refused like a forged dialog parameter (ACK: dropped). */
const FORGED = new Reply(403, 'Invalid Dialog Route')

/**
 * What the nat module needs of the registrar (duck-typed: the module reaches it through
 * ctx.module, without importing it): a way to hear of REGISTER results and to remove a binding.
 */
export interface RegistrarHooks {
  readonly nodeId: string
  natObserver: ((aor: string, bindings: readonly BindingRef[], callId: string, cseq: number) => void) | null
  removeIfUnchanged(aor: string, key: string, callId: string, cseq: number): Promise<boolean>
  isNatBinding(b: BindingRef): boolean
  listBindings(cursor: string | null, limit: number): Promise<{ items: Array<{ aor: string; bindings: Array<BindingRef & { path: string[]; nodeId?: string | undefined }> }>; cursor: string | null }>
}

/** AORs read per page when a worker rebuilds its keep-alives from the store. */
const REBUILD_PAGE = 200

/** The control message the primary sends a worker when a watched stream flow failed (docs/nat.md). */
export const FLOW_FAILED = 'nat-flow-failed'
/** The control message a worker sends up to have a stream connection pinged. */
export const WATCH_FLOW = 'nat-watch-flow'

export class NatModule implements ModuleInstance {
  readonly counters: NatCounters
  detector: NatDetector
  readonly tokens: FlowTokens
  readonly keepalive: KeepaliveScheduler
  private config: FrozenConfig
  private readonly core: CoreApi
  private readonly registrar: RegistrarHooks | null
  private closed = false
  /** Resolves when the keep-alives of this worker have been rebuilt from the store (tests). */
  readonly rebuilt: Promise<number>

  constructor(ctx: ModuleContext) {
    this.core = ctx.core
    this.config = ctx.config
    this.counters = new NatCounters()
    this.detector = new NatDetector(ctx.config.nat.private_networks)
    this.tokens = new FlowTokens(ctx.config.dialog.secret)
    const reg = ctx.module<ModuleInstance & { registrar?: RegistrarHooks }>('registrar')?.registrar ?? null
    this.registrar = reg
    this.keepalive = new KeepaliveScheduler({
      core: ctx.core, config: ctx.config, counters: this.counters,
      remove: e => this.removeBinding(e),
      watchFlow: dest => this.core.postControl({ type: WATCH_FLOW, transport: dest.transport, connId: dest.connId ?? 0, address: dest.address, port: dest.port, workerIndex: this.core.workerIndex }),
    })
    if (reg !== null) {
      reg.natObserver = (aor, bindings, callId, cseq) => this.keepalive.registered(
        aor, bindings, b => b.callId === callId && b.cseq === cseq, b => reg.isNatBinding(b),
      )
    }
    this.rebuilt = ctx.config.nat.keepalive.enabled && reg !== null ? this.rebuild(reg).catch(err => {
      this.core.log.warn('nat: keep-alives not rebuilt from the store', { worker: this.core.workerIndex, err: String(err) })
      return 0
    }) : Promise.resolve(0)
  }

  /**
   * A worker that starts (or replaces one that died) takes over the keep-alives of the bindings
   * it would have accepted: written by this node, behind NAT, without Path, whose REGISTER
   * Call-ID the primary shards to this worker. Read a page at a time, yielding in between.
   */
  private async rebuild(reg: RegistrarHooks): Promise<number> {
    let cursor: string | null = null
    let n = 0
    const w = this.core.workers
    const me = this.core.workerIndex % w
    do {
      const page: Awaited<ReturnType<RegistrarHooks['listBindings']>> = await reg.listBindings(cursor, REBUILD_PAGE)
      for (const { aor, bindings } of page.items) {
        const mine = bindings.filter(b => b.nodeId === reg.nodeId && b.path.length === 0 && (callIdHashOf(b.callId) >>> 0) % w === me && reg.isNatBinding(b))
        if (mine.length > 0) n += this.keepalive.adopt(aor, mine)
      }
      cursor = page.cursor
      if (cursor !== null) await yieldToIo()
    } while (cursor !== null && !this.closed)
    return n
  }

  private removeBinding(e: PingEntry): Promise<boolean> {
    if (this.registrar === null) return Promise.resolve(false)
    return this.registrar.removeIfUnchanged(e.aor, e.key, e.callId, e.cseq)
  }

  // ------------------------------------------------------------------------------ dialogs

  /**
   * Records the flows a dialog needs in our Record-Route: the caller's when it came over a stream
   * (always: issue 16, no new connection towards it) or from behind NAT (fix_contact), the
   * callee's when the hop is a registered flow (lookup of a NATed or stream binding).
   */
  onForward(view: RequestView): void {
    if (!view.recordRoute) return
    const req = view.req
    const src = view.source
    let caller: Destination | null = null
    if (src.transport !== 'udp') caller = flowOf(src)
    else if (this.config.nat.fix_contact && this.callerBehindNat(req, src)) caller = flowOf(src)
    const hop = view.currentHop
    const callee = hop !== null && hop.flow !== undefined ? hop.flow : null
    if (caller === null && callee === null) return
    this.counters.flowsRecorded++
    view.rrParams += ';' + FLOW_PARAM + '=' + this.tokens.sign(caller, callee, req.callId, req.from.tag ?? '')
  }

  private callerBehindNat(req: SipMessage, src: Source): boolean {
    if (this.detector.viaDiffers(req.topVia, src)) return true
    if (!req.has('contact')) return false
    try {
      const c = req.contacts[0]
      return c !== undefined && c.star !== true && this.detector.isPrivate(parseUri(c.uri).host)
    } catch {
      return false
    }
  }

  /**
   * An in-dialog request through our Route (the dialog module, loaded first, has verified that
   * the dialog is ours): when our Record-Route carries a flow for the side it goes to and no
   * other Route follows ours, it goes over that flow — to the source a NATed UA used, over the
   * very connection a stream peer used (never a new one).
   */
  onDialogRequest(req: SipMessage, info: DialogRequestInfo): NextHop | Reply | null {
    let token: string | null = info.requestUri !== null ? flowParamOf(info.requestUri) : null
    for (let i = 0; i < info.ours && token === null; i++) token = flowParamOf(info.routes[i]!.uri)
    if (token === null) return null
    // A Route of someone else follows ours: that is the next hop (§16.4), not the UA.
    if (info.routes.length > info.ours && info.requestUri === null) return null
    const claim = this.tokens.verify(token, req.callId, req.from.tag, req.to.tag)
    if (claim === null) { this.counters.flowsForged++; return FORGED }
    const fromCaller = req.from.tag === claim.callerTag
    const flow = fromCaller ? claim.callee : claim.caller
    if (flow === null) return null
    this.counters.flowsUsed++
    return new TargetHop(info.requestUri ?? req.uri, { transport: flow.transport, host: flow.address, port: flow.port }, undefined, flow, undefined, false, 480)
  }

  // ------------------------------------------------------------------------------ keep-alives

  onStrayResponse(resp: SipMessage, source: Source): boolean {
    return this.keepalive.answer(resp.topVia.branch, source)
  }

  onControl(msg: ControlMessage): void {
    if (msg.type !== FLOW_FAILED) return
    const connId = Number((msg as { connId?: unknown }).connId)
    if (Number.isInteger(connId) && connId > 0) this.keepalive.flowFailed(connId)
  }

  /** `nat` query: this worker's keep-alive entries and counters. */
  onQuery(what: string): unknown {
    if (what !== 'nat') return undefined
    return { workerIndex: this.core.workerIndex, keepalives: this.keepalive.size, ...this.counters }
  }

  applyConfig(config: FrozenConfig): void {
    this.config = config
    this.detector = new NatDetector(config.nat.private_networks)
    this.tokens.rekey(config.dialog.secret)
    this.keepalive.configure(config)
  }

  stats(): Record<string, unknown> {
    return { nat: { keepalives: this.keepalive.size, ...this.counters } }
  }

  close(): void {
    this.closed = true
    this.keepalive.close()
  }
}

function flowOf(s: Source): Destination {
  const d: Destination = { transport: s.transport, address: s.address, port: s.port, socketId: s.socketId ?? 0 }
  if (s.transport !== 'udp' && s.connId !== undefined && s.connId !== 0) d.connId = s.connId
  return d
}

export const natModule: ModuleDeclaration<NatModule> = {
  name: 'nat',
  configSection: 'nat',
  requires: [],
  // Created after the dialog module (its hooks run first: it refuses forged in-dialog requests
  // before this one routes them) and after the registrar (whose results it keeps alive).
  uses: ['dialog', 'registrar'],
  actions: [],
  metrics: ['sipedge_nat_keepalives_total', 'sipedge_nat_bindings_removed_total', 'sipedge_nat_keepalive_seconds_total'],
  // Always on: connection reuse for dialogs with stream peers applies without NAT too (issue 16).
  enabled: () => true,
  create: ctx => new NatModule(ctx),
}
