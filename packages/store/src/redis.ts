import { Redis, type RedisOptions } from 'ioredis'
import {
  checkBinding, checkCounter, checkDialog, checkKey, decodeBan, decodeBindings, decodeCredential, decodeDialog,
  encodeBan, encodeBindings, encodeCredential, encodeDialog,
} from './codec.js'
import { StoreError, StoreErrorCode } from './errors.js'
import { Listeners } from './listeners.js'
import type {
  AorBindings, Ban, BanStore, Binding, CounterStore, Credential, CredentialStore, Dialog, DialogStore, LocationStore, Page,
} from './types.js'
import { UpdateBasedLocationStore, type Backend, type BackendOptions } from './backend.js'
import type { ParsedStoreUrl } from './url.js'

// Layout (P = key prefix, default 'sipedge:'); single Redis instance (scripts touch keys they
// compute, so Redis Cluster is not supported):
//   P loc:b:<aor>   hash d = msgpack bindings, v = write token (CAS), n = binding count; PEXPIREAT last expiry + grace
//   P loc:exp       zset aor -> earliest expiry of the AOR   (the sweep reads its head only)
//   P loc:idx       zset aor, all scores 0                    (ZRANGEBYLEX paging for the admin API)
//   P loc:stats     hash aors, bindings
//   P dlg:d:<id>    hash d = msgpack dialog, s = set, u = destination, a = counted (1/0), e = expiresAt, l = lastActivity
//   P dlg:exp       zset id -> expiresAt
//   P dlg:cnt       hash n, s:<set>, d:<destination>
//   P ban:k:<key>   string msgpack ban; PEXPIREAT until + grace
//   P ban:exp       zset key -> until
//   P cred:<realm>  hash user -> msgpack credential
//   P ctr:<key>     hash n = value, e = window end (epoch ms); PEXPIREAT e + min(grace, 60 s)
// Every multi-key change runs in one Lua script, so it is atomic; a location update is an
// optimistic read / compare-and-set (a random write token in field v) retried on conflict.

const LOC_CAS = `
local cur = redis.call('HGET', KEYS[1], 'v') or ''
if cur ~= ARGV[2] then return -1 end
local oldn = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
local existed = redis.call('ZSCORE', KEYS[3], ARGV[1])
local n = tonumber(ARGV[4])
if n == 0 then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  if existed then redis.call('HINCRBY', KEYS[4], 'aors', -1) end
else
  redis.call('HSET', KEYS[1], 'd', ARGV[3], 'v', ARGV[7], 'n', n)
  redis.call('PEXPIREAT', KEYS[1], ARGV[6])
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
  redis.call('ZADD', KEYS[3], 0, ARGV[1])
  if not existed then redis.call('HINCRBY', KEYS[4], 'aors', 1) end
end
if n ~= oldn then redis.call('HINCRBY', KEYS[4], 'bindings', n - oldn) end
return 1
`

const DLG_COMMON = `
local function add(field, delta)
  local n = redis.call('HINCRBY', KEYS[3], field, delta)
  if n <= 0 then redis.call('HDEL', KEYS[3], field) end
end
`

// KEYS: dialog, exp, cnt  ARGV: id, data, set, dest, active, expiresAt, pexpireat, lastActivity
const DLG_PUT = DLG_COMMON + `
local old = redis.call('HMGET', KEYS[1], 's', 'u', 'a')
if old[3] == '1' then add('s:' .. old[1], -1); add('d:' .. old[2], -1) end
if not old[3] then add('n', 1) end
redis.call('HSET', KEYS[1], 'd', ARGV[2], 's', ARGV[3], 'u', ARGV[4], 'a', ARGV[5], 'e', ARGV[6], 'l', ARGV[8])
redis.call('PEXPIREAT', KEYS[1], ARGV[7])
redis.call('ZADD', KEYS[2], ARGV[6], ARGV[1])
if ARGV[5] == '1' then add('s:' .. ARGV[3], 1); add('d:' .. ARGV[4], 1) end
return 1
`

// KEYS: dialog, exp, cnt  ARGV: id
const DLG_DEL = DLG_COMMON + `
local old = redis.call('HMGET', KEYS[1], 's', 'u', 'a')
redis.call('ZREM', KEYS[2], ARGV[1])
if not old[3] then return 0 end
if old[3] == '1' then add('s:' .. old[1], -1); add('d:' .. old[2], -1) end
add('n', -1)
redis.call('DEL', KEYS[1])
return 1
`

// KEYS: dialog, exp  ARGV: id, lastActivity, expiresAt or '', now, grace
const DLG_TOUCH = `
local e = redis.call('HGET', KEYS[1], 'e')
if not e or tonumber(e) <= tonumber(ARGV[4]) then return 0 end
local ne = e
if ARGV[3] ~= '' then ne = ARGV[3] end
redis.call('HSET', KEYS[1], 'l', ARGV[2], 'e', ne)
redis.call('ZADD', KEYS[2], ne, ARGV[1])
redis.call('PEXPIREAT', KEYS[1], tonumber(ne) + tonumber(ARGV[5]))
return 1
`

