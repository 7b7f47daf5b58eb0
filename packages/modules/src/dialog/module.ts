// The `dialog` module's declaration and instance: dialog tracking for sticky sessions and the
// signed Record-Route parameter (docs/dispatcher.md "Dialog tracking"). In-dialog requests from
// the caller go to the destination that took the dialog: the table entry, else the destination
// carried in our own signed Record-Route parameter (so a lost table, a restarted worker or the
// other node still route them). A parameter that fails its HMAC check is refused (403, ACK dropped).
import { parseUri, type SipMessage } from '@sipedge/sip'
import {
  Reply, TargetHop, hopOf,
  type CoreApi, type DialogRequestInfo, type ModuleContext, type ModuleDeclaration, type ModuleInstance, type NextHop, type RequestView, type ControlMessage, type Listener, type Destination,
} from '@sipedge/proxy'
import type { FrozenConfig } from '@sipedge/config'
import type { Stores } from '@sipedge/store'
import { DispatchDestination, type DispatcherModule } from '../dispatcher/index.js'
import { DialogTracker, UNDISPATCHED, type DialogRecord } from './table.js'
import { DialogTokens, TOKEN_PARAM, tokenOf } from './token.js'

export class DialogModuleCounters {
  /** In-dialog requests whose Record-Route dialog parameter failed its HMAC check (403 / ACK dropped). */
  tokenInvalid = 0
  /** In-dialog requests through our Route with no parameter and no dialog in the table (403 / ACK dropped). */
  unverified = 0
  /** In-dialog requests sent to their dialog's destination (sticky), and of those routed by the RR parameter alone. */
  sticky = 0
  byToken = 0
  byeOnTimeout = 0
}

const FORGED = new Reply(403, 'Invalid Dialog Route')
/** A verified dialog of ours that was not dispatched: it follows its Route set / Request-URI. */
const VERIFIED = Symbol('verified')
const UNVERIFIED = new Reply(403, 'Unknown Dialog')
const TRACKED = new Set(['INVITE', 'SUBSCRIBE', 'REFER'])
/** The claimed destination of a dialog that was not dispatched (routed by lookup or forward). */
export const UNDISPATCHED_SET = UNDISPATCHED
const UNDISPATCHED_URI = 'sip:-'

export class DialogModule implements ModuleInstance {
  readonly tracker: DialogTracker
  readonly tokens: DialogTokens
  readonly counters: DialogModuleCounters
  private config: FrozenConfig
  private readonly core: CoreApi
  private readonly slot: number
  private readonly dispatcher: DispatcherModule
  private readonly testHooks: boolean

  constructor(ctx: ModuleContext<Stores>) {
    this.core = ctx.core
    this.config = ctx.config
    this.slot = ctx.slot
    this.dispatcher = ctx.module<DispatcherModule>('dispatcher')!
    this.counters = new DialogModuleCounters()
    this.tokens = new DialogTokens(ctx.config.dialog.secret)
    this.testHooks = process.env['SIPEDGE_TEST_HOOKS'] === '1'
    this.tracker = new DialogTracker({
      workerIndex: ctx.core.workerIndex, timeoutMs: ctx.config.dialog.timeout, now: () => ctx.core.now(), log: ctx.core.log,
      onTimeout: rec => this.byeOnTimeout(rec), manualTimers: ctx.core.manualTimers,
    })
  }

  // ------------------------------------------------------------------------------ dialog creation

  /**
   * Every Record-Route we insert carries the signed parameter, so an in-dialog request through
   * our Route is routed only for a dialog this edge created (issue "open relay through forged
   * in-dialog requests"); for a dispatched request it also names the destination (sticky).
   */
  onForward(view: RequestView): void {
    if (!view.recordRoute) return
    const h = view.currentHop
    const req = view.req
    if (!(h instanceof DispatchDestination)) {
      const token = this.tokens.sign(UNDISPATCHED_SET, UNDISPATCHED_URI, req.callId, req.from.tag ?? '')
      // Tracked too (counts, /api/dialogs, BYE on timeout), but never sticky: these dialogs
      // follow their Route set and Request-URI.
      if (this.config.dialog.enabled && TRACKED.has(req.method) && h !== null && view.getState(this.slot) === undefined) {
        view.setState(this.slot, this.tracker.begin(req.method === 'INVITE' ? 'invite' : 'subscribe', req, UNDISPATCHED_SET, h.requestUri ?? h.uri, token, view.source))
      }
      view.rrParams += ';' + TOKEN_PARAM + '=' + token
      return
    }
    const token = this.tokens.sign(h.set, h.uri, req.callId, req.from.tag ?? '')
    const m = req.method
    if (this.config.dialog.enabled && TRACKED.has(m)) {
      const rec = view.getState(this.slot) as DialogRecord | undefined
      if (rec === undefined) view.setState(this.slot, this.tracker.begin(m === 'INVITE' ? 'invite' : 'subscribe', req, h.set, h, token, view.source))
      else this.tracker.retarget(rec, h, token)
    }
    view.rrParams += ';' + TOKEN_PARAM + '=' + token
  }

