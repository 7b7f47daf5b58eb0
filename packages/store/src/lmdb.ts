import { mkdirSync } from 'node:fs'
import { dirname } from 'node:path'
import { open, type Database, type Key, type RootDatabase } from 'lmdb'
import {
  checkBinding, checkCounter, checkDialog, checkKey, decode, decodeBan, decodeBindings, decodeCounter, decodeCredential, decodeDialog,
  encode, encodeBan, encodeBindings, encodeCounter, encodeCredential, encodeDialog,
} from './codec.js'
import { StoreError, StoreErrorCode } from './errors.js'
import { Listeners } from './listeners.js'
import type {
  AorBindings, Ban, BanStore, Binding, CounterStore, Credential, CredentialStore, Dialog, DialogStore, LocationStore, Page,
} from './types.js'
import { LocalClusterStore, UpdateBasedLocationStore, type Backend, type BackendOptions } from './backend.js'

// Layout of the LMDB environment (one file + lock file, shared by every thread of the process):
//   loc     aor                 -> msgpack [format, binding tuples]
//   locexp  [minExpires, aor]   -> ''     expiry index: a sweep reads only its head
//   dlg     id                  -> msgpack dialog tuple
//   dlgexp  [expiresAt, id]     -> ''
//   ban     key                 -> msgpack [format, until, reason, createdAt]
//   banexp  [until, key]        -> ''
//   cred    [realm, user]       -> msgpack [format, ha1Md5, ha1Sha256]
//   ctr     key                 -> msgpack [format, value, window end]
//   ctrexp  [window end, key]   -> ''
//   meta    counter key         -> msgpack number  (updated in the same transaction as the data)
// Every read-modify-write runs inside one LMDB write transaction (`env.transaction`), which
// LMDB serialises across threads and processes with its writer lock.

type Bin = Database<Buffer, Key>
const MARK = Buffer.from([0])

/** The first `max` [expiry, key] entries of an expiry index that are due at `now`. */
function dueKeys(exp: Bin, now: number, max: number): Array<[number, string]> {
  const due: Array<[number, string]> = []
  for (const { key } of exp.getRange({ limit: max })) {
    const k = key as [number, string]
    if (k[0] > now) break
    due.push(k)
  }
  return due
}

interface Txn<T> { ok: true; value: T }
interface TxnFail { ok: false; error: unknown }
interface Queued<T> { fn: () => T; resolve: (v: T) => void; reject: (e: unknown) => void }

export class LmdbBackend implements Backend {
  readonly kind = 'lmdb' as const
  readonly location: LmdbLocationStore
  readonly dialogs: LmdbDialogStore
  readonly bans: LmdbBanStore
  readonly credentials: LmdbCredentialStore
  readonly counters: LmdbCounterStore
  readonly cluster = new LocalClusterStore()
  private readonly env: RootDatabase<Buffer, Key>
  private closed = false
  /** 0: lmdb's async write thread, every commit flushed (overlapping sync); else the flush interval. */
  private readonly syncMs: number
  private syncTimer: ReturnType<typeof setTimeout> | null = null
  private syncing: Promise<void> | null = null
  private readonly onSyncTimer: () => void
  /** Write transactions asked for in this turn of the event loop, committed together (group commit). */
  private queued: Array<Queued<unknown>> = []
  private commitImmediate: ReturnType<typeof setImmediate> | null = null
  private readonly onCommitImmediate: () => void
  private commits = 0
  private writes = 0

