import { Redis, type RedisOptions } from 'ioredis'
import { checkBinding, checkDialog, checkKey, decodeBindings, decodeDialog, encodeBindings, encodeDialog } from './codec.js'
import { StoreError, StoreErrorCode } from './errors.js'
import { Listeners } from './listeners.js'
import type { AorBindings, Binding, Dialog, DialogStore, LocationStore, Page } from './types.js'
import { UpdateBasedLocationStore, type Backend, type BackendOptions } from './backend.js'
import type { ParsedStoreUrl } from './url.js'
import { BAN_SWEEP, CTR_INCR, DLG_DEL, DLG_PUT, DLG_SWEEP, DLG_TOUCH, LOC_CAS, type Call, type Client } from './redis-scripts.js'
import { RedisBanStore, RedisClusterStore, RedisCounterStore, RedisCredentialStore } from './redis-stores.js'

// Layout and scripts: redis-scripts.ts. This file: the backend (one ioredis client, outage
// mapping, RTT observation), the location store and the dialog store.

// Replies that mean "not now" rather than "wrong": treat them as an outage.
const TRANSIENT_REPLY = /^(LOADING|BUSY|MASTERDOWN|READONLY|CLUSTERDOWN|TRYAGAIN|NOREPLICAS)/

let tokenSeq = 0
const tokenBase = Math.random().toString(36).slice(2, 10)
function newToken(): string {
  tokenSeq = (tokenSeq + 1) % 0x7fffffff
  return `${tokenBase}${Date.now().toString(36)}${tokenSeq.toString(36)}`
}

export class RedisBackend implements Backend {
  readonly kind = 'redis' as const
  readonly location: RedisLocationStore
  readonly dialogs: RedisDialogStore
  readonly bans: RedisBanStore
  readonly credentials: RedisCredentialStore
  readonly counters: RedisCounterStore
  readonly cluster: RedisClusterStore
  readonly client: Client
  private available = false
  private closed = false
  private lastError: Error | undefined
  private readonly where: string

  constructor(url: Extract<ParsedStoreUrl, { backend: 'redis' }>, private readonly opts: BackendOptions) {
    this.where = `${url.host}:${url.port}/${url.db}`
    const ro: RedisOptions = {
      host: url.host,
      port: url.port,
      db: url.db,
      lazyConnect: true,
      // Fail fast during an outage instead of queueing: callers get ERR_STORE_UNAVAILABLE.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: opts.commandTimeoutMs,
      connectTimeout: Math.max(opts.commandTimeoutMs, 1000),
      // Reconnect for ever, backing off to one attempt per second.
      retryStrategy: (times: number) => Math.min(50 * times, 1000),
      autoResubscribe: false,
      enableAutoPipelining: true,
    }
    if (url.sentinels !== undefined && url.sentinelName !== undefined) {
      // issue 15: Sentinel-aware through ioredis's own support (it finds the primary, and finds
      // it again after a failover); host/port above are ignored by ioredis then.
      ro.sentinels = url.sentinels
      ro.name = url.sentinelName
      this.where = `sentinel ${url.sentinels.map(s => `${s.host}:${s.port}`).join(',')}/${url.sentinelName}/${url.db}`
    }
    if (url.username) ro.username = url.username
    if (url.password) ro.password = url.password
    if (url.tls) ro.tls = {}
    const client = new Redis(ro) as Client
    this.client = client
    client.defineCommand('sipedgeLocCas', { numberOfKeys: 4, lua: LOC_CAS })
    client.defineCommand('sipedgeDlgPut', { numberOfKeys: 3, lua: DLG_PUT })
    client.defineCommand('sipedgeDlgDel', { numberOfKeys: 3, lua: DLG_DEL })
    client.defineCommand('sipedgeDlgTouch', { numberOfKeys: 2, lua: DLG_TOUCH })
    client.defineCommand('sipedgeDlgSweep', { numberOfKeys: 3, lua: DLG_SWEEP })
    client.defineCommand('sipedgeBanSweep', { numberOfKeys: 1, lua: BAN_SWEEP })
    client.defineCommand('sipedgeCtrIncr', { numberOfKeys: 1, lua: CTR_INCR })
    // ioredis emits 'error' for every failed connection attempt: always handled here, so an
    // outage never becomes an unhandled 'error' event.
    client.on('error', (err: Error) => {
      this.lastError = err
    })
    client.on('ready', () => this.setAvailable(true))
    client.on('close', () => this.setAvailable(false))
    client.on('end', () => this.setAvailable(false))
    const p = opts.keyPrefix
    const call = <T>(fn: (c: Client) => Promise<T>): Promise<T> => this.call(fn)
    this.location = new RedisLocationStore(p, call, opts)
    this.dialogs = new RedisDialogStore(p, call, opts)
    this.bans = new RedisBanStore(p, call, opts)
    this.credentials = new RedisCredentialStore(p, call)
    this.counters = new RedisCounterStore(p, call, opts)
    this.cluster = new RedisClusterStore(p, call, opts)
  }