  onResponse(resp: SipMessage, view: RequestView, _hop: NextHop | null, current: boolean): void {
    const rec = view.getState(this.slot) as DialogRecord | undefined
    if (rec === undefined) return
    const s = resp.status
    if (s >= 200 && s < 300) this.tracker.confirm(rec, resp)
    else if (current && s > 100 && s < 200) this.tracker.provisional(rec, resp)
  }

  /** A dialog-creating request that ended without a 2xx opened no dialog. */
  onFinished(view: RequestView): void {
    const rec = view.getState(this.slot) as DialogRecord | undefined
    if (rec !== undefined && rec.state === 'early') this.tracker.fail(rec)
  }

  // ------------------------------------------------------------------------------ in-dialog requests

  /**
   * An in-dialog request through our Route is routed only on state this edge created and can
   * verify: a dialog in the table, or our signed Record-Route parameter. Anything else is refused
   * (403; an ACK is dropped) and never forwarded: a forged To-tag plus an unsigned Route naming
   * us must not make this edge relay to whatever the Request-URI says (toll fraud).
   */
  onDialogRequest(req: SipMessage, info: DialogRequestInfo): NextHop | Reply | null {
    const rec = this.dialogOf(req, info)
    if (rec === null) { this.counters.unverified++; return UNVERIFIED }
    if (rec === VERIFIED) return null
    if (rec instanceof Reply) { this.counters.tokenInvalid++; return FORGED }
    const fromCaller = rec.fromTag === req.from.tag
    if (rec.setName === UNDISPATCHED_SET) {
      if (req.method !== 'ACK' || fromCaller) this.tracker.request(rec, req, fromCaller)
      return null
    }
    if (req.method === 'ACK') {
      if (!fromCaller) return null
      this.tracker.request(rec, req, true)
    } else {
      this.tracker.request(rec, req, fromCaller)
      if (!fromCaller) return null
    }
    this.counters.sticky++
    return this.stickyHop(rec)
  }

  /**
   * The dialog of an in-dialog request that came through our Route: the table entry, else one
   * rebuilt from our signed Record-Route parameter; null when neither exists; FORGED when a
   * parameter is present and fails its check (also when the table knows the dialog).
   */
  private dialogOf(msg: SipMessage, info: DialogRequestInfo): DialogRecord | null | typeof FORGED | typeof VERIFIED {
    let token: string | null = info.requestUri !== null ? tokenOf(info.requestUri) : null
    for (let i = 0; i < info.ours && token === null; i++) token = tokenOf(info.routes[i]!.uri)
    const callId = msg.callId
    const ft = msg.from.tag
    const tt = msg.to.tag
    const rec = this.tracker.find(callId, ft, tt)
    if (rec !== undefined && (token === null || token === rec.token)) return rec
    if (token === null) return null
    const claim = this.tokens.verify(token, callId, ft, tt)
    if (claim === null) return FORGED
    if (rec !== undefined) return rec
    if (claim.set === UNDISPATCHED_SET) return VERIFIED
    this.counters.byToken++
    const m = msg.method
    const insert = this.config.dialog.enabled && m !== 'BYE' && m !== 'ACK' && m !== 'CANCEL'
    const other = claim.ftag === ft ? tt ?? '' : ft ?? ''
    return this.tracker.recover(callId, claim.ftag, other, claim.set, claim.uri, this.dispatcher.dispatcher.find(claim.set, claim.uri) ?? null, token, insert)
  }

  /** Where requests from the caller of `rec` go: its destination (also when no longer configured). */
  private stickyHop(rec: DialogRecord): NextHop {
    const d = rec.dest ?? this.dispatcher.dispatcher.find(rec.setName, rec.destUri)
    if (d !== undefined && d !== null) return d
    return new TargetHop(rec.destUri, hopOf(parseUri(rec.destUri)))
  }

  // ------------------------------------------------------------------------------ timeouts

