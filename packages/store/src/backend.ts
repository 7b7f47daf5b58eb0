import type { BanStore, CredentialStore, DialogStore, LocationStore, StoreStatus } from './types.js'

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
}

export interface Backend {
  readonly kind: 'lmdb' | 'redis'
  readonly location: LocationStore
  readonly dialogs: DialogStore
  readonly bans: BanStore
  readonly credentials: CredentialStore
  isAvailable(): boolean
  close(): Promise<void>
}
