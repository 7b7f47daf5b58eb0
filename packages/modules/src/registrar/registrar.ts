// Registrar and location service (RFC 3261 §10.3), with Path (RFC 3327) and the registrar side of
// SIP Outbound (RFC 5626 §6). One instance per worker; all state lives in the LocationStore (LMDB
// shared by the threads of a process, or Redis shared by nodes), nothing is cached here.
import { hostname } from 'node:os'
import { SipParseError, parseUri, type NameAddr, type SipMessage, type SipUri } from '@sipedge/sip'
import type { ServerTransaction } from '@sipedge/transaction'
import type { FrozenConfig } from '@sipedge/config'
import { bindingKey, type Binding, type CredentialStore, type LocationStore } from '@sipedge/store'
import type { Destination, ProxyLogger, Target } from '@sipedge/proxy'
import { DigestAuth, type AuthResult } from '../auth/index.js'
import { NatDetector } from '../nat/index.js'
import { aorOf, contactValue, instanceOf, normalizeContact, parseDeltaSeconds, parseQ, regIdOf, uriOfRouteValue } from './contact.js'

/** What the registrar needs of `@sipedge/store`'s Stores (or a test double). */
export interface RegistrarStores {
  location: LocationStore
  credentials?: CredentialStore
  close?(): Promise<void>
  on?(event: 'available' | 'unavailable', fn: (err?: Error) => void): unknown
}

export interface RegistrarOptions {
  config: FrozenConfig
  stores: RegistrarStores
  workerIndex: number
  /** Epoch ms (the worker's clock: performance.timeOrigin + performance.now()). */
  now?: () => number
  log: ProxyLogger
  /**
   * The auth module's current DigestAuth (it changes on reload). Absent: one built from
   * `config.auth` (none when no domain is configured), for a registrar used on its own.
   */
  auth?: () => DigestAuth | null
  /** close() also closes the stores (the caller handed them over). */
  ownsStores?: boolean
  /** Written into every binding (Binding.nodeId): which node accepted it. Default: the host name. */
  nodeId?: string
}

/** Why `lookup` found nothing to forward to: the proxy answers with this status and reason. */
export interface LookupFailure {
  status: number
  reason: string
}

export function isLookupFailure(x: Target[] | LookupFailure): x is LookupFailure {
  return !Array.isArray(x)
}

/** Monotonic counters of one registrar instance. */
export class RegistrarCounters {
  registers = 0
  registered = 0
  queries = 0
  unregistered = 0
  bindingsAdded = 0
  bindingsRefreshed = 0
  bindingsRemoved = 0
  bindingsDropped = 0
  tooBrief = 0
  rejected = 0
  outOfOrder = 0
  authChallenges = 0
  authFailures = 0
  storeErrors = 0
  lookups = 0
  lookupHits = 0
  lookupMisses = 0
  lookupErrors = 0
  /** Lookups that met a binding bound to the connection of a node that is gone (issue 15). */
  lookupOwnerGone = 0
  /** Bindings written from behind NAT (docs/nat.md "Detection"). */
  natBindings = 0
  /** Bindings removed because they stopped answering NAT keep-alives (or their flow failed). */
  natRemoved = 0
}


const SUPPORTED_TAGS = new Set(['path', 'outbound'])
const STREAMS = new Set(['tcp', 'tls', 'ws', 'wss'])
const NOT_FOUND: LookupFailure = Object.freeze({ status: 404, reason: 'Not Found' })
const UNAVAILABLE: LookupFailure = Object.freeze({ status: 480, reason: 'Temporarily Unavailable' })
const LOOKUP_DOWN: LookupFailure = Object.freeze({ status: 503, reason: 'Location Service Unavailable' })
const OUTAGE_LOG_EVERY_MS = 10_000
/**
 * The longest address of record (bytes) the registrar keeps: the location stores key a record by
 * its AOR and refuse keys longer than 1024 bytes (LMDB's key limit, with room for the index). A
 * longer one is the client's error, answered 4xx before the store is asked — not a store failure
 * (500/503, which a client retries and an operator is paged for).
 */