// KEYS: exp, (unused), cnt  ARGV: now, max, key prefix  -> flat [id, d, e, l, ...]
const DLG_SWEEP = DLG_COMMON + `
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  local k = ARGV[3] .. id
  local h = redis.call('HMGET', k, 'd', 's', 'u', 'a', 'e', 'l')
  redis.call('ZREM', KEYS[1], id)
  if h[4] then
    if h[4] == '1' then add('s:' .. h[2], -1); add('d:' .. h[3], -1) end
    add('n', -1)
    redis.call('DEL', k)
    out[#out + 1] = id
    out[#out + 1] = h[1]
    out[#out + 1] = h[5]
    out[#out + 1] = h[6]
  end
end
return out
`

// KEYS: exp  ARGV: now, max, key prefix  -> flat [key, data, ...]
const BAN_SWEEP = `
local keys = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, key in ipairs(keys) do
  local k = ARGV[3] .. key
  local d = redis.call('GET', k)
  redis.call('ZREM', KEYS[1], key)
  redis.call('DEL', k)
  out[#out + 1] = key
  out[#out + 1] = d or ''
end
return out
`

// KEYS: counter  ARGV: now, window, by, pexpire margin  -> the new value
const CTR_INCR = `
local now = tonumber(ARGV[1])
local e = tonumber(redis.call('HGET', KEYS[1], 'e') or '0')
if e > now then return redis.call('HINCRBY', KEYS[1], 'n', ARGV[3]) end
e = now + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'n', ARGV[3], 'e', e)
redis.call('PEXPIREAT', KEYS[1], e + tonumber(ARGV[4]))
return tonumber(ARGV[3])
`

type Args = Array<string | number | Buffer>
interface Scripts {
  sipedgeLocCas(...args: Args): Promise<number>
  sipedgeDlgPut(...args: Args): Promise<number>
  sipedgeDlgDel(...args: Args): Promise<number>
  sipedgeDlgTouch(...args: Args): Promise<number>
  sipedgeDlgSweepBuffer(...args: Args): Promise<Buffer[]>
  sipedgeBanSweepBuffer(...args: Args): Promise<Buffer[]>
  sipedgeCtrIncr(...args: Args): Promise<number>
}
type Client = Redis & Scripts

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

type Call = <T>(fn: (c: Client) => Promise<T>) => Promise<T>

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

export class RedisBanStore implements BanStore {
  private readonly expired = new Listeners<Ban>()
  private readonly now: () => number
  private readonly kExp: string
  private readonly kPrefix: string

  constructor(p: string, private readonly call: Call, private readonly opts: BackendOptions) {
    this.now = opts.now
    this.kExp = `${p}ban:exp`
    this.kPrefix = `${p}ban:k:`
  }

  async ban(key: string, until: number, reason: string): Promise<void> {
    checkKey('ban key', key)
    if (typeof until !== 'number' || !Number.isFinite(until)) throw new StoreError(StoreErrorCode.BAD_VALUE, 'ban until must be an epoch-ms number')
    const data = encodeBan({ key, until, reason: String(reason ?? ''), createdAt: this.now() })
    const k = this.kPrefix + key
    await this.call(async c => {
      const r = await c.multi().set(k, data).pexpireat(k, until + this.opts.graceMs).zadd(this.kExp, until, key).exec()
      for (const [err] of r ?? []) if (err) throw err
    })
  }

  async get(key: string): Promise<Ban | null> {
    const d = await this.call(c => c.getBuffer(this.kPrefix + key))
    if (!d) return null
    const b = decodeBan(key, d)
    return b.until > this.now() ? b : null
  }

  async isBanned(key: string): Promise<boolean> {
    return (await this.get(key)) !== null
  }

  async list(limit = 1000): Promise<Ban[]> {
    const now = this.now()
    const keys = await this.call(c => c.zrangebyscore(this.kExp, `(${now}`, '+inf', 'LIMIT', 0, limit))
    if (keys.length === 0) return []
    const data = await this.call(c => c.mgetBuffer(...keys.map(k => this.kPrefix + k)))
    const out: Ban[] = []
    for (let i = 0; i < keys.length; i++) {
      const d = data[i]
      if (d) out.push(decodeBan(keys[i]!, d))
    }
    return out
  }

  async remove(key: string): Promise<boolean> {
    const k = this.kPrefix + key
    const r = await this.call(async c => c.multi().getBuffer(k).del(k).zrem(this.kExp, key).exec())
    const d = r?.[0]?.[1] as Buffer | null | undefined
    return d ? decodeBan(key, d).until > this.now() : false
  }

  async sweepExpired(now = this.now(), max = 1000): Promise<number> {
    const flat = await this.call(c => c.sipedgeBanSweepBuffer(this.kExp, now, max, this.kPrefix))
    let n = 0
    for (let i = 0; i + 1 < flat.length; i += 2) {
      n++
      const key = flat[i]!.toString()
      const d = flat[i + 1]!
      this.expired.emit(d.length > 0 ? decodeBan(key, d) : { key, until: 0, reason: '', createdAt: 0 })
    }
    return n
  }

