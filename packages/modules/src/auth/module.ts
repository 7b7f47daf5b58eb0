// The `auth` module's declaration and instance: proxy authentication (407) of requests from the
// phones of an auth domain (on request hook), and the DigestAuth the registrar uses for its 401s.
// The DigestAuth is rebuilt on reload, so a changed algorithm list or users file applies at once.
import { parseUri, type SipMessage, type SipUri } from '@sipedge/sip'
import { DROP, Reply, type ControlMessage, type CoreApi, type ModuleContext, type ModuleDeclaration, type ModuleInstance, type Source } from '@sipedge/proxy'
import type { FrozenConfig } from '@sipedge/config'
import type { Stores } from '@sipedge/store'
import { DigestAuth, type AuthResult } from './digest-auth.js'
import type { AuthBan } from './throttle.js'
import { isStoreSource } from './users.js'

/** Dispatcher destinations given as IP literals: application servers are never challenged. */
export function trustedSources(config: FrozenConfig): ReadonlySet<string> {
  const ips = new Set<string>()
  for (const set of Object.values(config.dispatcher.sets)) {
    for (const d of set.destinations) {
      try {
        const h = parseUri(d.uri).host
        ips.add(h.startsWith('[') ? h.slice(1, -1).toLowerCase() : h)
      } catch { /* validated by config */ }
    }
  }
  return ips
}

function usesStoreUsers(config: FrozenConfig): boolean {
  return Object.values(config.auth.domains).some(d => isStoreSource(d.users_file))
}

const FORBIDDEN_FROM = new Reply(403, 'Forbidden (From does not match the authenticated user)')

export class AuthModule implements ModuleInstance {
  /** The current DigestAuth (replaced on reload); null when no domain is configured. */
  digest: DigestAuth | null
  private trusted: ReadonlySet<string>
  /** Requests whose credentials verified on arrival (for `trusts`; the core holds the message while it answers). */
  private readonly verified: WeakSet<SipMessage>
  /** 403s for too many failures by DigestAuth instances replaced on reload (metrics stay monotonic). */
  private retiredForbidden: number
  private readonly core: CoreApi
  /** The store of `registrar.store`: credentials (`users_file: store:`), failure counters, bans. */
  private stores: Stores | null
  /**
   * Sources banned for failing against many users (address -> until, epoch ms): by this worker's
   * throttle or by another worker's (`ban` control message). Their requests are dropped on
   * arrival until pike, in the primary, takes the ban over.
   */
  private readonly banned: Map<string, number>
  /** Requests from banned sources dropped on arrival. */
  bannedDropped: number
  /** Bans this worker decided (reported to the primary). */
  bansReported: number

  constructor(ctx: ModuleContext<Stores>) {
    this.core = ctx.core
    this.stores = ctx.stores
    this.banned = new Map()
    this.bannedDropped = 0
    this.bansReported = 0
    this.retiredForbidden = 0
    this.verified = new WeakSet()
    this.digest = this.build(ctx.config)
    this.trusted = trustedSources(ctx.config)
  }

  private build(config: FrozenConfig): DigestAuth | null {
    if (Object.keys(config.auth.domains).length === 0) return null
    const d = new DigestAuth({
      config, now: Date.now, log: this.core.log,
      onBan: b => this.reportBan(b),
      ...(this.stores !== null ? { credentials: this.stores.credentials } : {}),
    })
    d.throttle.useStore(this.stores?.counters ?? null)
    return d
  }

  /** The store opened in the background (when no users file is `store:`): failures are counted there from now on. */
  storeReady(stores: unknown): void {
    this.stores = stores as Stores
    this.digest?.throttle.useStore(this.stores.counters)
  }

  /**
   * A source failed against too many users (or too often): dropped here, on the other workers
   * (the primary relays the control message) and, once pike consumes it, in the primary; kept
   * in the BanStore for the other nodes and for restarts. docs/contracts.md "ban".
   */
  private reportBan(b: AuthBan): void {
    this.bansReported++
    this.banned.set(b.address, b.until)
    this.core.log.warn('auth: source banned (failed digest attempts)', { address: b.address, users: b.users, failures: b.failures, durationMs: b.durationMs, worker: this.core.workerIndex })
    this.core.postControl({ type: 'ban', address: b.address, reason: 'auth', until: b.until, durationMs: b.durationMs, users: b.users, failures: b.failures, workerIndex: this.core.workerIndex })
    this.stores?.bans.ban(b.address, b.until, 'auth').catch((err: unknown) => {
      this.core.log.warn('auth: ban not written to the store', { address: b.address, code: (err as { code?: string } | null)?.code })
    })
  }