export const MAX_AOR_BYTES = 1024
/** RFC 3261 §21.4.12: the Request-URI is longer than the server is willing to interpret. */
const URI_TOO_LONG: LookupFailure = Object.freeze({ status: 414, reason: 'Request-URI Too Long' })

function tooLong(aor: string): boolean {
  return aor.length > MAX_AOR_BYTES / 4 && Buffer.byteLength(aor) > MAX_AOR_BYTES
}

/** One Contact of a REGISTER, validated (§10.3 steps 6-7). */
interface ContactRequest {
  contact: string
  /** The UA is behind NAT for this binding (source vs Via, or a private Contact host). */
  nat: boolean
  expiresS: number
  q: number
  instance: string | undefined
  regId: number | undefined
}

/** Result of the atomic update, written by the (pure, maybe repeated) update function. */
class UpdateOutcome {
  aborted = false
  added = 0
  refreshed = 0
  removed = 0
  dropped = 0
  reset(): void { this.aborted = false; this.added = 0; this.refreshed = 0; this.removed = 0; this.dropped = 0 }
}

/** What the registrar asks the cluster module (docs/ha.md "Connection-bound bindings"). */
export interface ClusterView {
  /** The target that relays `req` to live node `nodeId`; null when that node is gone. */
  ownerRelay(nodeId: string, req: SipMessage): Target | null
  /** `req` was relayed here by another node: it is not relayed again. */
  isRelayed(req: SipMessage): boolean
  /**
   * Node `nodeId` is not in this worker's live view (it started, or beat for the first time,
   * after this worker's last poll): a promise that reads the view again (shared, at most one
   * read per short interval); null when the node is known or a fresh read would not help.
   */
  refreshFor(nodeId: string): Promise<void> | null
}

export class LocationRegistrar {
  readonly counters = new RegistrarCounters()
  private readonly authOf: () => DigestAuth | null
  readonly workerIndex: number
  /** This node (Binding.nodeId of the bindings it writes; the NAT keep-alives of a node are its own). */
  readonly nodeId: string
  private config: FrozenConfig
  private readonly stores: RegistrarStores
  private readonly location: LocationStore
  private readonly now: () => number
  private readonly log: ProxyLogger
  private readonly ownsStores: boolean
  private domains: Set<string>
  private serverHeader: Array<[string, string]>
  private dateSec = -1
  private dateText = ''
  private lastOutageLog = 0
  private suppressed = 0
  private closed = false
  private detector: NatDetector
  /**
   * The cluster module (issue 15, docs/ha.md): which node holds the connection of a binding
   * another node accepted, and how to relay to it; null: one node (lmdb), no relaying.
   */
  cluster: ClusterView | null = null
  /** The nat module hears of every REGISTER result here (keep-alives); null: nobody listens. */
  natObserver: ((aor: string, bindings: readonly Binding[], callId: string, cseq: number) => void) | null = null

  constructor(opts: RegistrarOptions) {
    this.config = opts.config
    this.stores = opts.stores
    this.location = opts.stores.location
    this.workerIndex = opts.workerIndex
    this.nodeId = opts.nodeId ?? hostname()
    this.now = opts.now ?? Date.now
    this.log = opts.log
    this.ownsStores = opts.ownsStores ?? false
    this.domains = new Set(opts.config.domains.map(d => d.toLowerCase()))
    this.serverHeader = opts.config.proxy.server_header === null ? [] : [['Server', opts.config.proxy.server_header]]
    this.detector = new NatDetector(opts.config.nat.private_networks)
    if (opts.auth !== undefined) this.authOf = opts.auth
    else {
      const own = Object.keys(opts.config.auth.domains).length === 0 ? null : new DigestAuth({
        config: opts.config, now: this.now, log: opts.log,
        ...(opts.stores.credentials !== undefined ? { credentials: opts.stores.credentials } : {}),
      })
      this.authOf = () => own
    }
    if (this.ownsStores && opts.stores.on !== undefined) {
      opts.stores.on('unavailable', err => this.log.warn('registrar: store unavailable: REGISTER answered 503 until it is back', { code: (err as { code?: string } | undefined)?.code, worker: this.workerIndex }))
      opts.stores.on('available', () => this.log.info('registrar: store available again', { worker: this.workerIndex }))
    }
  }