  onExpired(listener: (b: Ban) => void): () => void {
    return this.expired.add(listener)
  }
}

export class RedisCredentialStore implements CredentialStore {
  constructor(private readonly p: string, private readonly call: Call) {}
  async get(realm: string, user: string): Promise<Credential | null> {
    const d = await this.call(c => c.hgetBuffer(`${this.p}cred:${realm}`, user))
    return d ? decodeCredential(d) : null
  }
  async put(realm: string, user: string, credential: Credential): Promise<void> {
    checkKey('realm', realm)
    checkKey('user', user)
    await this.call(c => c.hset(`${this.p}cred:${realm}`, user, encodeCredential(credential)))
  }
  async remove(realm: string, user: string): Promise<boolean> {
    return (await this.call(c => c.hdel(`${this.p}cred:${realm}`, user))) > 0
  }
}

/** Counters a node's clock (opts.now) windows; the key itself expires shortly after its window. */
export class RedisCounterStore implements CounterStore {
  private readonly now: () => number
  private readonly kPrefix: string
  /** How long a key outlives its window (clock skew between nodes), at most the grace. */
  private readonly margin: number

  constructor(p: string, private readonly call: Call, opts: BackendOptions) {
    this.now = opts.now
    this.kPrefix = `${p}ctr:`
    this.margin = Math.min(opts.graceMs, 60_000)
  }

  async incr(key: string, windowMs: number, by = 1): Promise<number> {
    checkCounter(key, windowMs, by)
    return Number(await this.call(c => c.sipedgeCtrIncr(this.kPrefix + key, this.now(), windowMs, by, this.margin)))
  }

  async get(key: string): Promise<number> {
    checkKey('counter key', key)
    const [n, e] = await this.call(c => c.hmget(this.kPrefix + key, 'n', 'e'))
    return e !== null && e !== undefined && Number(e) > this.now() ? Number(n ?? 0) : 0
  }

  async reset(key: string): Promise<boolean> {
    checkKey('counter key', key)
    const k = this.kPrefix + key
    const r = await this.call(async c => c.multi().hget(k, 'e').del(k).exec())
    const e = r?.[0]?.[1] as string | null | undefined
    return e !== null && e !== undefined && Number(e) > this.now()
  }

  async sweepExpired(): Promise<number> {
    return 0
  }
}

/**
 * Node liveness and shared operator state (issue 15). A node's key `P node:<id>` holds its JSON
 * and expires by itself (PX); the sorted set `P nodes` (score: expiry) lists them without a scan.
 * Dispatcher operator states live in the hash `P dsp:admin`.
 */
export class RedisClusterStore {
  readonly shared = true
  private readonly now: () => number
  constructor(private readonly p: string, private readonly call: Call, opts: BackendOptions) {
    this.now = opts.now
  }

  async beat(id: string, info: string, ttlMs: number): Promise<void> {
    checkKey('node id', id)
    const until = this.now() + ttlMs
    await this.call(async c => c.multi().set(`${this.p}node:${id}`, info, 'PX', Math.max(1, Math.round(ttlMs))).zadd(`${this.p}nodes`, until, id).exec())
  }

  async live(): Promise<Array<{ id: string; info: string; until: number }>> {
    const now = this.now()
    const flat = await this.call(c => c.zrangebyscore(`${this.p}nodes`, now, '+inf', 'WITHSCORES'))
    if (flat.length === 0) return []
    const ids: string[] = []
    const until: number[] = []
    for (let i = 0; i + 1 < flat.length; i += 2) { ids.push(flat[i]!); until.push(Number(flat[i + 1])) }
    const vals = await this.call(c => c.mget(...ids.map(id => `${this.p}node:${id}`)))
    const out: Array<{ id: string; info: string; until: number }> = []
    ids.forEach((id, i) => { const v = vals[i]; if (typeof v === 'string') out.push({ id, info: v, until: until[i]! }) })
    // nodes gone for more than a minute leave the index (whoever reads first)
    void this.call(c => c.zremrangebyscore(`${this.p}nodes`, '-inf', now - 60_000)).catch(() => undefined)
    return out
  }

  async forget(id: string): Promise<void> {
    await this.call(async c => c.multi().del(`${this.p}node:${id}`).zrem(`${this.p}nodes`, id).exec())
  }

  async setAdminState(set: string, uri: string, state: string | null): Promise<void> {
    const f = `${set} ${uri}`
    if (state === null) await this.call(c => c.hdel(`${this.p}dsp:admin`, f))
    else await this.call(c => c.hset(`${this.p}dsp:admin`, f, state))
  }

  async adminStates(): Promise<Record<string, string>> {
    return this.call(c => c.hgetall(`${this.p}dsp:admin`))
  }
}
