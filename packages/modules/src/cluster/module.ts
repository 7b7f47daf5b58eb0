// The `cluster` module (issue 15, docs/ha.md): what makes two or more nodes on one Redis store one
// service, on the worker side.
// - Liveness: worker 0 of every node writes the node's key (node.id, its relay address) with a
//   TTL every node.heartbeat_interval; every worker reads the live nodes as often. A node whose key
//   expired is gone: its connection-bound bindings are unreachable at once (no wait for expiry).
// - Connection-bound bindings (registered over TCP/TLS/WS on another node): a lookup relays the
//   request to the owning node while it lives (the registrar asks `ownerRelay`). The relayed
//   request's Request-URI is the AOR with a `sipedge-relay` parameter signed with dialog.secret
//   (HMAC-SHA256 over Call-ID and AOR, so only a node of this cluster can make one); the owning
//   node takes it (`onSelectRule`) as a lookup of its own, whatever its routing rules say, and
//   never relays it again.
// - Dispatcher operator states (drain/disable from the admin API) are kept in the store by the
//   primary; every worker of every node applies them (at start and every heartbeat interval), so
//   they survive a restart and hold on every node.
import { createHmac, timingSafeEqual } from 'node:crypto'
import { networkInterfaces } from 'node:os'
import type { SipMessage } from '@sipedge/sip'
import type { CompiledRule, ControlMessage, ModuleContext, ModuleDeclaration, ModuleInstance, Source, Target } from '@sipedge/proxy'
import type { FrozenConfig } from '@sipedge/config'
import type { Stores } from '@sipedge/store'
import { aorOf, type RegistrarModule } from '../registrar/index.js'
import type { DispatcherModule } from '../dispatcher/index.js'

export const RELAY_PARAM = 'sipedge-relay'
/** How often worker 0 counts the bindings this node owns (sipedge_node_bindings_owned). */
const OWNED_COUNT_MS = 30_000
/** The shortest gap between two reads of the live view that a lookup asks for (refreshFor). */
const REFRESH_MIN_MS = 250
const RELAY_MARK = ';' + RELAY_PARAM + '='

/** The rule a relayed request follows on the owning node: a lookup, nothing else. */
const RELAY_RULE: CompiledRule = Object.freeze({
  index: -1, label: 'cluster-relay', action: Object.freeze({ type: 'lookup' as const }), rewriteHost: null, addHeaders: [],
  tests: [], prefixes: null, restTests: [], hits: 0,
}) as CompiledRule

export class ClusterCounters {
  /** Requests relayed to the node holding a binding's connection, and relayed requests taken here. */
  relayedOut = 0
  relayedIn = 0
  /** Relay parameters that failed their check (treated as an ordinary request). */
  relayForged = 0
  heartbeatErrors = 0
  pollErrors = 0
}

/** A live node: where to relay, and when it is gone unless it beats again (every worker judges by this, not by its last poll). */
interface LiveNode { relay: string; until: number }

/** "sip:ADDR:PORT[;transport=tcp]" where the other nodes reach this one (its own, not advertised, address). */
export function relayUri(config: FrozenConfig): string | null {
  const ls = config.listen.filter(l => l.proto === 'udp' || l.proto === 'tcp')
  const l = ls.find(x => x.proto === 'udp') ?? ls[0]
  if (l === undefined) return null
  let a = l.address
  if (a === '0.0.0.0' || a === '::') {
    const fam = l.family === 4 ? 'IPv4' : 'IPv6'
    const all = Object.values(networkInterfaces()).flat().filter(i => i !== undefined && i.family === fam && !i.internal)
    a = all[0]?.address ?? (l.family === 4 ? '127.0.0.1' : '::1')
  }
  const host = a.includes(':') ? `[${a}]` : a
  return `sip:${host}:${l.port}${l.proto === 'tcp' ? ';transport=tcp' : ''}`
}

export class ClusterModule implements ModuleInstance {
  readonly counters = new ClusterCounters()
  readonly nodeId: string
  private config: FrozenConfig
  private key: Buffer
  private readonly stores: Stores
  private readonly ctx: ModuleContext<Stores>
  private nodes = new Map<string, LiveNode>()
  private adminApplied = new Map<string, string>()
  private timer: NodeJS.Timeout | null = null
  private closed = false
  /** Worker 0: writes the heartbeat and counts the bindings this node owns. */
  readonly beats: boolean
  /** Bindings whose nodeId is this node's, counted every OWNED_COUNT_MS by worker 0. */
  bindingsOwned = 0
  private lastOwnedCount = 0
  private lastRead = 0
  private refreshing: Promise<void> | null = null