  /** The DigestAuth in force (the auth module's, which changes on reload), or null. */
  get auth(): DigestAuth | null {
    return this.authOf()
  }

  // ================================================================================ REGISTER

  handleRegister(req: SipMessage, tx: ServerTransaction, source: Destination): void {
    this.counters.registers++
    this.register(req, tx, source).catch((err: unknown) => this.failed(tx, err))
  }

  private async register(req: SipMessage, tx: ServerTransaction, source: Destination): Promise<void> {
    // §10.3 step 1: the Request-URI names the domain we are the registrar for.
    let ruri: SipUri
    try { ruri = req.requestUri } catch { this.reject(tx, 400, 'Bad Request-URI'); return }
    const domain = ruri.host.toLowerCase()
    if (!this.isOurDomain(domain)) { this.reject(tx, 404, 'Not Found (domain not served here)'); return }

    // §10.3 step 2: Require with extensions we do not support -> 420 (RFC 3261 §8.2.2.3).
    const require = req.headerValues('require')
    const unsupported = require.filter(t => !SUPPORTED_TAGS.has(t.trim().toLowerCase()))
    if (unsupported.length > 0) { this.reject(tx, 420, 'Bad Extension', [['Unsupported', unsupported.join(', ')]]); return }

    // §10.3 step 5: the address of record from To.
    let to: NameAddr
    let aorUri: SipUri
    try { to = req.to; aorUri = parseUri(to.uri) } catch { this.reject(tx, 400, 'Bad To'); return }
    const aor = aorOf(aorUri)
    if (aor === null || !this.isOurDomain(aorUri.host.toLowerCase())) { this.reject(tx, 404, 'Not Found (address of record not served here)'); return }
    if (tooLong(aor)) { this.reject(tx, 400, `Address of Record Too Long (over ${MAX_AOR_BYTES} bytes)`); return }

    // §10.3 step 3/4: authenticate, then the authenticated user may only touch its own AOR.
    const auth = this.authOf()
    const realm = auth?.realmFor(domain, 'REGISTER')
    if (auth !== null && realm !== undefined) {
      const v = auth.verify(req, realm, 'www', source.address)
      const r: AuthResult = v instanceof Promise ? await v : v
      if (!r.ok) {
        if (r.status === 401) this.counters.authChallenges++
        else this.counters.authFailures++
        this.reject(tx, r.status, r.reason, r.headers)
        return
      }
      if (r.user !== aorUri.user) { this.counters.authFailures++; this.reject(tx, 403, 'Forbidden (user may not register this address)'); return }
    }

    // §10.3 step 6: Contacts and expiries.
    let contacts: NameAddr[]
    try { contacts = req.has('contact') ? req.contacts : [] } catch (e) { this.reject(tx, 400, e instanceof SipParseError ? e.reason : 'Bad Contact'); return }
    const expH = req.header('expires')
    let headerExpires: number | undefined
    if (expH !== undefined) {
      headerExpires = parseDeltaSeconds(expH)
      if (Number.isNaN(headerExpires)) { this.reject(tx, 400, 'Bad Expires'); return }
    }
    const cfg = this.config.registrar
    const minS = Math.ceil(cfg.min_expires / 1000)
    const maxS = Math.floor(cfg.max_expires / 1000)
    const defS = Math.round(cfg.default_expires / 1000)
    const callId = req.callId
    const cseq = req.cseq.seq
    const now = this.now()

    const star = contacts.some(c => c.star === true)
    if (star && (contacts.length !== 1 || headerExpires !== 0)) {
      // §10.3 step 6: "*" only alone and only with Expires: 0.
      this.reject(tx, 400, 'Invalid Contact "*" (only alone and with Expires: 0)')
      return
    }

    const supported = new Set([...req.headerValues('supported'), ...require].map(t => t.trim().toLowerCase()))
    const path = req.headerValues('path')
    // RFC 5626 §6: outbound applies when the UA supports it and the first hop is an edge proxy that
    // does (first Path URI with ;ob), or there is no Path and we are that first hop ourselves.
    let firstHopOb = path.length === 0
    if (!firstHopOb) {
      try { firstHopOb = parseUri(uriOfRouteValue(path[0]!)).params.has('ob') } catch { firstHopOb = false }
    }
    const outboundOk = supported.has('outbound') && firstHopOb
    let outboundUsed = false
    // docs/nat.md "Detection": where the REGISTER came from against its Via, once per request; the
    // Contact host per binding. A binding registered through another proxy (Path) is reached there.
    const viaNat = path.length === 0 && this.detector.viaDiffers(req.topVia, source)

    const wanted: ContactRequest[] = []
    if (!star) {
      for (const c of contacts) {
        let contact: string
        let nat = viaNat
        try {
          contact = normalizeContact(c.uri)
          if (!nat && path.length === 0) nat = this.detector.isPrivate(parseUri(contact).host)
        } catch { this.reject(tx, 400, 'Bad Contact URI'); return }
        const ep = c.params.get('expires')
        let secs = ep !== undefined && ep !== null ? parseDeltaSeconds(ep) : headerExpires ?? defS
        if (Number.isNaN(secs)) secs = headerExpires ?? defS // §10.2.1.1: a bad parameter falls back
        if (secs !== 0 && secs < minS) {
          // §10.3 step 7 / §21.4.17: 423 with the shortest we accept.
          this.counters.tooBrief++
          this.reject(tx, 423, 'Interval Too Brief', [['Min-Expires', String(minS)]])
          return
        }
        if (secs > maxS) secs = maxS
        const qp = c.params.get('q')
        let q = 1
        if (qp !== undefined && qp !== null) {
          q = parseQ(qp)
          if (Number.isNaN(q)) { this.reject(tx, 400, 'Bad q-value'); return }
        }
        const instance = instanceOf(c)
        let regId = regIdOf(c)
        // RFC 5626 §6: without outbound support on the path "the registrar MUST ignore the reg-id".
        if (regId !== undefined && (instance === undefined || !outboundOk)) regId = undefined
        if (regId !== undefined) outboundUsed = true
        wanted.push({ contact, nat, expiresS: secs, q, instance, regId })
      }
    }

    const received = {
      transport: source.transport,
      address: source.address,
      port: source.port,
      socketId: source.socketId ?? 0,
      connId: source.connId ?? 0,
    }
    const userAgent = req.header('user-agent')
    const maxContacts = cfg.max_contacts
    const out = new UpdateOutcome()

    let bindings: Binding[]
    if (!star && wanted.length === 0) {
      // §10.3 step 8 with no Contact: a query, answered with the current bindings.
      this.counters.queries++
      bindings = await this.location.get(aor)
    } else {
      // §10.3 steps 7-8, atomically per AOR. Pure: may run again on a Redis conflict.
      bindings = await this.location.update(aor, current => {
        out.reset()
        if (star) {
          for (const b of current) {
            // §10.3 step 6: same Call-ID with a CSeq not higher -> the request fails.
            if (b.callId === callId && cseq <= b.cseq) { out.aborted = true; return null }
          }
          out.removed = current.length
          return current.length === 0 ? null : []
        }
        const next = current.slice()
        for (const w of wanted) {
          const key = w.regId !== undefined ? w.instance + ';reg-id=' + w.regId : w.contact
          const i = next.findIndex(b => bindingKey(b) === key)
          if (i >= 0) {
            const b = next[i]!
            if (b.callId === callId && cseq <= b.cseq) { out.aborted = true; return null }
            if (w.expiresS === 0) { next.splice(i, 1); out.removed++; continue }
            out.refreshed++
          } else if (w.expiresS === 0) {
            continue
          } else {
            out.added++
          }
          const nb: Binding = {
            aor, contact: w.contact, instance: w.instance, regId: w.regId, q: w.q,
            expires: now + w.expiresS * 1000, callId, cseq, path, received, userAgent, updatedAt: now, nat: w.nat, nodeId: this.nodeId,
          }
          if (i >= 0) next[i] = nb
          else next.push(nb)
        }
        if (next.length > maxContacts) {
          // Beyond max_contacts the least recently refreshed go (the ones of this request are newest).
          next.sort((a, b) => a.updatedAt - b.updatedAt)
          out.dropped = next.length - maxContacts
          next.splice(0, out.dropped)
        }
        return next
      })
      if (out.aborted) {
        this.counters.outOfOrder++
        // §10.3 step 7: "If not, the update MUST be aborted and the request fails" (step 8: 500).
        this.reject(tx, 500, 'Server Internal Error (out of order CSeq for this Call-ID)')
        return
      }
      this.counters.bindingsAdded += out.added
      this.counters.bindingsRefreshed += out.refreshed
      this.counters.bindingsRemoved += out.removed
      this.counters.bindingsDropped += out.dropped
      if (bindings.length === 0) this.counters.unregistered++
      else this.counters.registered++
      for (const w of wanted) if (w.nat && w.expiresS > 0) this.counters.natBindings++
      if (this.natObserver !== null) {
        try { this.natObserver(aor, bindings, callId, cseq) } catch (err) { this.log.warn('registrar: nat observer failed', { err: String(err) }) }
      }
    }
    this.ok(tx, bindings, supported.has('path') ? path : [], outboundUsed)
  }

