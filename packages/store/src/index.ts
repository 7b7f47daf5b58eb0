import { createHash } from 'node:crypto'
import { EventEmitter } from 'node:events'
import type { Backend, BackendOptions } from './backend.js'
import { StoreError, StoreErrorCode } from './errors.js'
import { LmdbBackend } from './lmdb.js'
import { RedisBackend } from './redis.js'
import { parseStoreUrl, redact } from './url.js'
import type { BanStore, ClusterStore, CounterStore, CredentialStore, DialogStore, LocationStore, StoreOptions, StoreStatus } from './types.js'

export { StoreError, StoreErrorCode, isStoreError } from './errors.js'
export { parseStoreUrl, redact as redactStoreUrl, type ParsedStoreUrl } from './url.js'
export { bindingKey, dialogId, banKey } from './codec.js'
export type {
  AorBindings, Ban, BanStore, Binding, ClusterStore, NodeBeat, CounterStore, Credential, CredentialStore, Dialog, DialogState, DialogStore,
  ExpiredListener, LocationStore, Page, ReceivedFrom, StoreOptions, StoreStatus,
} from './types.js'

export interface SweepResult {
  bindings: number
  dialogs: number
  bans: number
  counters: number
}

export interface StoreEvents {
  available: []
  unavailable: [err: StoreError]
}

/**
 * The stores behind one URL. Emits 'available' / 'unavailable' (never 'error'); Redis
 * outages make operations reject with ERR_STORE_UNAVAILABLE while the client reconnects.
 */
const SWEEP_IDLE_FACTOR = 8

export class Stores extends EventEmitter<StoreEvents> {
  readonly backend: 'lmdb' | 'redis'
  /** The URL without password. */
  readonly url: string
  readonly location: LocationStore
  readonly dialogs: DialogStore
  readonly bans: BanStore
  readonly credentials: CredentialStore
  readonly counters: CounterStore
  /** Node liveness and shared operator state (Redis; inert on lmdb). */
  readonly cluster: ClusterStore
  private timer: NodeJS.Timeout | undefined
  private sweeping = false
  /**
   * The background sweep backs off while it finds nothing: sweepIntervalMs after a sweep that
   * removed something, doubling up to SWEEP_IDLE_FACTOR times that while nothing expires, so an
   * idle node does not wake every second for it (issue 17). An entry is removed at most
   * SWEEP_IDLE_FACTOR * sweepIntervalMs after it expired (8 s at the workers' 1 s).
   */
  private sweepDelay = 0
  private closed = false

  /** @internal use openStores */
  constructor(url: string, private readonly impl: Backend, private readonly opts: { sweepIntervalMs: number; sweepBatch: number; now: () => number }) {
    super()
    this.url = redact(url)
    this.backend = impl.kind
    this.location = impl.location
    this.dialogs = impl.dialogs
    this.bans = impl.bans
    this.credentials = impl.credentials
    this.counters = impl.counters
    this.cluster = impl.cluster
    if (opts.sweepIntervalMs > 0) {
      this.sweepDelay = opts.sweepIntervalMs
      this.armSweep()
    }
  }

  isAvailable(): boolean {
    return this.impl.isAvailable()
  }

  /**
   * LMDB with `?sync=N`: the commits made in this thread and the write transactions they carried
   * (a commit carries every write asked for in one turn of the event loop); null otherwise.
   */
  commitStats(): { commits: number; writes: number } | null {
    return this.impl instanceof LmdbBackend ? this.impl.commitStats() : null
  }

  /** One bounded pass over the head of every expiry index. */
  async sweepExpired(now = this.opts.now(), max = this.opts.sweepBatch): Promise<SweepResult> {
    const [bindings, dialogs, bans, counters] = await Promise.all([
      this.location.sweepExpired(now, max),
      this.dialogs.sweepExpired(now, max),
      this.bans.sweepExpired(now, max),
      this.counters.sweepExpired(now, max),
    ])
    return { bindings, dialogs, bans, counters }
  }

  private armSweep(): void {
    if (this.closed) return
    this.timer = setTimeout(() => void this.backgroundSweep(), this.sweepDelay)
    this.timer.unref()
  }

