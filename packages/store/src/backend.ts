import type { BanStore, Binding, ClusterStore, CounterStore, CredentialStore, DialogStore, LocationStore, StoreStatus } from './types.js'
import { bindingKey } from './codec.js'

/** Options after defaults are applied. */
export interface BackendOptions {
  nodeId: string | undefined
  now: () => number
  commandTimeoutMs: number
  connectTimeoutMs: number
  graceMs: number
  keyPrefix: string
  mapSize: number | undefined
  status: (status: StoreStatus, err?: Error) => void
  onCommand: ((seconds: number, ok: boolean) => void) | undefined
}

export interface Backend {
  readonly kind: 'lmdb' | 'redis'
  readonly location: LocationStore
  readonly dialogs: DialogStore
  readonly bans: BanStore
  readonly credentials: CredentialStore
  readonly counters: CounterStore
  readonly cluster: ClusterStore
  isAvailable(): boolean
  close(): Promise<void>
}

/**
 * put/remove/removeAll/replace are all one atomic per-AOR update (lmdb: a write transaction;
 * redis: a CAS script); each backend supplies `update` and the reads.
 */
export abstract class UpdateBasedLocationStore implements Pick<LocationStore, 'put' | 'remove' | 'removeAll' | 'replace'> {
  abstract update(aor: string, fn: (current: Binding[]) => Binding[] | null): Promise<Binding[]>

  put(aor: string, binding: Binding): Promise<Binding[]> {
    const key = bindingKey(binding)
    return this.update(aor, cur => [...cur.filter(b => bindingKey(b) !== key), binding])
  }

  async remove(aor: string, contactOrKey: string): Promise<boolean> {
    let removed = false
    await this.update(aor, cur => {
      const next = cur.filter(b => b.contact !== contactOrKey && bindingKey(b) !== contactOrKey)
      removed = next.length !== cur.length
      return removed ? next : null
    })
    return removed
  }

  async removeAll(aor: string): Promise<number> {
    let n = 0
    await this.update(aor, cur => {
      n = cur.length
      return []
    })
    return n
  }

  replace(aor: string, bindings: Binding[]): Promise<Binding[]> {
    return this.update(aor, () => bindings)
  }
}

/** lmdb (one node): no other node to tell anything. */
export class LocalClusterStore implements ClusterStore {
  readonly shared = false
  async beat(): Promise<void> {}
  async live(): Promise<Array<{ id: string; info: string; until: number }>> { return [] }
  async forget(): Promise<void> {}
  async setAdminState(): Promise<void> {}
  async adminStates(): Promise<Record<string, string>> { return {} }
}