  /** §10.3 step 8: 200 with every current binding and its remaining time, plus Date. */
  private ok(tx: ServerTransaction, bindings: Binding[], path: string[], outbound: boolean): void {
    const now = this.now()
    const headers: Array<[string, string]> = []
    for (const b of bindings) {
      const left = Math.max(0, Math.ceil((b.expires - now) / 1000))
      if (left > 0) headers.push(['Contact', contactValue(b.contact, left, b.q, b.instance, b.regId)])
    }
    // RFC 3327 §5.3: the Path values are echoed only to a UA that supports them.
    if (path.length > 0) headers.push(['Path', path.join(', ')])
    // RFC 5626 §6: "include the 'outbound' option-tag in a Require header field of the response".
    if (outbound) headers.push(['Require', 'outbound'])
    headers.push(['Supported', 'path, outbound'])
    headers.push(['Date', this.dateHeader(now)])
    for (const h of this.serverHeader) headers.push(h)
    tx.respond(200, 'OK', { headers })
  }

  /** RFC 3261 §20.17 Date (whole seconds), formatted once a second, not once per REGISTER. */
  private dateHeader(now: number): string {
    const sec = Math.floor(now / 1000)
    if (sec !== this.dateSec) {
      this.dateSec = sec
      this.dateText = new Date(sec * 1000).toUTCString()
    }
    return this.dateText
  }