  constructor(ctx: ModuleContext<Stores>) {
    this.ctx = ctx
    this.config = ctx.config
    this.nodeId = ctx.config.node.id
    this.key = relayKey(ctx.config)
    this.stores = ctx.stores!
    this.beats = ctx.core.workerIndex === 0
    const reg = ctx.module<RegistrarModule>('registrar')?.registrar
    if (reg !== undefined) {
      reg.cluster = {
        ownerRelay: (nodeId, req) => this.ownerRelay(nodeId, req),
        refreshFor: nodeId => this.refreshFor(nodeId),
        isRelayed: req => this.relayed(req),
      }
    }
    if (!ctx.core.manualTimers) void this.tick()
  }

  // ------------------------------------------------------------------------------ liveness

  private async tick(): Promise<void> {
    this.timer = null
    if (this.closed) return
    const c = this.stores.cluster
    const interval = this.config.node.heartbeat_interval
    if (this.beats) {
      const info = JSON.stringify({ relay: relayUri(this.config), pid: process.pid, workers: this.ctx.core.workers })
      await c.beat(this.nodeId, info, this.config.node.liveness_timeout).catch(() => { this.counters.heartbeatErrors++ })
    }
    try {
      await this.readLive()
      this.applyAdminStates(await c.adminStates())
      if (this.beats && this.ctx.core.now() - this.lastOwnedCount >= OWNED_COUNT_MS) {
        this.lastOwnedCount = this.ctx.core.now()
        void this.countOwned()
      }
    } catch {
      // Redis unreachable: lookups fail with it (503); the last view stays until it is back.
      this.counters.pollErrors++
    }
    if (!this.closed) {
      this.timer = setTimeout(() => void this.tick(), interval)
      this.timer.unref()
    }
  }

  /** Reads the live nodes into this worker's view. */
  private async readLive(): Promise<void> {
    const live = await this.stores.cluster.live()
    this.lastRead = this.ctx.core.now()
    const m = new Map<string, LiveNode>()
    for (const n of live) {
      try {
        const relay = (JSON.parse(n.info) as { relay?: unknown }).relay
        if (typeof relay === 'string') m.set(n.id, { relay, until: n.until })
      } catch { /* a node that wrote garbage cannot be relayed to */ }
    }
    this.nodes = m
  }

  /**
   * A binding names a node this view does not hold alive: read the view again before the lookup
   * judges it gone (a node that started after this worker's last poll). One read in flight,
   * shared; at most one per REFRESH_MIN_MS, so bindings of a dead node cost no Redis storm.
   */
  refreshFor(nodeId: string): Promise<void> | null {
    const n = this.nodes.get(nodeId)
    if (n !== undefined && n.until > Date.now()) return null
    if (this.refreshing !== null) return this.refreshing
    if (this.ctx.core.now() - this.lastRead < REFRESH_MIN_MS) return null
    this.refreshing = this.readLive()
      .catch(() => { this.counters.pollErrors++ })
      .finally(() => { this.refreshing = null })
    return this.refreshing
  }

  /** Pages through the location store (1000 AORs a page, yielding in between): bindings stamped with this node. */
  private async countOwned(): Promise<void> {
    const reg = this.ctx.module<RegistrarModule>('registrar')?.registrar
    if (reg === undefined) return
    let n = 0
    let cursor: string | null = null
    try {
      do {
        const page: Awaited<ReturnType<typeof reg.listBindings>> = await reg.listBindings(cursor, 1000)
        for (const a of page.items) for (const b of a.bindings) if (b.nodeId === this.nodeId) n++
        cursor = page.cursor
        if (cursor !== null) await new Promise<void>(r => setImmediate(r))
      } while (cursor !== null && !this.closed)
      this.bindingsOwned = n
    } catch {
      this.counters.pollErrors++
    }
  }

