// Digest authentication (RFC 3261 §22, RFC 7616, RFC 8760) for the local domains configured
// under `auth.domains`: 401 challenges for REGISTER (as registrar), 407 for other requests from
// clients (as proxy). Stateless HMAC-signed nonces so that any worker can verify them; per-worker
// nonce-count tracking against replays; failed attempts counted per user and source address.
import { createHash, randomBytes } from 'node:crypto'
import { uriEquals, type SipMessage } from '@sipedge/sip'
import type { FrozenConfig } from '@sipedge/config'
import type { CredentialStore } from '@sipedge/store'
import type { ProxyLogger } from '@sipedge/proxy'
import { challenge, digestResponse, normalizeAlgorithm, parseDigest, sameDigest, type DigestAlgorithm, type DigestCredentials } from './digest.js'
import { NonceCodec, NonceCounts } from './nonce.js'
import { FileUsers, StoreUsers, isStoreSource, loadUsersFile, type UserCredential, type UserSource } from './users.js'

export type AuthKind = 'www' | 'proxy'

/** Authenticated, or what to answer (401/407 with challenges, 403, 400, 500). */
export type AuthResult =
  | { ok: true; user: string; realm: string; domain: string }
  | { ok: false; status: number; reason: string; headers: Array<[string, string]> }

export interface AuthOptions {
  config: FrozenConfig
  /** CredentialStore for domains whose `users_file` is `store:`. */
  credentials?: CredentialStore
  /** Epoch ms. */
  now?: () => number
  log?: ProxyLogger
  /**
   * Nonce signing secret shared by every worker (and node). Default: `auth.secret` if the config
   * has one, else `dialog.secret`, else derived from the users files' contents (identical in every
   * worker reading the same files), else random per worker (with a warning).
   */
  secret?: string | Buffer
  /** Wrong responses from one user+address within `failureWindowMs` before answering 403. Default 5. */
  maxFailures?: number
  failureWindowMs?: number
  /**
   * Require the digest `uri` to equal the Request-URI (RFC 7616 §3.4.6 "SHOULD"). Default false:
   * clients behind ALGs and some UAs (sipp among them) put another form there; the response is
   * still bound to the uri they sent, and replays are caught by the nonce-count.
   */
  checkUri?: boolean
  /** Size of the nonce-count LRU. Default 10 000. */
  nonceCacheSize?: number
  /** Tests: file reader. */
  readFile?: (path: string) => Buffer
}

export class RealmAuth {
  readonly domain: string
  readonly realm: string
  readonly algorithms: readonly DigestAlgorithm[]
  readonly ttlMs: number
  readonly methods: ReadonlySet<string>
  readonly users: UserSource
  codec: NonceCodec | null
  constructor(domain: string, realm: string, algorithms: readonly DigestAlgorithm[], ttlMs: number, methods: ReadonlySet<string>, users: UserSource) {
    this.domain = domain
    this.realm = realm
    this.algorithms = algorithms
    this.ttlMs = ttlMs
    this.methods = methods
    this.users = users
    this.codec = null
  }
}

export class AuthCounters {
  challenges = 0
  stale = 0
  successes = 0
  failures = 0
  forbidden = 0
  replays = 0
  unknownUsers = 0
  errors = 0
}

const MD5_ONLY: readonly DigestAlgorithm[] = Object.freeze(['MD5'])
const H_AUTH: Record<AuthKind, string> = { www: 'authorization', proxy: 'proxy-authorization' }
const H_CHAL: Record<AuthKind, string> = { www: 'WWW-Authenticate', proxy: 'Proxy-Authenticate' }

export class DigestAuth {
  readonly realms: Map<string, RealmAuth>
  readonly counters = new AuthCounters()
  private readonly now: () => number
  private readonly log: ProxyLogger | undefined
  private readonly counts: NonceCounts
  private readonly failures = new Map<string, { n: number; since: number }>()
  private readonly maxFailures: number
  private readonly failureWindowMs: number
  private readonly checkUri: boolean
  private readonly md5Only: readonly RegExp[]