  /**
   * `syncMs` (the URL's `?sync=`, docs/stores.md "Durability"): 0 commits through lmdb's write
   * thread, which flushes every commit to disk; N > 0 commits synchronously in the caller's
   * thread with `noSync` (the data is in the OS page cache when the promise resolves, so a
   * process crash or restart loses nothing) and flushes the disk N ms after the first unflushed
   * commit (a power loss can lose the last N ms). Every opener of one path must agree (lmdb
   * refuses to mix `noSync` and overlapping sync on one environment); they do, since the mode is
   * part of the store URL.
   */
  constructor(path: string, opts: BackendOptions, syncMs = 0) {
    const noSubdir = /\.[^/\\]*$/.test(path)
    mkdirSync(noSubdir ? dirname(path) : path, { recursive: true })
    this.syncMs = syncMs
    this.onCommitImmediate = () => {
      this.commitImmediate = null
      this.commitQueued()
    }
    this.onSyncTimer = () => {
      this.syncTimer = null
      // a flush already running may have started before the newest commits: flush again after it
      if (this.syncing !== null) void this.syncing.then(() => this.flush())
      else void this.flush()
    }
    const envOpts: Parameters<typeof open>[0] = { path, encoding: 'binary', maxDbs: 16, noSubdir }
    if (syncMs > 0) envOpts.noSync = true
    if (opts.mapSize) envOpts.mapSize = opts.mapSize
    try {
      this.env = open(envOpts) as RootDatabase<Buffer, Key>
    } catch (err) {
      throw new StoreError(StoreErrorCode.UNAVAILABLE, `cannot open LMDB store at ${path}: ${(err as Error).message}`, { cause: err })
    }
    const db = (name: string): Bin => this.env.openDB({ name, encoding: 'binary' }) as Bin
    const meta = new Counters(db('meta'))
    const run = <T>(fn: () => T): Promise<T> => this.txn(fn)
    this.location = new LmdbLocationStore(db('loc'), db('locexp'), meta, run, opts)
    this.dialogs = new LmdbDialogStore(db('dlg'), db('dlgexp'), meta, run, opts)
    this.bans = new LmdbBanStore(db('ban'), db('banexp'), run, opts)
    this.credentials = new LmdbCredentialStore(db('cred'), run)
    this.counters = new LmdbCounterStore(db('ctr'), db('ctrexp'), run, opts)
  }

  isAvailable(): boolean {
    return !this.closed
  }

  /**
   * Runs `fn` in a write transaction. An exception thrown by `fn` is carried out of the callback
   * (not thrown inside it) so a transaction shared with other callers is not disturbed; callers
   * check values before writing, so nothing is half-written.
   *
   * With `?sync=N` every `fn` asked for in one turn of the event loop (the datagrams of one poll
   * phase, their timers) runs in one write transaction in this thread, committed in the check
   * phase right after (`setImmediate`): one commit, one writer lock and one meta-page write for
   * all of them. Each caller's promise settles after that commit, so nothing is answered before
   * it is in the store, in the order the callers asked.
   */
  private txn<T>(fn: () => T): Promise<T> {
    if (this.closed) return Promise.reject(new StoreError(StoreErrorCode.CLOSED, 'the store is closed'))
    if (this.syncMs > 0) {
      return new Promise<T>((resolve, reject) => {
        this.queued.push({ fn, resolve, reject } as Queued<unknown>)
        if (this.commitImmediate === null) this.commitImmediate = setImmediate(this.onCommitImmediate)
      })
    }
    return this.env.transaction((): Txn<T> | TxnFail => {
      try {
        return { ok: true, value: fn() }
      } catch (error) {
        return { ok: false, error }
      }
    }).then(r => {
      if (!r.ok) throw r.error
      return r.value
    })
  }

  /** Commits the queued write transactions as one, then settles each caller's promise. */
  private commitQueued(): void {
    const q = this.queued
    if (q.length === 0) return
    this.queued = []
    const out: Array<Txn<unknown> | TxnFail> = new Array(q.length)
    try {
      // One short write transaction in this thread: no hop to lmdb's write thread and back
      // (three cross-thread wake-ups per write), no fsync per commit.
      this.env.transactionSync(() => {
        for (let i = 0; i < q.length; i++) {
          try {
            out[i] = { ok: true, value: q[i].fn() }
          } catch (error) {
            out[i] = { ok: false, error }
          }
        }
      })
    } catch (err) {
      // the commit itself failed (disk full, map full): nothing of this batch is stored
      const e = new StoreError(StoreErrorCode.UNAVAILABLE, `LMDB commit failed: ${(err as Error).message}`, { cause: err })
      for (const w of q) w.reject(e)
      return
    }
    this.commits++
    this.writes += q.length
    if (this.syncTimer === null) {
      this.syncTimer = setTimeout(this.onSyncTimer, this.syncMs)
      this.syncTimer.unref()
    }
    for (let i = 0; i < q.length; i++) {
      const r = out[i]
      if (r.ok) q[i].resolve(r.value)
      else q[i].reject(r.error)
    }
  }

  /** Commits and write transactions committed so far (with `?sync=N`; a commit carries one or more). */
  commitStats(): { commits: number; writes: number } {
    return { commits: this.commits, writes: this.writes }
  }

