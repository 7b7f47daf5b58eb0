// Failed digest attempts, counted where every worker (lmdb: every thread of the process) and
// every node (Redis) sees them: the store's CounterStore when the host handed the auth module a
// store, else counters in this worker's memory. Issue "Safe on a public address" 5: the lockout
// after 5 failures was a Map per worker, so a client starting new Call-IDs (which the primary
// shards to other workers) got 5 more guesses on each, and 400 guesses spread over 400 users in
// 0.9 s tripped nothing at all.
//
// What is counted, per window (`windowMs`, fixed from the first failure):
// - per user and source address (`au|realm|user|source`): at `maxFailures` that pair is locked:
//   403 without looking at the password, also for the right one, until the window ends. Keyed by
//   the pair so that an attacker elsewhere cannot lock a real user out.
// - per source (`as|source`): every failure; at `banFailures` the source is banned.
// - per source, distinct users (`ad|source`, +1 when a pair counts its first failure): at
//   `banUsers` the source is banned (the spraying scanner).
// A ban is reported once (the increment that reaches the threshold exactly; increments are atomic,
// so exactly one worker or node sees it) through `onBan`: the auth module posts it to the primary
// (`{ type: 'ban', ... }`, docs/contracts.md) and writes it to the BanStore.
import { createHash } from 'node:crypto'
import type { CounterStore } from '@sipedge/store'
import type { ProxyLogger } from '@sipedge/proxy'

export interface ThrottleOptions {
  /** Failures of one user from one address before that pair gets 403. Default 5. */
  maxFailures?: number
  /** The counting window, ms. Default 5 min. */
  windowMs?: number
  /** Distinct users failing from one address within the window before it is banned. Default 10; 0: never. */
  banUsers?: number
  /** Failures from one address within the window before it is banned. Default 30; 0: never. */
  banFailures?: number
  /** How long a ban lasts, ms. Default 1 h. */
  banMs?: number
}

/** A source this throttle decided to ban. */
export interface AuthBan {
  address: string
  /** Epoch ms (the auth clock). */
  until: number
  durationMs: number
  /** Distinct users and failures from the address in the window when it was banned. */
  users: number
  failures: number
}

type MaybePromise<T> = T | Promise<T>

/** The part of CounterStore the throttle uses; the memory fallback answers synchronously. */
interface Counters {
  incr(key: string, windowMs: number): MaybePromise<number>
  get(key: string): MaybePromise<number>
  reset(key: string): MaybePromise<unknown>
}

/** Counters of this worker only (no store, or the store failed): a bounded Map, oldest evicted first. */
export class MemoryCounters implements Counters {
  private readonly map = new Map<string, { n: number; until: number }>()
  constructor(private readonly now: () => number, private readonly max = 20_000) {}
  incr(key: string, windowMs: number): number {
    const now = this.now()
    const c = this.map.get(key)
    if (c !== undefined && c.until > now) return ++c.n
    if (c !== undefined) this.map.delete(key)
    else if (this.map.size >= this.max) this.map.delete(this.map.keys().next().value as string)
    this.map.set(key, { n: 1, until: now + windowMs })
    return 1
  }
  get(key: string): number {
    const c = this.map.get(key)
    return c !== undefined && c.until > this.now() ? c.n : 0
  }
  reset(key: string): boolean {
    return this.map.delete(key)
  }
  get size(): number {
    return this.map.size
  }
}

/** `f(v)` now when `v` is a value, later when it is a promise. */
function then<T, R>(v: MaybePromise<T>, f: (x: T) => MaybePromise<R>): MaybePromise<R> {
  return v instanceof Promise ? v.then(f) : f(v)
}

const STORE_LOG_EVERY_MS = 10_000

export class AuthThrottle {
  readonly maxFailures: number
  readonly windowMs: number
  readonly banUsers: number
  readonly banFailures: number
  readonly banMs: number
  /** Bans reported by this throttle. */
  bans = 0
  /** Store operations that failed (counted in memory instead). */
  storeErrors = 0
  private store: CounterStore | null
  private readonly memory: MemoryCounters
  private lastStoreLog = 0