  constructor(opts: AuthOptions) {
    this.now = opts.now ?? Date.now
    this.log = opts.log
    this.maxFailures = opts.maxFailures ?? 5
    this.failureWindowMs = opts.failureWindowMs ?? 5 * 60_000
    this.checkUri = opts.checkUri ?? false
    this.counts = new NonceCounts(opts.nonceCacheSize ?? 10_000)
    this.md5Only = ((opts.config.auth as { md5_only_user_agents?: readonly string[] }).md5_only_user_agents ?? []).map(p => new RegExp(p))
    this.realms = new Map()
    const fileDigests: Buffer[] = []
    const domains = opts.config.auth.domains
    for (const name of Object.keys(domains).sort()) {
      const d = domains[name]!
      const realm = d.realm ?? name
      let users: UserSource
      if (isStoreSource(d.users_file)) {
        if (opts.credentials === undefined) throw new Error(`auth.domains.${name}: users_file "store:" needs the credential store`)
        users = new StoreUsers(opts.credentials)
      } else {
        const f = loadUsersFile(d.users_file, realm, opts.readFile)
        fileDigests.push(f.digest)
        users = f
      }
      const methods = new Set(d.methods.map(m => m.toUpperCase()))
      this.realms.set(name.toLowerCase(), new RealmAuth(name.toLowerCase(), realm, d.algorithms as DigestAlgorithm[], d.nonce_ttl, methods, users))
    }
    const key = this.deriveKey(opts, fileDigests)
    for (const r of this.realms.values()) r.codec = new NonceCodec(key, r.ttlMs, this.now)
  }

  private deriveKey(opts: AuthOptions, fileDigests: Buffer[]): Buffer {
    const h = createHash('sha256').update('sipedge digest nonce key\0')
    const cfgSecret = (opts.config.auth as { secret?: string | null }).secret ?? opts.config.dialog.secret
    const secret = opts.secret ?? cfgSecret ?? null
    if (secret !== null) return h.update(secret).digest()
    if (fileDigests.length > 0 && fileDigests.length === this.realms.size) {
      // Every worker reads the same files: the same key without any shared state, and as secret
      // as the HA1 values themselves.
      for (const d of fileDigests) h.update(d)
      return h.digest()
    }
    if (this.realms.size > 0) this.log?.warn('auth: no secret configured (auth.secret or dialog.secret): nonces are signed with a per-worker random key, so a nonce is only accepted by the worker that issued it')
    return h.update(randomBytes(32)).digest()
  }

  /** The auth settings of a local domain (lower-case), if it authenticates `method`. */
  realmFor(domain: string, method: string): RealmAuth | undefined {
    const r = this.realms.get(domain.toLowerCase())
    return r !== undefined && r.methods.has(method) ? r : undefined
  }

  /**
   * `auth.md5_only_user_agents`: clients known to give up on a challenge set with SHA-256 in it
   * (baresip 1.x, SIP.js, JsSIP) get MD5 alone when the domain offers MD5 (docs/clients.md).
   */
  private algorithmsFor(r: RealmAuth, req: SipMessage | undefined): readonly DigestAlgorithm[] {
    if (req === undefined || this.md5Only.length === 0 || r.algorithms.length < 2 || !r.algorithms.includes('MD5')) return r.algorithms
    const ua = req.header('user-agent')
    if (ua === undefined) return r.algorithms
    for (const re of this.md5Only) if (re.test(ua)) return MD5_ONLY
    return r.algorithms
  }

  /** Builds the challenge response (401 / 407), one challenge per algorithm in preference order. */
  challengeOf(r: RealmAuth, kind: AuthKind, stale: boolean, req?: SipMessage): AuthResult {
    this.counters.challenges++
    if (stale) this.counters.stale++
    const nonce = r.codec!.issue(r.realm)
    const headers: Array<[string, string]> = []
    for (const a of this.algorithmsFor(r, req)) headers.push([H_CHAL[kind], challenge(r.realm, nonce, a, stale)])
    return kind === 'www'
      ? { ok: false, status: 401, reason: 'Unauthorized', headers }
      : { ok: false, status: 407, reason: 'Proxy Authentication Required', headers }
  }