  /** Flushes committed data to disk (fdatasync on libuv's thread pool). */
  private flush(): Promise<void> {
    if (this.syncing !== null) return this.syncing
    const p = new Promise<void>(resolve => {
      // `sync(cb)` is lmdb-js's (untyped) mdb_env_sync(force) on the thread pool; an error
      // there (disk full, I/O error) is lmdb's to report on the next commit
      try { (this.env as unknown as { sync(cb: (err?: Error) => void): void }).sync(() => resolve()) } catch { resolve() }
    }).then(() => { this.syncing = null })
    this.syncing = p
    return p
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    if (this.syncMs > 0) {
      // what was asked for before close is committed, as it would have been a moment later
      if (this.commitImmediate !== null) clearImmediate(this.commitImmediate)
      this.commitImmediate = null
      this.commitQueued()
      if (this.syncTimer !== null) clearTimeout(this.syncTimer)
      this.syncTimer = null
      if (this.syncing !== null) await this.syncing
      await this.flush()
    }
    await this.env.close()
  }
}

class Counters {
  constructor(private readonly db: Bin) {}
  get(key: Key): number {
    const v = this.db.get(key)
    return v ? (decode(v) as number) : 0
  }
  /** Inside a transaction only. */
  add(key: Key, delta: number): void {
    if (delta === 0) return
    const n = this.get(key) + delta
    if (n <= 0) this.db.removeSync(key)
    else this.db.putSync(key, encode(n))
  }
}

type Run = <T>(fn: () => T) => Promise<T>

function minExpires(list: readonly Binding[]): number {
  let m = Infinity
  for (const b of list) if (b.expires < m) m = b.expires
  return m
}

export class LmdbLocationStore extends UpdateBasedLocationStore implements LocationStore {
  private readonly expired = new Listeners<AorBindings>()
  private readonly now: () => number
  constructor(
    private readonly loc: Bin, private readonly exp: Bin, private readonly meta: Counters,
    private readonly run: Run, private readonly opts: BackendOptions,
  ) {
    super()
    this.now = opts.now
  }

  async get(aor: string): Promise<Binding[]> {
    checkKey('aor', aor)
    const now = this.now()
    return decodeBindings(aor, this.loc.get(aor)).filter(b => b.expires > now)
  }

  /** Inside a transaction: writes the AOR's new set and keeps index and counters in step. */
  private write(aor: string, prev: readonly Binding[], next: readonly Binding[]): void {
    // encoded before anything is written: a throw leaves the shared transaction untouched
    const value = next.length > 0 ? encodeBindings(next) : null
    if (prev.length > 0) this.exp.removeSync([minExpires(prev), aor])
    if (value !== null) {
      this.loc.putSync(aor, value)
      this.exp.putSync([minExpires(next), aor], MARK)
    } else if (prev.length > 0) {
      this.loc.removeSync(aor)
    }
    this.meta.add('loc:aors', (next.length > 0 ? 1 : 0) - (prev.length > 0 ? 1 : 0))
    this.meta.add('loc:bindings', next.length - prev.length)
  }

  override async update(aor: string, fn: (current: Binding[]) => Binding[] | null): Promise<Binding[]> {
    checkKey('aor', aor)
    return this.run(() => {
      const now = this.now()
      const prev = decodeBindings(aor, this.loc.get(aor))
      const live = prev.filter(b => b.expires > now)
      const out = fn(live.slice())
      if (out === null) return live
      const next = out.map(b => checkBinding(aor, b, this.opts.nodeId)).filter(b => b.expires > now)
      this.write(aor, prev, next)
      return next
    })
  }

  async count(): Promise<{ aors: number; bindings: number }> {
    return { aors: this.meta.get('loc:aors'), bindings: this.meta.get('loc:bindings') }
  }

  async list(cursor: string | null, limit: number): Promise<Page<AorBindings>> {
    const now = this.now()
    const items: AorBindings[] = []
    let last: string | null = null
    let more = false
    const range = this.loc.getRange(cursor === null ? { limit: limit + 1 } : { start: cursor, limit: limit + 2 })
    let seen = 0
    for (const { key, value } of range) {
      const aor = key as string
      if (aor === cursor) continue
      if (seen === limit) {
        more = true
        break
      }
      seen++
      last = aor
      const bindings = decodeBindings(aor, value).filter(b => b.expires > now)
      if (bindings.length > 0) items.push({ aor, bindings })
    }
    return { items, cursor: more ? last : null }
  }

  async sweepExpired(now = this.now(), max = 1000): Promise<number> {
    const due = dueKeys(this.exp, now, max)
    if (due.length === 0) return 0
    const events = await this.run(() => {
      const out: AorBindings[] = []
      for (const k of due) {
        if (!this.exp.doesExist(k)) continue // changed since the index was read
        const aor = k[1]
        const prev = decodeBindings(aor, this.loc.get(aor))
        const gone = prev.filter(b => b.expires <= now)
        const keep = prev.filter(b => b.expires > now)
        if (prev.length === 0) this.exp.removeSync(k) // stray index entry
        else this.write(aor, prev, keep)
        if (gone.length > 0) out.push({ aor, bindings: gone })
      }
      return out
    })
    let n = 0
    for (const e of events) {
      n += e.bindings.length
      this.expired.emit(e)
    }
    return n
  }