  constructor(o: ThrottleOptions, private readonly now: () => number, private readonly onBan: (b: AuthBan) => void, private readonly log?: ProxyLogger) {
    this.maxFailures = o.maxFailures ?? 5
    this.windowMs = o.windowMs ?? 5 * 60_000
    this.banUsers = o.banUsers ?? 10
    this.banFailures = o.banFailures ?? 30
    this.banMs = o.banMs ?? 3_600_000
    this.store = null
    this.memory = new MemoryCounters(now)
  }

  /** Counts in the shared store from now on (null: this worker's memory). */
  useStore(store: CounterStore | null): void {
    this.store = store
  }

  get shared(): boolean {
    return this.store !== null
  }

  /** Failures of this user from this address in the current window. */
  failuresOf(realm: string, user: string, source: string): MaybePromise<number> {
    return this.op(c => c.get(pairKey(realm, user, source)))
  }

  /** Whether a count of failures locks the pair. */
  locks(failures: number): boolean {
    return failures >= this.maxFailures
  }

  /**
   * A wrong response (or an unknown user: the same to the caller). Resolves to the pair's count,
   * after the per-source counts and, at a threshold, the ban.
   */
  failed(realm: string, user: string, source: string): MaybePromise<number> {
    const w = this.windowMs
    return then(this.op(c => c.incr(pairKey(realm, user, source), w)), n =>
      then(this.op(c => c.incr('as|' + source, w)), failures =>
        then(n === 1 ? this.op(c => c.incr('ad|' + source, w)) : this.op(c => c.get('ad|' + source)), users => {
          // Reported once: by the increment that reaches a threshold exactly (and not again for
          // the failure count when the distinct users already banned the source).
          const byUsers = this.banUsers > 0 && n === 1 && users === this.banUsers
          const byFailures = this.banFailures > 0 && failures === this.banFailures && (this.banUsers === 0 || users < this.banUsers)
          if (byUsers || byFailures) this.ban(source, users, failures)
          return n
        })))
  }

  /** The right password: the pair starts again (only written when it had failures). */
  succeeded(realm: string, user: string, source: string, hadFailures: number): void {
    if (hadFailures === 0) return
    const r = this.op(c => c.reset(pairKey(realm, user, source)))
    if (r instanceof Promise) r.catch(() => undefined)
  }

  private ban(address: string, users: number, failures: number): void {
    this.bans++
    const until = this.now() + this.banMs
    try {
      this.onBan({ address, until, durationMs: this.banMs, users, failures })
    } catch (err) {
      this.log?.error('auth: ban not reported', { address, err: String(err) })
    }
  }

  /** One counter operation on the store, or in memory when there is none or it fails. */
  private op<T>(f: (c: Counters) => MaybePromise<T>): MaybePromise<T> {
    const s = this.store
    if (s === null) return f(this.memory)
    let p: MaybePromise<T>
    try { p = f(s) } catch (err) { return this.fallback(f, err) }
    return p instanceof Promise ? p.catch((err: unknown) => this.fallback(f, err)) : p
  }

  private fallback<T>(f: (c: Counters) => MaybePromise<T>, err: unknown): MaybePromise<T> {
    this.storeErrors++
    const now = Date.now()
    if (now - this.lastStoreLog >= STORE_LOG_EVERY_MS) {
      this.lastStoreLog = now
      this.log?.warn('auth: failure counters unavailable in the store: counting in this worker', { code: (err as { code?: string } | null)?.code, storeErrors: this.storeErrors })
    }
    return f(this.memory)
  }
}

function pairKey(realm: string, user: string, source: string): string {
  // A user name is the client's to choose: a long one is hashed so the key stays within the
  // store's limit (and every one still counts).
  const u = user.length <= 128 ? user : createHash('sha256').update(user).digest('base64url')
  return 'au|' + realm + '|' + u + '|' + source
}