  /**
   * Checks the request's credentials for realm `r`. Synchronous for file users, a Promise for
   * the credential store. Never rejects: a store error answers 500 with Retry-After.
   */
  verify(req: SipMessage, r: RealmAuth, kind: AuthKind, sourceAddress: string): AuthResult | Promise<AuthResult> {
    const creds = this.credentialsOf(req, r, kind)
    if (creds === null) return this.challengeOf(r, kind, false, req)
    const alg = normalizeAlgorithm(creds.algorithm)
    if (alg === null || !r.algorithms.includes(alg)) return this.challengeOf(r, kind, false, req)
    const nonceState = r.codec!.check(creds.nonce, r.realm)
    if (nonceState === 'invalid') return this.challengeOf(r, kind, false, req)
    // RFC 8760 / 7616: we only offer qop=auth; a response without it (RFC 2069) is not accepted.
    if (creds.qop?.toLowerCase() !== 'auth' || creds.nc === undefined || creds.cnonce === undefined || !/^[0-9a-fA-F]{8}$/.test(creds.nc)) {
      return this.challengeOf(r, kind, false, req)
    }
    // RFC 7616 §3.4.6: the digest-uri should name the Request-URI (checked when asked to).
    let sameUri = true
    if (this.checkUri) {
      try { sameUri = creds.uri === req.uri || uriEquals(creds.uri, req.uri) } catch { sameUri = false }
    }
    if (!sameUri) return { ok: false, status: 400, reason: 'Bad Request (digest uri does not match the Request-URI)', headers: [] }
    const user = r.users.get(r.realm, creds.username)
    if (user instanceof Promise) {
      return user.then(
        u => this.finish(req, r, kind, creds, alg, nonceState === 'stale', u, sourceAddress),
        (err: unknown) => {
          this.counters.errors++
          this.log?.warn('auth: credential store unavailable', { code: (err as { code?: string }).code, realm: r.realm })
          return { ok: false, status: 500, reason: 'Credential Store Unavailable', headers: [['Retry-After', '5']] } as AuthResult
        },
      )
    }
    return this.finish(req, r, kind, creds, alg, nonceState === 'stale', user, sourceAddress)
  }

  private credentialsOf(req: SipMessage, r: RealmAuth, kind: AuthKind): DigestCredentials | null {
    const name = H_AUTH[kind]
    const hs = req.headers
    let fallback: DigestCredentials | null = null
    for (let i = 0; i < hs.length; i++) {
      const f = hs[i]!
      if (f.name !== name) continue
      const c = parseDigest(req.valueOf(f))
      if (c === null || c.realm !== r.realm) continue
      // Several credentials for our realm (one per offered algorithm): take the preferred one.
      const a = normalizeAlgorithm(c.algorithm)
      if (a !== null && a === r.algorithms[0]) return c
      if (fallback === null && a !== null && r.algorithms.includes(a)) fallback = c
      else if (fallback === null) fallback = c
    }
    return fallback
  }

  private finish(req: SipMessage, r: RealmAuth, kind: AuthKind, c: DigestCredentials, alg: DigestAlgorithm, stale: boolean, u: UserCredential | null, source: string): AuthResult {
    const failKey = c.username + '\0' + source
    const f = this.failures.get(failKey)
    const now = this.now()
    if (f !== undefined && now - f.since > this.failureWindowMs) this.failures.delete(failKey)
    else if (f !== undefined && f.n >= this.maxFailures) {
      this.counters.forbidden++
      return { ok: false, status: 403, reason: 'Forbidden (too many failed attempts)', headers: [] }
    }
    const ha1 = u === null ? undefined : alg === 'MD5' ? u.ha1Md5 : u.ha1Sha256
    // Unknown user (or no HA1 for this algorithm): compute anyway so that timing does not tell.
    const expected = digestResponse(alg, ha1 ?? '0'.repeat(alg === 'MD5' ? 32 : 64), req.method, c)
    const good = sameDigest(expected, c.response) && ha1 !== undefined
    if (!good) {
      if (u === null) this.counters.unknownUsers++
      this.counters.failures++
      this.noteFailure(failKey, now)
      const n = this.failures.get(failKey)!.n
      if (n >= this.maxFailures) {
        this.counters.forbidden++
        this.log?.warn('auth: too many failed attempts', { user: c.username, realm: r.realm, source })
        return { ok: false, status: 403, reason: 'Forbidden (too many failed attempts)', headers: [] }
      }
      // RFC 7616 §3.3 / RFC 3261 §22.3: a wrong response gets a fresh challenge.
      return this.challengeOf(r, kind, false, req)
    }
    // Right password, old nonce: RFC 7616 §3.3 stale=true, the client retries without asking the user.
    if (stale) return this.challengeOf(r, kind, true, req)
    if (!this.counts.advance(c.nonce, parseInt(c.nc!, 16))) {
      this.counters.replays++
      return this.challengeOf(r, kind, true, req)
    }
    if (f !== undefined) this.failures.delete(failKey)
    this.counters.successes++
    return { ok: true, user: c.username, realm: r.realm, domain: r.domain }
  }

  private noteFailure(key: string, now: number): void {
    const f = this.failures.get(key)
    if (f !== undefined) { f.n++; return }
    if (this.failures.size >= 10_000) {
      const oldest = this.failures.keys().next().value as string
      this.failures.delete(oldest)
    }
    this.failures.set(key, { n: 1, since: now })
  }
}

export function createAuth(opts: AuthOptions): DigestAuth {
  return new DigestAuth(opts)
}