  private reject(tx: ServerTransaction, status: number, reason: string, extra?: Array<[string, string]>): void {
    if (status !== 401 && status !== 423) this.counters.rejected++
    const headers = extra !== undefined ? [...extra, ...this.serverHeader] : this.serverHeader
    tx.respond(status, reason, headers.length > 0 ? { headers } : undefined)
  }

  /** The store failed (Redis down, LMDB error): 503 with Retry-After, logged at most every 10 s. */
  private failed(tx: ServerTransaction, err: unknown): void {
    this.counters.storeErrors++
    const code = (err as { code?: string } | null)?.code
    const unavailable = code === 'ERR_STORE_UNAVAILABLE' || code === 'ERR_STORE_CLOSED'
    this.outageLog('registrar: REGISTER failed: store error', code, err)
    try {
      if (unavailable) this.reject(tx, 503, 'Service Unavailable (location store)', [['Retry-After', '5']])
      else this.reject(tx, 500, 'Server Internal Error (location store)', [['Retry-After', '5']])
    } catch { /* transaction already gone */ }
  }

  private outageLog(msg: string, code: string | undefined, err: unknown): void {
    const now = Date.now()
    if (now - this.lastOutageLog < OUTAGE_LOG_EVERY_MS) { this.suppressed++; return }
    this.log.warn(msg, { code, message: (err as Error | null)?.message, worker: this.workerIndex, suppressed: this.suppressed })
    this.lastOutageLog = now
    this.suppressed = 0
  }

  // ================================================================================ lookup

