/** Where a REGISTER came from: used to answer over the same flow (RFC 5626). */
export interface ReceivedFrom {
  transport: string
  address: string
  port: number
  socketId: number
  connId: number
}

/**
 * One registration binding (RFC 3261 §10.3). Identity: the Contact URI, or for outbound
 * flows (RFC 5626 §6) the pair (+sip.instance, reg-id): see `bindingKey`.
 */
export interface Binding {
  aor: string
  contact: string
  instance?: string | undefined
  regId?: number | undefined
  /** 0..1 */
  q: number
  /** Absolute expiry, epoch ms. A binding with `expires <= now` is never returned. */
  expires: number
  callId: string
  cseq: number
  /** Path header values (RFC 3327), in order. */
  path: string[]
  received: ReceivedFrom
  userAgent?: string | undefined
  updatedAt: number
  nodeId?: string | undefined
  /**
   * The UA was behind NAT when it registered (docs/nat.md): requests for this binding go to
   * `received` (the flow), not to the Contact. Undefined in records written before this field
   * existed: the registrar then decides from the Contact and `received` alone.
   */
  nat?: boolean | undefined
}

export interface Page<T> {
  items: T[]
  /** Pass back to get the next page; null when this was the last page. */
  cursor: string | null
}

export interface AorBindings {
  aor: string
  bindings: Binding[]
}

export type ExpiredListener<T> = (expired: T) => void

export interface LocationStore {
  /** Live bindings of an AOR (expired ones are filtered out even before a sweep). */
  get(aor: string): Promise<Binding[]>
  /** Adds or replaces (same identity) one binding. Resolves to the AOR's new set. */
  put(aor: string, binding: Binding): Promise<Binding[]>
  /** Removes the binding whose contact URI or `bindingKey` equals `contactOrKey`. */
  remove(aor: string, contactOrKey: string): Promise<boolean>
  /** Removes every binding of the AOR; resolves to how many were live. */
  removeAll(aor: string): Promise<number>
  /** Writes the AOR's complete binding set atomically. */
  replace(aor: string, bindings: Binding[]): Promise<Binding[]>
  /**
   * Atomic read-modify-write of one AOR. `fn` gets the live bindings and returns the new
   * set, or null to leave the AOR untouched. `fn` must be synchronous and free of side
   * effects: it may run more than once (Redis retries on a concurrent change).
   */
  update(aor: string, fn: (current: Binding[]) => Binding[] | null): Promise<Binding[]>
  /** Stored AORs and bindings (bindings expired but not yet swept are still counted). */
  count(): Promise<{ aors: number; bindings: number }>
  /** AORs in key order, `limit` per page, for the admin API. */
  list(cursor: string | null, limit: number): Promise<Page<AorBindings>>
  /** Removes up to `max` AORs' due bindings (expiry index only, no full scan). */
  sweepExpired(now?: number, max?: number): Promise<number>
  /** Called for bindings removed by a sweep in this thread/process. Returns an unsubscribe. */
  onExpired(listener: ExpiredListener<AorBindings>): () => void
}

export type DialogState = 'early' | 'confirmed' | 'terminated'

export interface Dialog {
  /** The dialog id, see `dialogId`. */
  id: string
  setName: string
  destination: string
  state: DialogState
  createdAt: number
  lastActivity: number
  /** Absolute expiry, epoch ms. */
  expiresAt: number
  routeSet?: string[] | undefined
  nodeId?: string | undefined
}

export interface DialogStore {
  get(id: string): Promise<Dialog | null>
  put(dialog: Dialog): Promise<void>
  remove(id: string): Promise<boolean>
  /** Moves lastActivity (default now) and optionally expiresAt; false if the dialog is unknown. */
  touch(id: string, expiresAt?: number, lastActivity?: number): Promise<boolean>
  /** Dialogs not in state 'terminated' of a dispatcher set. */
  countBySet(setName: string): Promise<number>
  /** Dialogs not in state 'terminated' towards a destination URI. */
  countByDestination(destination: string): Promise<number>
  /** Stored dialogs (any state). */
  count(): Promise<number>
  sweepExpired(now?: number, max?: number): Promise<number>
  onExpired(listener: ExpiredListener<Dialog>): () => void
}

export interface Ban {
  /** An IP address, or IP + domain (see `banKey`). */
  key: string
  /** Epoch ms. */
  until: number
  reason: string
  createdAt: number
}