  private async backgroundSweep(): Promise<void> {
    if (this.sweeping || this.closed) return
    const base = this.opts.sweepIntervalMs
    if (!this.impl.isAvailable()) { this.sweepDelay = base; this.armSweep(); return }
    this.sweeping = true
    let found = false
    try {
      // A burst (many registrations made at the same moment) is drained in a few bounded
      // rounds; what is left waits for the next tick.
      for (let round = 0; round < 10 && !this.closed; round++) {
        const r = await this.sweepExpired()
        const most = Math.max(r.bindings, r.dialogs, r.bans, r.counters)
        if (most > 0) found = true
        if (most < this.opts.sweepBatch) break
      }
    } catch {
      // unavailable: already reported through 'unavailable'; the next tick retries
      found = true
    } finally {
      this.sweeping = false
    }
    this.sweepDelay = found ? base : Math.min(this.sweepDelay * 2, base * SWEEP_IDLE_FACTOR)
    this.armSweep()
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    if (this.timer) clearTimeout(this.timer)
    await this.impl.close()
  }
}

/**
 * Opens the stores named by `url`: `lmdb:PATH` (embedded, persistent, shared by every
 * thread of the process) or `redis://host:port/db` (shared by several nodes).
 * Rejects with ERR_STORE_BAD_URL, or ERR_STORE_UNAVAILABLE when Redis cannot be reached
 * within `connectTimeoutMs`.
 */
export async function openStores(url: string, opts: StoreOptions = {}): Promise<Stores> {
  const parsed = parseStoreUrl(url)
  const now = opts.now ?? Date.now
  let stores: Stores | undefined
  const bo: BackendOptions = {
    nodeId: opts.nodeId,
    now,
    commandTimeoutMs: positive(opts.commandTimeoutMs, 1000, 'commandTimeoutMs'),
    connectTimeoutMs: positive(opts.connectTimeoutMs, 5000, 'connectTimeoutMs'),
    graceMs: nonNegative(opts.graceMs, 3_600_000, 'graceMs'),
    keyPrefix: opts.keyPrefix ?? (parsed.backend === 'redis' ? parsed.keyPrefix : undefined) ?? 'sipedge:',
    mapSize: opts.mapSize,
    onCommand: opts.onCommand,
    status: (status: StoreStatus, err?: Error) => {
      if (status === 'available') stores?.emit('available')
      else stores?.emit('unavailable', err as StoreError)
      try {
        opts.onStatus?.(status, err)
      } catch {
        // a callback's bug must not break the client
      }
    },
  }
  const sweep = {
    sweepIntervalMs: nonNegative(opts.sweepIntervalMs, 1000, 'sweepIntervalMs'),
    sweepBatch: positive(opts.sweepBatch, 1000, 'sweepBatch'),
    now,
  }
  if (parsed.backend === 'lmdb') {
    stores = new Stores(url, new LmdbBackend(parsed.path, bo, parsed.syncMs), sweep)
    return stores
  }
  const backend = new RedisBackend(parsed, bo)
  stores = new Stores(url, backend, sweep)
  try {
    await backend.connect()
  } catch (err) {
    await stores.close()
    throw err
  }
  return stores
}

function positive(v: number | undefined, dflt: number, name: string): number {
  if (v === undefined) return dflt
  if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) throw new StoreError(StoreErrorCode.BAD_VALUE, `${name} must be a positive number`)
  return v
}
function nonNegative(v: number | undefined, dflt: number, name: string): number {
  if (v === undefined) return dflt
  if (typeof v !== 'number' || !(v >= 0) || !Number.isFinite(v)) throw new StoreError(StoreErrorCode.BAD_VALUE, `${name} must be a number >= 0`)
  return v
}

/** HA1 = H(username ":" realm ":" password) for digest auth (RFC 3261 §22.4, RFC 8760 SHA-256). */
export function computeHa1(user: string, realm: string, password: string, algorithm: 'MD5' | 'SHA-256' = 'MD5'): string {
  return createHash(algorithm === 'MD5' ? 'md5' : 'sha256').update(`${user}:${realm}:${password}`).digest('hex')
}