  lookup(req: SipMessage): Target[] | LookupFailure | Promise<Target[] | LookupFailure> {
    this.counters.lookups++
    let u: SipUri
    try { u = req.requestUri } catch { return NOT_FOUND }
    const host = u.host.toLowerCase()
    const aor = aorOf(u)
    if (aor === null || !this.isOurDomain(host)) { this.counters.lookupMisses++; return NOT_FOUND }
    // no binding can exist for it (REGISTER refuses it): the Request-URI is the client's error
    if (tooLong(aor)) { this.counters.lookupMisses++; return URI_TOO_LONG }
    return this.location.get(aor).then(
      bs => {
        if (bs.length === 0) return this.miss()
        // a binding stamped by a node this worker has not seen yet (it registered there within
        // a heartbeat of that node's start): read the live view once before judging it gone
        const refresh = this.refreshOwners(bs)
        if (refresh !== null) return refresh.then(() => this.found(bs, req))
        return this.found(bs, req)
      },
      (err: unknown) => {
        this.counters.lookupErrors++
        this.outageLog('registrar: lookup failed: store error', (err as { code?: string } | null)?.code, err)
        return LOOKUP_DOWN
      },
    )
  }

  private refreshOwners(bs: readonly Binding[]): Promise<void> | null {
    const cluster = this.cluster
    if (cluster === null) return null
    for (const b of bs) {
      if (b.nodeId === undefined || b.nodeId === this.nodeId) continue
      const p = cluster.refreshFor(b.nodeId)
      if (p !== null) return p
    }
    return null
  }

  private found(bs: Binding[], req: SipMessage): Target[] | LookupFailure {
    const t = this.targets(bs, req)
    // every binding was bound to the connection of a node that is gone (issue 15): 480
    return t.length > 0 ? t : this.miss()
  }

  /**
   * No live binding for a user of our domains: 480, whether or not the user exists (issue "Safe
   * on a public address" 8: 480 for auth users and 404 for the rest let a scanner enumerate the
   * users through `lookup`). RFC 3261 §21.4.18 480: "the callee is currently unavailable (for
   * example, is not logged in ...)", true of every user without a registration; §21.4.5 404 says
   * "definitive information that the user does not exist", which we choose not to give. No user
   * lookup either, so the answer takes the same time for both.
   */
  private miss(): LookupFailure {
    this.counters.lookupMisses++
    return UNAVAILABLE
  }

  /**
   * Targets in q order (highest first; the most recently refreshed first among equals), by the
   * rule of docs/nat.md "Registrations":
   * - Path: the first Path URI, with the Path set as Route (RFC 3327 §5.3);
   * - RFC 5626 Outbound (reg-id), or a UA behind NAT (`nat.fix_contact`): only over the flow the
   *   REGISTER came on — its source address and port for UDP, the very connection for streams; no
   *   new connection is ever opened towards it. When that flow is gone the next binding is tried,
   *   the last one answers 480 (430 Flow Failed for Outbound, RFC 5626 §5.3);
   * - a UA not behind NAT: its Contact (RFC 3261 §10, §16.5), also when the REGISTER came from
   *   another port or host (third-party registration, §10.2). A WebSocket peer cannot be reached
   *   by a new connection (we are no WS client): its flow. A TCP/TLS peer whose Contact host is the
   *   address it registered from: first over its connection (RFC 5923 reuse), then its Contact.
   */
  targets(bs: Binding[], req?: SipMessage): Target[] {
    this.counters.lookupHits++
    const sorted = bs.length > 1 ? bs.slice().sort((a, b) => b.q - a.q || b.updatedAt - a.updatedAt) : bs
    const fix = this.config.nat.fix_contact
    const out: Target[] = []
    const cluster = this.cluster
    let relayedTo: Set<string> | null = null
    for (const b of sorted) {
      if (b.path.length > 0) {
        out.push({ uri: uriOfRouteValue(b.path[0]!), requestUri: b.contact, headers: [['Route', b.path.join(', ')]] })
        continue
      }
      const r = b.received
      const outbound = b.regId !== undefined
      // ---- issue 15: a stream binding another node accepted: its connection is on that node.
      // While the node lives the request is relayed to it (once per node: it looks the AOR up
      // itself); once its liveness key expired, what only its connection reached is skipped.
      if (cluster !== null && req !== undefined && b.nodeId !== undefined && b.nodeId !== this.nodeId && STREAMS.has(r.transport) && r.connId !== 0) {
        const relay = cluster.isRelayed(req) ? null : cluster.ownerRelay(b.nodeId, req)
        if (relay !== null) {
          relayedTo ??= new Set()
          if (!relayedTo.has(b.nodeId)) { relayedTo.add(b.nodeId); out.push(relay) }
          continue
        }
        this.counters.lookupOwnerGone++
        if (outbound || (fix && this.isNatBinding(b)) || r.transport === 'ws' || r.transport === 'wss') continue
        out.push({ uri: b.contact, requestUri: b.contact })
        continue
      }
      if (outbound || (fix && this.isNatBinding(b))) {
        out.push({ uri: b.contact, requestUri: b.contact, flow: flowOf(r), failStatus: outbound ? 430 : 480 })
        continue
      }
      if (r.transport === 'ws' || r.transport === 'wss') {
        out.push({ uri: b.contact, requestUri: b.contact, flow: flowOf(r), failStatus: 480 })
        continue
      }
      if (STREAMS.has(r.transport) && r.connId !== 0 && hostOf(b.contact) === r.address) {
        out.push({ uri: b.contact, requestUri: b.contact, flow: flowOf(r) })
      }
      out.push({ uri: b.contact, requestUri: b.contact })
    }
    return out
  }

