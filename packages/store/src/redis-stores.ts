// The smaller Redis-backed stores: bans, credentials, counters and the cluster keys (node
// liveness, dispatcher operator states). RedisBackend (redis.ts) builds them on one client.
import { checkCounter, checkKey, decodeBan, decodeCredential, encodeBan, encodeCredential } from './codec.js'
import { StoreError, StoreErrorCode } from './errors.js'
import { Listeners } from './listeners.js'
import type { Ban, BanStore, CounterStore, Credential, CredentialStore } from './types.js'
import type { BackendOptions } from './backend.js'
import type { Call } from './redis-scripts.js'

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