  onExpired(listener: (e: AorBindings) => void): () => void {
    return this.expired.add(listener)
  }
}

const dlgSetKey = (set: string): Key => ['ds', set]
const dlgDstKey = (dst: string): Key => ['dd', dst]

export class LmdbDialogStore implements DialogStore {
  private readonly expired = new Listeners<Dialog>()
  private readonly now: () => number
  constructor(
    private readonly dlg: Bin, private readonly exp: Bin, private readonly meta: Counters,
    private readonly run: Run, private readonly opts: BackendOptions,
  ) {
    this.now = opts.now
  }

  private read(id: string): Dialog | null {
    const v = this.dlg.get(id)
    return v ? decodeDialog(id, v) : null
  }

  /** Inside a transaction. */
  private write(id: string, prev: Dialog | null, next: Dialog | null): void {
    // encoded before anything is written: a throw leaves the shared transaction untouched
    const value = next ? encodeDialog(next) : null
    if (prev) {
      this.exp.removeSync([prev.expiresAt, id])
      if (prev.state !== 'terminated') {
        this.meta.add(dlgSetKey(prev.setName), -1)
        this.meta.add(dlgDstKey(prev.destination), -1)
      }
    }
    if (next) {
      this.dlg.putSync(id, value as Buffer)
      this.exp.putSync([next.expiresAt, id], MARK)
      if (next.state !== 'terminated') {
        this.meta.add(dlgSetKey(next.setName), 1)
        this.meta.add(dlgDstKey(next.destination), 1)
      }
    } else if (prev) {
      this.dlg.removeSync(id)
    }
    this.meta.add('dlg:n', (next ? 1 : 0) - (prev ? 1 : 0))
  }

  async get(id: string): Promise<Dialog | null> {
    const d = this.read(id)
    return d && d.expiresAt > this.now() ? d : null
  }

  async put(dialog: Dialog): Promise<void> {
    const d = checkDialog(dialog, this.opts.nodeId)
    checkKey('dialog id', d.id)
    await this.run(() => this.write(d.id, this.read(d.id), d))
  }

  remove(id: string): Promise<boolean> {
    return this.run(() => {
      const prev = this.read(id)
      if (prev) this.write(id, prev, null)
      return prev !== null
    })
  }

  touch(id: string, expiresAt?: number, lastActivity?: number): Promise<boolean> {
    return this.run(() => {
      const prev = this.read(id)
      if (!prev || prev.expiresAt <= this.now()) return false
      const next = { ...prev, lastActivity: lastActivity ?? this.now(), expiresAt: expiresAt ?? prev.expiresAt }
      this.write(id, prev, next)
      return true
    })
  }

  async countBySet(setName: string): Promise<number> {
    return this.meta.get(dlgSetKey(setName))
  }

  async countByDestination(destination: string): Promise<number> {
    return this.meta.get(dlgDstKey(destination))
  }

  async count(): Promise<number> {
    return this.meta.get('dlg:n')
  }

  async sweepExpired(now = this.now(), max = 1000): Promise<number> {
    const due = dueKeys(this.exp, now, max)
    if (due.length === 0) return 0
    const gone = await this.run(() => {
      const out: Dialog[] = []
      for (const k of due) {
        if (!this.exp.doesExist(k)) continue
        const prev = this.read(k[1])
        if (prev && prev.expiresAt <= now) {
          this.write(k[1], prev, null)
          out.push(prev)
        } else if (!prev) {
          this.exp.removeSync(k)
        }
      }
      return out
    })
    for (const d of gone) this.expired.emit(d)
    return gone.length
  }

  onExpired(listener: (d: Dialog) => void): () => void {
    return this.expired.add(listener)
  }
}

export class LmdbBanStore implements BanStore {
  private readonly expired = new Listeners<Ban>()
  private readonly now: () => number
  constructor(private readonly db: Bin, private readonly exp: Bin, private readonly run: Run, opts: BackendOptions) {
    this.now = opts.now
  }

  private read(key: string): Ban | null {
    const v = this.db.get(key)
    return v ? decodeBan(key, v) : null
  }

