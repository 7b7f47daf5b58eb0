// The registrar / location service behind `action: register` and `action: lookup`.
// docs/registrar.md describes the behaviour; the seam is ../registrar-api.ts.
import { openStores } from '@sipedge/store'
import type { FrozenConfig } from '@sipedge/config'
import type { ProxyLogger } from '../types.js'
import { LocationRegistrar, type RegistrarOptions, type RegistrarStores } from './registrar.js'

export { LocationRegistrar, RegistrarCounters } from './registrar.js'
export type { RegistrarOptions, RegistrarStores } from './registrar.js'
export { aorOf, normalizeContact, parseDeltaSeconds, parseQ, isPrivateHost, contactValue } from './contact.js'

/**
 * The registrar over stores the caller opened (`openStores(config.registrar.store)`); the caller
 * closes them. Synchronous: for `createProxy({ registrar })` in a worker or a test.
 */
export function createRegistrar(opts: RegistrarOptions): LocationRegistrar {
  return new LocationRegistrar(opts)
}

export interface OpenRegistrarOptions {
  config: FrozenConfig
  workerIndex: number
  now?: () => number
  log: ProxyLogger
  /** Override of `config.registrar.store`. */
  storeUrl?: string
  /** Sweep interval of the expiry index on the sweeping worker (default 1000 ms). */
  sweepIntervalMs?: number
  /** Which worker sweeps (default 0). Several sweepers are safe, just redundant. */
  sweeper?: boolean
  nodeId?: string
}

/**
 * Opens `config.registrar.store` for this worker (an LMDB path is shared by the threads of the
 * process; Redis is one connection per worker) and builds the registrar, which closes the store
 * on close(). Only worker 0 runs the expiry sweep timer. Rejects when the store cannot be opened
 * (Redis unreachable at start: ERR_STORE_UNAVAILABLE) — the caller decides whether to start
 * without a registrar.
 */
export async function openRegistrar(o: OpenRegistrarOptions): Promise<LocationRegistrar> {
  const sweeper = o.sweeper ?? o.workerIndex === 0
  const stores = await openStores(o.storeUrl ?? o.config.registrar.store, {
    sweepIntervalMs: sweeper ? (o.sweepIntervalMs ?? 1000) : 0,
    ...(o.nodeId !== undefined ? { nodeId: o.nodeId } : {}),
  })
  try {
    return new LocationRegistrar({ config: o.config, stores: stores as unknown as RegistrarStores, workerIndex: o.workerIndex, log: o.log, ownsStores: true, ...(o.now !== undefined ? { now: o.now } : {}) })
  } catch (err) {
    await stores.close()
    throw err
  }
}