  /**
   * The binding was written from behind NAT. Records from before the flag (nat undefined) are
   * judged on what they hold: a private Contact host, or a Contact host that is not the address
   * the REGISTER came from.
   */
  isNatBinding(b: Pick<Binding, 'contact' | 'received'> & { nat?: boolean | undefined }): boolean {
    if (b.nat !== undefined) return b.nat
    const h = hostOf(b.contact)
    return h === null || this.detector.isPrivate(h) || h !== b.received.address
  }

  /** Stored AORs, a page at a time (the nat module rebuilds its keep-alives from them at start). */
  listBindings(cursor: string | null, limit: number): Promise<{ items: Array<{ aor: string; bindings: Binding[] }>; cursor: string | null }> {
    return this.location.list(cursor, limit)
  }

  /**
   * Removes one binding (by `bindingKey`) only if it is still the one written by the REGISTER
   * with this Call-ID and CSeq (a refresh meanwhile keeps it). Resolves true when removed.
   */
  async removeIfUnchanged(aor: string, key: string, callId: string, cseq: number): Promise<boolean> {
    let removed = false
    await this.location.update(aor, current => {
      removed = false
      const i = current.findIndex(b => bindingKey(b) === key && b.callId === callId && b.cseq === cseq)
      if (i < 0) return null
      removed = true
      const next = current.slice()
      next.splice(i, 1)
      return next
    })
    if (removed) this.counters.natRemoved++
    return removed
  }

  // ================================================================================ misc

  private isOurDomain(host: string): boolean {
    return this.domains.size === 0 || this.domains.has(host)
  }

  /** A new configuration (expiry limits, domains). Auth users are the auth module's (reloaded there). */
  applyConfig(config: FrozenConfig): void {
    this.config = config
    this.detector = new NatDetector(config.nat.private_networks)
    this.domains = new Set(config.domains.map(d => d.toLowerCase()))
    this.serverHeader = config.proxy.server_header === null ? [] : [['Server', config.proxy.server_header]]
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    if (this.ownsStores) await this.stores.close?.()
  }
}


function flowOf(r: Binding['received']): Destination {
  const flow: Destination = { transport: r.transport as Destination['transport'], address: r.address, port: r.port, socketId: r.socketId }
  if (STREAMS.has(r.transport) && r.connId !== 0) flow.connId = r.connId
  return flow
}

/** The host of a stored Contact (brackets removed), or null when it does not parse. */
function hostOf(contact: string): string | null {
  try {
    const h = parseUri(contact).host
    return h.length > 1 && h.charCodeAt(0) === 0x5b ? h.slice(1, -1) : h
  } catch {
    return null
  }
}