  onControl(msg: ControlMessage): void {
    if (msg.type === 'unban') { // DELETE /api/bans/ADDRESS (the primary's ban table is lifted too)
      const a = (msg as { address?: unknown }).address
      if (typeof a === 'string') this.banned.delete(a)
      return
    }
    if (msg.type !== 'ban') return
    const m = msg as { address?: unknown; until?: unknown }
    if (typeof m.address === 'string' && typeof m.until === 'number' && m.until > Date.now()) this.banned.set(m.address, m.until)
  }

  /**
   * Proxy authentication (407) of requests from clients of an auth domain (the From domain), for
   * the methods listed in `auth.domains.D.methods` other than REGISTER (the registrar's 401).
   * ACK and CANCEL are never challenged (RFC 3261 §22.1), nor in-dialog requests, nor trusted
   * sources (application servers of the dispatcher sets). Runs on arrival, before any
   * transaction: a challenge or refusal is sent once, statelessly, never retransmitted, so a forged
   * source gets one small reply and leaves no state (issue "Safe on a public address", item 6).
   */
  onArrival(req: SipMessage, source: Source): Reply | typeof DROP | null | Promise<Reply | null> {
    if (this.banned.size > 0) {
      const until = this.banned.get(source.address)
      if (until !== undefined) {
        if (until > Date.now()) { this.bannedDropped++; return DROP }
        this.banned.delete(source.address)
      }
    }
    const auth = this.digest
    if (auth === null) return null
    const m = req.method
    if (m === 'REGISTER' || m === 'ACK' || m === 'CANCEL') return null
    let from: SipUri
    try {
      if (req.to.tag !== undefined) return null
      from = parseUri(req.from.uri)
    } catch { return null }
    const realm = auth.realmFor(from.host, m)
    if (realm === undefined || this.trusted.has(source.address.toLowerCase())) return null
    const v = auth.verify(req, realm, 'proxy', source.address)
    const done = (r: AuthResult): Reply | null => {
      if (!r.ok) return new Reply(r.status, r.reason, r.headers)
      // The authenticated user must be the one the request claims to come from.
      if (r.user !== from.user) return FORBIDDEN_FROM
      this.verified.add(req)
      return null
    }
    return v instanceof Promise ? v.then(done) : done(v)
  }

  /**
   * The core answers this request itself: is its source genuine? Application servers of the
   * dispatcher sets are, and so is a request whose credentials verified on arrival (a spoofed
   * source cannot answer a fresh nonce). Others get no response retransmissions beyond 3x their
   * request bytes (issue "Safe on a public address" 6).
   */
  trusts(req: SipMessage, source: Source): boolean {
    return this.verified.has(req) || this.trusted.has(source.address.toLowerCase())
  }

  /** Reload: users files and algorithms are read again; a broken file keeps the previous ones. */
  applyConfig(config: FrozenConfig): void {
    try {
      const next = this.build(config)
      this.retiredForbidden += this.digest?.counters.forbidden ?? 0
      this.digest = next
      this.trusted = trustedSources(config)
    } catch (err) {
      this.core.log.error('auth: new configuration not applied, previous users kept', { err: String(err), code: (err as { code?: string }).code })
    }
  }

  /** Requests refused 403 after too many failed attempts, since start (messages_dropped{auth_failed}). */
  get forbiddenTotal(): number {
    return this.retiredForbidden + (this.digest?.counters.forbidden ?? 0)
  }

  stats(): Record<string, unknown> {
    if (this.digest === null) return {}
    const t = this.digest.throttle
    return { auth: { ...this.digest.counters, sharedCounters: t.shared, bansReported: this.bansReported, bannedDropped: this.bannedDropped, banned: this.banned.size, counterStoreErrors: t.storeErrors } }
  }
}

export const authModule: ModuleDeclaration<AuthModule, Stores> = {
  name: 'auth',
  configSection: 'auth',
  requires: [],
  uses: [],
  actions: [],
  metrics: ['sipedge_messages_dropped_total', 'sipedge_bans_total'],
  enabled: config => Object.keys(config.auth.domains).length > 0,
  // Always the store of registrar.store: failure counters shared by every worker (lmdb) and node
  // (Redis), and bans. Required only when it also holds the users (`users_file: store:`).
  store: config => ({ url: config.registrar.store, required: usesStoreUsers(config) }),
  create: ctx => new AuthModule(ctx),
}
