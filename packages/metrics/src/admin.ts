// The admin API's contract with the rest of sipedge. The HTTP server (http.ts) does routing,
// authentication, JSON and errors; everything it serves comes from an AdminBackend that the cli
// builds over the engine, the workers (control messages) and the stores.

/** Thrown (or rejected with) by a backend to answer with a specific status and stable code. */
export class AdminError extends Error {
  readonly code: string
  readonly status: number
  constructor(code: string, message: string, status: number) {
    super(message)
    this.name = 'AdminError'
    this.code = code
    this.status = status
  }
}

export interface ReadyStatus {
  ready: boolean
  /** Why not ready (e.g. "draining", "workers starting", "store unreachable"). */
  reasons?: string[]
}
export interface Page<T> {
  items: T[]
  /** Pass as `cursor` to get the next page; null on the last page. */
  next: string | null
}
export interface RegistrationQuery {
  /** Exact address of record, or undefined for all. */
  aor?: string
  cursor?: string
  /** 1..1000, default 100. */
  limit: number
}
export interface BindingInfo {
  contact: string
  expires: number
  received?: string | null
  path?: string[]
  instance?: string | null
  regId?: number | null
  userAgent?: string | null
  [k: string]: unknown
}
export interface RegistrationInfo { aor: string; bindings: BindingInfo[] }
export interface DialogCounts {
  total: number
  bySet: Record<string, number>
  [k: string]: unknown
}
export interface DestinationInfo {
  uri: string
  state: string
  weight?: number
  priority?: number
  activeDialogs?: number
  lastProbe?: { at: string; result: string } | null
  [k: string]: unknown
}
export interface DispatcherInfo {
  sets: Array<{ name: string; algorithm: string; destinations: DestinationInfo[] }>
}
export type DestinationAction = 'drain' | 'enable' | 'disable'
export interface BanInfo {
  address: string
  reason: string
  /** ISO time the ban ends. */
  until: string
  domain?: string | null
  [k: string]: unknown
}
export interface ReloadResult {
  ok: boolean
  generation: number
  /** Config errors ({code, message, path}) when ok is false. */
  errors?: Array<{ code: string; message: string; path?: string }>
  [k: string]: unknown
}
export interface TraceFilters { callIds: string[]; sources: string[] }
/** GET /api/node (docs/ha.md): this node and its drain. */
export interface NodeStatus {
  id: string
  state: 'serving' | 'draining'
  /** Dialogs this node's workers still track (not terminated). */
  dialogs: number
  /** Requests this node still routes (no final response yet). */
  transactions: number
  /** ISO time the drain started / ends at the latest (null while serving). */
  drainStartedAt: string | null
  deadline: string | null
  [k: string]: unknown
}

export interface AdminBackend {
  /** Liveness beyond "the event loop answers" (optional). */
  health?(): Promise<{ ok: boolean; [k: string]: unknown }>
  ready(): Promise<ReadyStatus>
  stats(): Promise<Record<string, unknown>>
  registrations(q: RegistrationQuery): Promise<Page<RegistrationInfo>>
  dialogCounts(): Promise<DialogCounts>
  /** null: no such dialog (404). */
  dialog(callId: string): Promise<Record<string, unknown> | null>
  dispatcher(): Promise<DispatcherInfo>
  /** Unknown set or destination: throw AdminError('ERR_ADMIN_NOT_FOUND', ..., 404). Resolves with the new state. */
  setDestinationState(set: string, uri: string, action: DestinationAction): Promise<DestinationInfo>
  bans(): Promise<BanInfo[]>
  /** false: the address was not banned (404). */
  unban(address: string): Promise<boolean>
  reload(): Promise<ReloadResult>
  /** Reopen log files (same as SIGHUP); optional. */
  reopenLogs?(): Promise<void>
  /** SIP message tracing filters; optional (501 without). */
  traceFilters?(): Promise<TraceFilters>
  setTraceFilters?(f: TraceFilters): Promise<TraceFilters>
  /** This node (HA, docs/ha.md); optional (501 without). */
  node?(): Promise<NodeStatus>
  /** Starts the drain (idempotent); resolves with the status. */
  drainNode?(): Promise<NodeStatus>
}