export interface BanStore {
  ban(key: string, until: number, reason: string): Promise<void>
  isBanned(key: string): Promise<boolean>
  get(key: string): Promise<Ban | null>
  /** Active bans, soonest lifted first. */
  list(limit?: number): Promise<Ban[]>
  remove(key: string): Promise<boolean>
  sweepExpired(now?: number, max?: number): Promise<number>
  onExpired(listener: ExpiredListener<Ban>): () => void
}

/**
 * Counters in fixed windows (failed digest attempts per user and source, ...), shared by every
 * thread of the process (lmdb) or every node (Redis) that opens the store.
 */
export interface CounterStore {
  /**
   * Adds `by` (default 1, > 0) to `key` and resolves to the new value, atomically across threads
   * and nodes. A counter's window starts at its first increment and lasts `windowMs`; the first
   * increment after it has passed starts again from 0 with a new window (so a result of `by`
   * means "first in this window").
   */
  incr(key: string, windowMs: number, by?: number): Promise<number>
  /** The value in the current window; 0 when absent or its window has passed. */
  get(key: string): Promise<number>
  /** Deletes the counter; resolves to whether it had a live window. */
  reset(key: string): Promise<boolean>
  /** Removes up to `max` counters whose window has passed (lmdb; Redis keys expire by themselves). */
  sweepExpired(now?: number, max?: number): Promise<number>
}

/** Digest credentials: HA1 = H(user:realm:password) for MD5 and/or SHA-256 (RFC 8760). */
export interface Credential {
  ha1Md5?: string | undefined
  ha1Sha256?: string | undefined
}

export interface CredentialStore {
  get(realm: string, user: string): Promise<Credential | null>
  put(realm: string, user: string, credential: Credential): Promise<void>
  remove(realm: string, user: string): Promise<boolean>
}

/** A node of the cluster as its heartbeat describes it (docs/ha.md "Node liveness"). */
export interface NodeBeat {
  id: string
  /** JSON the node writes about itself (its relay address, state, ...). */
  info: string
  /** When its liveness key expires unless it beats again (epoch ms, the writer's clock). */
  until: number
}

/**
 * What the nodes sharing a store know of each other (issue 15, docs/ha.md): liveness keys with a
 * TTL, and the dispatcher's operator states (drain/disable), which apply on every node and
 * survive a restart. Redis only: on lmdb (one node) `live` is always empty and `adminStates` holds
 * nothing (`beat` and `setAdminState` do nothing).
 */
export interface ClusterStore {
  readonly shared: boolean
  /** Writes this node's liveness key, expiring `ttlMs` from now. */
  beat(id: string, info: string, ttlMs: number): Promise<void>
  /** The nodes whose liveness key has not expired. */
  live(): Promise<NodeBeat[]>
  /** Removes a node's liveness key (a node that stops cleanly). */
  forget(id: string): Promise<void>
  /** `state` null: back to the configured state. Field: "SET URI". */
  setAdminState(set: string, uri: string, state: string | null): Promise<void>
  /** Operator states by "SET URI". */
  adminStates(): Promise<Record<string, string>>
}

export type StoreStatus = 'available' | 'unavailable'

export interface StoreOptions {
  /** Stamped on bindings and dialogs written without one. */
  nodeId?: string
  /** Clock (epoch ms); injected by tests. */
  now?: () => number
  /** How often due entries are swept from the expiry indexes; 0 disables. Default 1000. */
  sweepIntervalMs?: number
  /** Entries removed per sweep round. Default 1000 (up to 10 rounds per interval). */
  sweepBatch?: number
  /** Called on every availability change (Redis only ever changes). */
  onStatus?: (status: StoreStatus, err?: Error) => void
  /** Redis: per-command timeout. Default 1000 ms. */
  commandTimeoutMs?: number
  /** Redis: how long openStores waits for the first connection. Default 5000 ms. */
  connectTimeoutMs?: number
  /**
   * Redis: keys outlive their last expiry by this much (PEXPIREAT), a safety net that frees
   * memory even if no node sweeps. Default 3_600_000 (1 h).
   */
  graceMs?: number
  /** Redis: key prefix. Default 'sipedge:' (or `?prefix=` in the URL). */
  keyPrefix?: string
  /** LMDB: map size in bytes (default lmdb's, grows as needed). */
  mapSize?: number
  /**
   * Redis: called after every command with its round trip in seconds and whether it succeeded
   * (metrics, issue 15). Must be cheap; exceptions are ignored.
   */
  onCommand?: (seconds: number, ok: boolean) => void
}