  /** Live nodes (this one included) as last read. */
  liveNodes(): string[] {
    const now = Date.now()
    const out: string[] = []
    for (const [id, n] of this.nodes) if (n.until > now) out.push(id)
    return out
  }

  // ------------------------------------------------------------------------------ relaying

  private sign(callId: string, aor: string): string {
    return createHmac('sha256', this.key).update(callId).update('\n').update(aor).digest('base64url').slice(0, 22)
  }

  ownerRelay(nodeId: string, req: SipMessage): Target | null {
    const n = this.nodes.get(nodeId)
    // gone once its key expired, even if this worker has not polled since
    if (n === undefined || n.until <= Date.now()) return null
    const aor = aorOf(req.requestUri)
    if (aor === null) return null
    this.counters.relayedOut++
    return { uri: n.relay, requestUri: aor + RELAY_MARK + this.sign(req.callId, aor) }
  }

  /** The request carries a relay parameter that verifies. */
  relayed(req: SipMessage): boolean {
    if (!req.uri.includes(RELAY_MARK)) return false
    const u = req.requestUri
    const got = u.params.get(RELAY_PARAM)
    const aor = aorOf(u)
    if (typeof got !== 'string' || aor === null) return false
    const want = Buffer.from(this.sign(req.callId, aor))
    const g = Buffer.from(got)
    if (g.length !== want.length || !timingSafeEqual(g, want)) { this.counters.relayForged++; return false }
    return true
  }

  onSelectRule(req: SipMessage, _source: Source): CompiledRule | null {
    if (req.method === 'REGISTER' || !req.uri.includes(RELAY_MARK) || !this.relayed(req)) return null
    this.counters.relayedIn++
    return RELAY_RULE
  }

  // ------------------------------------------------------------------------------ dispatcher admin states

  private applyAdminStates(states: Record<string, string>): void {
    const d = this.ctx.module<DispatcherModule>('dispatcher')
    if (d === undefined) return
    const next = new Map(Object.entries(states))
    // a state removed from the store (enable): back to active
    for (const [k] of this.adminApplied) if (!next.has(k)) apply(d, k, 'enable')
    for (const [k, v] of next) if (this.adminApplied.get(k) !== v) apply(d, k, v)
    this.adminApplied = next
  }

  onControl(_msg: ControlMessage): void { /* the primary's dispatcher-admin reaches the dispatcher itself */ }

  onQuery(what: string): unknown {
    if (what === 'cluster') return { nodeId: this.nodeId, live: this.liveNodes(), counters: { ...this.counters } }
    return undefined
  }

  applyConfig(config: FrozenConfig): void {
    this.config = config
    this.key = relayKey(config)
    // a reload resets the dispatcher to its file: the stored operator states are applied again
    this.adminApplied = new Map()
  }

  stats(): Record<string, unknown> {
    return { cluster: { live: this.nodes.size, ...this.counters } }
  }

  async close(): Promise<void> {
    this.closed = true
    if (this.timer !== null) clearTimeout(this.timer)
    // a node that stops cleanly says so at once (its connections close with it)
    if (this.beats) await this.stores.cluster.forget(this.nodeId).catch(() => undefined)
  }
}

function apply(d: DispatcherModule, key: string, action: string): void {
  const sp = key.indexOf(' ')
  if (sp <= 0) return
  if (action !== 'drain' && action !== 'enable' && action !== 'disable') return
  d.dispatcher.admin(key.slice(0, sp), key.slice(sp + 1), action)
}

function relayKey(config: FrozenConfig): Buffer {
  // dialog.secret is what the nodes of a pair already share (signed Record-Route)
  return createHmac('sha256', config.dialog.secret ?? 'sipedge-unshared').update('sipedge cluster relay').digest()
}

/** Redis is what nodes share; lmdb is one node (nothing to relay, nobody to tell). */
export function sharedStore(config: FrozenConfig): boolean {
  return /^redis(s|\+sentinel)?:/i.test(config.registrar.store)
}

export const clusterModule: ModuleDeclaration<ClusterModule, Stores> = {
  name: 'cluster',
  configSection: 'node',
  requires: [],
  uses: ['registrar', 'dispatcher'],
  actions: [],
  metrics: [],
  enabled: sharedStore,
  store: config => ({ url: config.registrar.store, required: true }),
  create: ctx => new ClusterModule(ctx),
}
