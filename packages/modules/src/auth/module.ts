// The `auth` module's declaration and instance: proxy authentication (407) of requests from the
// phones of an auth domain (on request hook), and the DigestAuth the registrar uses for its 401s.
// The DigestAuth is rebuilt on reload, so a changed algorithm list or users file applies at once.
import { parseUri, type SipMessage, type SipUri } from '@sipedge/sip'
import { Reply, type CoreApi, type ModuleContext, type ModuleDeclaration, type ModuleInstance, type Source } from '@sipedge/proxy'
import type { FrozenConfig } from '@sipedge/config'
import type { Stores } from '@sipedge/store'
import { DigestAuth, type AuthResult } from './digest-auth.js'
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
  /** 403s for too many failures by DigestAuth instances replaced on reload (metrics stay monotonic). */
  private retiredForbidden: number
  private readonly core: CoreApi
  private readonly stores: Stores | null

  constructor(ctx: ModuleContext<Stores>) {
    this.core = ctx.core
    this.stores = ctx.stores
    this.retiredForbidden = 0
    this.digest = this.build(ctx.config)
    this.trusted = trustedSources(ctx.config)
  }

  private build(config: FrozenConfig): DigestAuth | null {
    if (Object.keys(config.auth.domains).length === 0) return null
    return new DigestAuth({
      config, now: Date.now, log: this.core.log,
      ...(this.stores !== null ? { credentials: this.stores.credentials } : {}),
    })
  }

  /**
   * Proxy authentication (407) of requests from clients of an auth domain (the From domain), for
   * the methods listed in `auth.domains.D.methods` other than REGISTER (the registrar's 401).
   * ACK and CANCEL are never challenged (RFC 3261 §22.1), nor in-dialog requests, nor trusted
   * sources (application servers of the dispatcher sets). Runs on arrival, before any
   * transaction: a challenge or refusal is sent once, statelessly, never retransmitted, so a forged
   * source gets one small reply and leaves no state (issue "Safe on a public address", item 6).
   */
  onArrival(req: SipMessage, source: Source): Reply | null | Promise<Reply | null> {
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
      return r.user !== from.user ? FORBIDDEN_FROM : null
    }
    return v instanceof Promise ? v.then(done) : done(v)
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
    return this.digest === null ? {} : { auth: { ...this.digest.counters } }
  }
}

export const authModule: ModuleDeclaration<AuthModule, Stores> = {
  name: 'auth',
  configSection: 'auth',
  requires: [],
  uses: [],
  actions: [],
  metrics: ['sipedge_messages_dropped_total'],
  enabled: config => Object.keys(config.auth.domains).length > 0,
  store: config => (usesStoreUsers(config) ? { url: config.registrar.store, required: true } : null),
  create: ctx => new AuthModule(ctx),
}