  /** dialog.send_bye_on_timeout: BYE to both sides of a confirmed INVITE dialog that timed out. */
  private byeOnTimeout(rec: DialogRecord): void {
    if (!this.config.dialog.send_bye_on_timeout || rec.kind !== 'invite' || rec.state !== 'confirmed' || rec.recovered) return
    const local = this.core.local
    const h = this.stickyHop(rec)
    const address = h.address ?? this.core.resolver.peek(h.hop.host) ?? null
    const outB = local.listenerFor(h.hop.transport)
    if (rec.calleeContact !== '' && rec.calleeTo !== '' && address !== null && outB !== undefined) {
      this.bye(rec, rec.calleeContact, rec.callerFrom, rec.calleeTo, rec.callerCseq + 1, outB,
        { transport: h.hop.transport, address, port: h.hop.port, socketId: outB.socketId })
    }
    const src = rec.callerSource
    if (rec.callerContact !== '' && rec.calleeTo !== '' && src !== null) {
      const outA = local.listenerOf(src.socketId, src.transport)
      if (outA !== undefined) {
        this.bye(rec, rec.callerContact, rec.calleeTo, rec.callerFrom, Math.max(1, rec.calleeCseq + 1), outA,
          { transport: src.transport, address: src.address, port: src.port, socketId: outA.socketId, ...(src.connId !== undefined ? { connId: src.connId } : {}) })
      }
    }
  }

  private bye(rec: DialogRecord, ruri: string, from: string, to: string, cseq: number, out: Listener, dest: Destination): void {
    this.counters.byeOnTimeout++
    this.core.originate({
      method: 'BYE', uri: ruri, dest: { ...dest, socketId: out.socketId }, from, to, callId: rec.callId, cseq,
      headers: [['Reason', 'SIP;cause=408;text="Dialog timeout"']],
    })
  }

  // ------------------------------------------------------------------------------ control

  onControl(msg: ControlMessage): void {
    // Test hook only (SIPEDGE_TEST_HOOKS=1): a forced loss of the dialog table.
    if (msg.type === 'dialog-admin' && this.testHooks && (msg as { action?: unknown }).action === 'clear') {
      const n = this.tracker.clear()
      this.core.log.warn('dialog table cleared (test hook)', { worker: this.core.workerIndex, dialogs: n })
    }
  }

  /** `dialogs` (counts) and `dialog` ({ callId }): docs/contracts.md "Query results". */
  onQuery(what: string, args: unknown): unknown {
    if (what === 'dialogs') return this.tracker.counts()
    if (what !== 'dialog') return undefined
    const callId = (args as { callId?: unknown } | null | undefined)?.callId
    if (typeof callId !== 'string' || callId === '') {
      throw Object.assign(new Error('query dialog needs args.callId (a string)'), { code: 'ERR_QUERY_BAD_ARGS' })
    }
    const all = this.tracker.byCallId(callId)
    if (all.length === 0) return null
    return { ...all[0]!.toJSON(), workerIndex: this.core.workerIndex, others: all.slice(1).map(r => r.toJSON()) }
  }

  /** Reload: runs after the dispatcher's (a required module is applied first). */
  applyConfig(config: FrozenConfig): void {
    this.config = config
    this.tracker.relink(this.dispatcher.dispatcher)
    this.tracker.setTimeout(config.dialog.timeout)
    this.tokens.rekey(config.dialog.secret)
  }

  /** The dialog mirror (dialog.mirror), opened by the host in the background. */
  storeReady(stores: unknown): void {
    this.tracker.attachStore((stores as Stores).dialogs)
  }

  stats(): Record<string, unknown> {
    return { dialog: { ...this.counters, ...this.tracker.counters } }
  }

  /** Live dialogs that no dispatcher destination counts (the metrics' set="none"). */
  get undispatched(): number {
    return this.tracker.undispatched
  }

  close(): Promise<void> {
    return this.tracker.close()
  }
}

export const dialogModule: ModuleDeclaration<DialogModule, Stores> = {
  name: 'dialog',
  configSection: 'dialog',
  requires: ['dispatcher'],
  uses: [],
  actions: [],
  metrics: ['sipedge_dialogs_active'],
  // Always on: the signed Record-Route parameter keeps dispatched dialogs sticky even with
  // tracking off (dialog.enabled only switches the table).
  enabled: () => true,
  store: config => (config.dialog.mirror ? { url: config.dialog.store, required: false } : null),
  create: ctx => new DialogModule(ctx),
}