  private setAvailable(up: boolean): void {
    if (this.closed || up === this.available) return
    this.available = up
    if (up) this.lastError = undefined
    this.opts.status(up ? 'available' : 'unavailable', up ? undefined : this.unavailable())
  }

  private unavailable(cause?: unknown): StoreError {
    const why = (cause as Error | undefined)?.message ?? this.lastError?.message ?? `connection ${this.client.status}`
    return new StoreError(StoreErrorCode.UNAVAILABLE, `Redis at ${this.where} is unavailable: ${why}`, { cause: cause ?? this.lastError })
  }

  /** Connects, waiting at most connectTimeoutMs; reconnection after that is automatic. */
  async connect(): Promise<void> {
    const timeoutMs = this.opts.connectTimeoutMs
    let timer: NodeJS.Timeout | undefined
    const ready = new Promise<void>((resolve, reject) => {
      if (this.client.status === 'ready') return resolve()
      this.client.once('ready', resolve)
      timer = setTimeout(() => reject(this.unavailable()), timeoutMs)
    })
    this.client.connect().catch((err: Error) => {
      this.lastError = err
    })
    try {
      await ready
    } catch (err) {
      this.closed = true
      this.client.disconnect()
      throw err
    } finally {
      clearTimeout(timer)
    }
  }

  isAvailable(): boolean {
    return this.available && !this.closed
  }

  async call<T>(fn: (c: Client) => Promise<T>): Promise<T> {
    if (this.closed) throw new StoreError(StoreErrorCode.CLOSED, 'the store is closed')
    if (this.client.status !== 'ready') { this.observe(-1, false); throw this.unavailable() }
    const t0 = this.opts.onCommand !== undefined ? performance.now() : 0
    try {
      const r = await fn(this.client)
      if (t0 !== 0) this.observe(t0, true)
      return r
    } catch (err) {
      this.observe(t0, false)
      if (err instanceof StoreError) throw err
      const e = err as Error
      if (e?.name === 'ReplyError' && !TRANSIENT_REPLY.test(e.message)) {
        throw new StoreError(StoreErrorCode.BACKEND, `Redis at ${this.where} refused a command: ${e.message}`, { cause: e })
      }
      throw this.unavailable(e)
    }
  }

  /** Metrics hook (issue 15): round trip since `t0` (performance.now()), or only the failure. */
  private observe(t0: number, ok: boolean): void {
    const cb = this.opts.onCommand
    if (cb === undefined) return
    try { cb(ok && t0 > 0 ? (performance.now() - t0) / 1000 : 0, ok) } catch { /* a metrics bug must not break the store */ }
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.available = false
    try {
      if (this.client.status === 'ready') await this.client.quit()
      else this.client.disconnect()
    } catch {
      this.client.disconnect()
    }
  }
}


function minExpires(list: readonly Binding[]): number {
  let m = Infinity
  for (const b of list) if (b.expires < m) m = b.expires
  return m
}
function maxExpires(list: readonly Binding[]): number {
  let m = 0
  for (const b of list) if (b.expires > m) m = b.expires
  return m
}

const MAX_ATTEMPTS = 32