  async ban(key: string, until: number, reason: string): Promise<void> {
    checkKey('ban key', key)
    if (typeof until !== 'number' || !Number.isFinite(until)) throw new StoreError(StoreErrorCode.BAD_VALUE, 'ban until must be an epoch-ms number')
    const b: Ban = { key, until, reason: String(reason ?? ''), createdAt: this.now() }
    const value = encodeBan(b)
    await this.run(() => {
      const prev = this.read(key)
      if (prev) this.exp.removeSync([prev.until, key])
      this.db.putSync(key, value)
      this.exp.putSync([until, key], MARK)
    })
  }

  async get(key: string): Promise<Ban | null> {
    const b = this.read(key)
    return b && b.until > this.now() ? b : null
  }

  async isBanned(key: string): Promise<boolean> {
    return (await this.get(key)) !== null
  }

  async list(limit = 1000): Promise<Ban[]> {
    const now = this.now()
    const out: Ban[] = []
    for (const { key } of this.exp.getRange({ start: [now], limit: limit + 16 })) {
      const k = key as [number, string]
      if (k[0] <= now) continue
      const b = this.read(k[1])
      if (b) out.push(b)
      if (out.length >= limit) break
    }
    return out
  }

  remove(key: string): Promise<boolean> {
    return this.run(() => {
      const prev = this.read(key)
      if (!prev) return false
      this.exp.removeSync([prev.until, key])
      this.db.removeSync(key)
      return prev.until > this.now()
    })
  }

  async sweepExpired(now = this.now(), max = 1000): Promise<number> {
    const due = dueKeys(this.exp, now, max)
    if (due.length === 0) return 0
    const gone = await this.run(() => {
      const out: Ban[] = []
      for (const k of due) {
        if (!this.exp.doesExist(k)) continue
        this.exp.removeSync(k)
        const b = this.read(k[1])
        if (b && b.until <= now) {
          this.db.removeSync(k[1])
          out.push(b)
        }
      }
      return out
    })
    for (const b of gone) this.expired.emit(b)
    return gone.length
  }

  onExpired(listener: (b: Ban) => void): () => void {
    return this.expired.add(listener)
  }
}

export class LmdbCredentialStore implements CredentialStore {
  constructor(private readonly db: Bin, private readonly run: Run) {}
  async get(realm: string, user: string): Promise<Credential | null> {
    const v = this.db.get([realm, user])
    return v ? decodeCredential(v) : null
  }
  async put(realm: string, user: string, credential: Credential): Promise<void> {
    checkKey('realm', realm)
    checkKey('user', user)
    await this.db.put([realm, user], encodeCredential(credential))
  }
  async remove(realm: string, user: string): Promise<boolean> {
    // the async remove() resolves true once committed, whether or not the key existed
    return this.run(() => this.db.removeSync([realm, user]))
  }
}

export class LmdbCounterStore implements CounterStore {
  private readonly now: () => number
  constructor(private readonly db: Bin, private readonly exp: Bin, private readonly run: Run, opts: BackendOptions) {
    this.now = opts.now
  }

  async incr(key: string, windowMs: number, by = 1): Promise<number> {
    checkCounter(key, windowMs, by)
    return this.run(() => {
      const now = this.now()
      const v = this.db.get(key)
      const c = v ? decodeCounter(v) : null
      if (c !== null && c.until > now) {
        const n = c.n + by
        this.db.putSync(key, encodeCounter(n, c.until))
        return n
      }
      if (c !== null) this.exp.removeSync([c.until, key])
      const until = now + windowMs
      this.db.putSync(key, encodeCounter(by, until))
      this.exp.putSync([until, key], MARK)
      return by
    })
  }

  async get(key: string): Promise<number> {
    checkKey('counter key', key)
    const v = this.db.get(key)
    if (!v) return 0
    const c = decodeCounter(v)
    return c.until > this.now() ? c.n : 0
  }

  async reset(key: string): Promise<boolean> {
    checkKey('counter key', key)
    return this.run(() => {
      const v = this.db.get(key)
      if (!v) return false
      const c = decodeCounter(v)
      this.exp.removeSync([c.until, key])
      this.db.removeSync(key)
      return c.until > this.now()
    })
  }

  async sweepExpired(now = this.now(), max = 1000): Promise<number> {
    const due = dueKeys(this.exp, now, max)
    if (due.length === 0) return 0
    return this.run(() => {
      let n = 0
      for (const k of due) {
        if (!this.exp.doesExist(k)) continue // incremented into a new window since the index was read
        this.exp.removeSync(k)
        const v = this.db.get(k[1])
        if (v && decodeCounter(v).until <= now) { this.db.removeSync(k[1]); n++ }
      }
      return n
    })
  }
}
