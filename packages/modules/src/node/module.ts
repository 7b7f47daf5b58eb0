// The `node` module: the worker side of a node drain (issue 15, docs/ha.md "Drain"). The primary
// starts a drain (POST /api/node/drain, SIGUSR2) and posts `{ type: 'node-drain' }` to every
// worker; from then on this worker answers new dialogs (INVITE, SUBSCRIBE, REFER without a
// To-tag) and every REGISTER with 503 + Retry-After (RFC 3261 §21.5.4), so phones and peers go to
// the other node, while in-dialog requests and transactions already open go on as before. The
// primary watches the dialogs and pending requests left (queries `dialogs` and `stats`) and exits
// when they are gone or at node.drain_timeout.
import type { SipMessage } from '@sipedge/sip'
import { Reply, type ControlMessage, type ModuleContext, type ModuleDeclaration, type ModuleInstance, type Source } from '@sipedge/proxy'
import type { FrozenConfig } from '@sipedge/config'

export const NODE_DRAIN = 'node-drain'

function drainReply(config: FrozenConfig): Reply {
  return new Reply(503, 'Service Unavailable (node draining)', [['Retry-After', String(Math.max(1, Math.round(config.node.drain_retry_after / 1000)))]])
}

export class NodeModule implements ModuleInstance {
  /** True once the primary started a drain (never reset: the process exits at its end). */
  draining: boolean
  /** New dialogs and registrations refused with 503 while draining. */
  drainRefused: number
  private reply: Reply

  constructor(ctx: ModuleContext) {
    this.draining = false
    this.drainRefused = 0
    this.reply = drainReply(ctx.config)
  }

  /** Only on new requests (not those following our Route): one boolean test while serving. */
  onRequest(req: SipMessage, _source: Source): Reply | null {
    if (!this.draining) return null
    const m = req.method
    if (m === 'REGISTER' || (req.to.tag === undefined && (m === 'INVITE' || m === 'SUBSCRIBE' || m === 'REFER'))) {
      this.drainRefused++
      return this.reply
    }
    return null
  }

  onControl(msg: ControlMessage): void {
    if (msg.type === NODE_DRAIN) this.draining = true
  }

  onQuery(what: string): unknown {
    if (what === 'node') return { draining: this.draining, drainRefused: this.drainRefused }
    return undefined
  }

  applyConfig(config: FrozenConfig): void {
    this.reply = drainReply(config)
  }

  stats(): Record<string, unknown> {
    return { node: { draining: this.draining, drainRefused: this.drainRefused } }
  }
}

export const nodeModule: ModuleDeclaration<NodeModule> = {
  name: 'node',
  configSection: 'node',
  requires: [],
  uses: [],
  actions: [],
  metrics: [],
  // Always: a drain may be asked for at any time, and a reload cannot add a module.
  enabled: () => true,
  create: ctx => new NodeModule(ctx),
}