export class RedisLocationStore extends UpdateBasedLocationStore implements LocationStore {
  private readonly expired = new Listeners<AorBindings>()
  private readonly now: () => number
  private readonly kExp: string
  private readonly kIdx: string
  private readonly kStats: string
  /** Updates of one AOR from this process run one after another: conflicts stay rare. */
  private readonly queues = new Map<string, Promise<unknown>>()

  constructor(private readonly p: string, private readonly call: Call, private readonly opts: BackendOptions) {
    super()
    this.now = opts.now
    this.kExp = `${p}loc:exp`
    this.kIdx = `${p}loc:idx`
    this.kStats = `${p}loc:stats`
  }

  private key(aor: string): string {
    return `${this.p}loc:b:${aor}`
  }

  async get(aor: string): Promise<Binding[]> {
    checkKey('aor', aor)
    const d = await this.call(c => c.hgetBuffer(this.key(aor), 'd'))
    const now = this.now()
    return decodeBindings(aor, d).filter(b => b.expires > now)
  }

  private serial<T>(aor: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.queues.get(aor) ?? Promise.resolve()
    const run = prev.then(fn, fn)
    const tail = run.catch(() => undefined)
    this.queues.set(aor, tail)
    void tail.then(() => {
      if (this.queues.get(aor) === tail) this.queues.delete(aor)
    })
    return run
  }

  /**
   * Optimistic read-modify-write of one AOR. `fn` sees every stored binding (expired ones
   * included) and returns the new set or null for "no change".
   */
  private mutate(aor: string, fn: (all: Binding[], now: number) => Binding[] | null): Promise<{ prev: Binding[]; next: Binding[] | null }> {
    checkKey('aor', aor)
    const key = this.key(aor)
    return this.serial(aor, async () => {
      for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        const [d, v] = await this.call(c => c.hmgetBuffer(key, 'd', 'v'))
        const now = this.now()
        const prev = decodeBindings(aor, d)
        const next = fn(prev, now)
        if (next === null) return { prev, next: null }
        const n = next.length
        const res = await this.call(c => c.sipedgeLocCas(
          key, this.kExp, this.kIdx, this.kStats,
          aor, v ? v.toString('latin1') : '', n ? encodeBindings(next) : '', n,
          n ? minExpires(next) : 0, n ? maxExpires(next) + this.opts.graceMs : 0, newToken(),
        ))
        if (res === 1) return { prev, next }
        // Another node changed the AOR between read and write: back off a little and retry.
        await new Promise(r => setTimeout(r, Math.random() * Math.min(2 * attempt, 20)))
      }
      throw new StoreError(StoreErrorCode.CONFLICT, `update of ${aor} lost ${MAX_ATTEMPTS} races in a row`)
    })
  }

  override async update(aor: string, fn: (current: Binding[]) => Binding[] | null): Promise<Binding[]> {
    let live: Binding[] = []
    const r = await this.mutate(aor, (all, now) => {
      live = all.filter(b => b.expires > now)
      const out = fn(live.slice())
      if (out === null) return null
      return out.map(b => checkBinding(aor, b, this.opts.nodeId)).filter(b => b.expires > now)
    })
    return r.next ?? live
  }

  async count(): Promise<{ aors: number; bindings: number }> {
    const [a, b] = await this.call(c => c.hmget(this.kStats, 'aors', 'bindings'))
    return { aors: Math.max(0, Number(a ?? 0)), bindings: Math.max(0, Number(b ?? 0)) }
  }

  async list(cursor: string | null, limit: number): Promise<Page<AorBindings>> {
    const aors = await this.call(c => c.zrangebylex(this.kIdx, cursor === null ? '-' : `(${cursor}`, '+', 'LIMIT', 0, limit + 1))
    const more = aors.length > limit
    const page = more ? aors.slice(0, limit) : aors
    const data = await this.call(c => Promise.all(page.map(aor => c.hgetBuffer(this.key(aor), 'd'))))
    const now = this.now()
    const items: AorBindings[] = []
    for (let i = 0; i < page.length; i++) {
      const bindings = decodeBindings(page[i]!, data[i]).filter(b => b.expires > now)
      if (bindings.length > 0) items.push({ aor: page[i]!, bindings })
    }
    return { items, cursor: more ? page[page.length - 1]! : null }
  }

  async sweepExpired(now = this.now(), max = 1000): Promise<number> {
    const due = await this.call(c => c.zrangebyscore(this.kExp, '-inf', now, 'LIMIT', 0, max))
    if (due.length === 0) return 0
    const results = await Promise.all(due.map(aor => this.mutate(aor, all => all.filter(b => b.expires > now))))
    let n = 0
    for (let i = 0; i < due.length; i++) {
      const gone = results[i]!.prev.filter(b => b.expires <= now)
      if (gone.length === 0) continue
      n += gone.length
      this.expired.emit({ aor: due[i]!, bindings: gone })
    }
    return n
  }

  onExpired(listener: (e: AorBindings) => void): () => void {
    return this.expired.add(listener)
  }
}

export class RedisDialogStore implements DialogStore {
  private readonly expired = new Listeners<Dialog>()
  private readonly now: () => number
  private readonly kExp: string
  private readonly kCnt: string
  private readonly kPrefix: string

  constructor(p: string, private readonly call: Call, private readonly opts: BackendOptions) {
    this.now = opts.now
    this.kExp = `${p}dlg:exp`
    this.kCnt = `${p}dlg:cnt`
    this.kPrefix = `${p}dlg:d:`
  }

  async get(id: string): Promise<Dialog | null> {
    const [d, e, l] = await this.call(c => c.hmgetBuffer(this.kPrefix + id, 'd', 'e', 'l'))
    if (!d) return null
    const dlg = decodeDialog(id, d)
    if (e) dlg.expiresAt = Number(e.toString())
    if (l) dlg.lastActivity = Number(l.toString())
    return dlg.expiresAt > this.now() ? dlg : null
  }

  async put(dialog: Dialog): Promise<void> {
    const d = checkDialog(dialog, this.opts.nodeId)
    checkKey('dialog id', d.id)
    await this.call(c => c.sipedgeDlgPut(
      this.kPrefix + d.id, this.kExp, this.kCnt,
      d.id, encodeDialog(d), d.setName, d.destination, d.state === 'terminated' ? '0' : '1',
      d.expiresAt, d.expiresAt + this.opts.graceMs, d.lastActivity,
    ))
  }

  async remove(id: string): Promise<boolean> {
    return (await this.call(c => c.sipedgeDlgDel(this.kPrefix + id, this.kExp, this.kCnt, id))) === 1
  }

  async touch(id: string, expiresAt?: number, lastActivity?: number): Promise<boolean> {
    const now = this.now()
    const r = await this.call(c => c.sipedgeDlgTouch(
      this.kPrefix + id, this.kExp, id, lastActivity ?? now, expiresAt ?? '', now, this.opts.graceMs,
    ))
    return r === 1
  }

  async countBySet(setName: string): Promise<number> {
    return Number((await this.call(c => c.hget(this.kCnt, `s:${setName}`))) ?? 0)
  }

  async countByDestination(destination: string): Promise<number> {
    return Number((await this.call(c => c.hget(this.kCnt, `d:${destination}`))) ?? 0)
  }

  async count(): Promise<number> {
    return Number((await this.call(c => c.hget(this.kCnt, 'n'))) ?? 0)
  }

  async sweepExpired(now = this.now(), max = 1000): Promise<number> {
    const flat = await this.call(c => c.sipedgeDlgSweepBuffer(this.kExp, this.kExp, this.kCnt, now, max, this.kPrefix))
    let n = 0
    for (let i = 0; i + 3 < flat.length; i += 4) {
      n++
      if (this.expired.size === 0) continue
      const dlg = decodeDialog(flat[i]!.toString(), flat[i + 1]!)
      dlg.expiresAt = Number(flat[i + 2]!.toString())
      dlg.lastActivity = Number(flat[i + 3]!.toString())
      this.expired.emit(dlg)
    }
    return n
  }

  onExpired(listener: (d: Dialog) => void): () => void {
    return this.expired.add(listener)
  }
}
