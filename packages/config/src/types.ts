// The normalised configuration: plain data, every key present, durations in milliseconds,
// sizes in bytes, single values turned into lists, deeply frozen. Safe to structuredClone /
// msgpack to workers (no class instances, no RegExp, no Map).

export type Proto = 'udp' | 'tcp' | 'tls' | 'ws' | 'wss'
export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent'
export type Algorithm = 'hash-callid' | 'hash-from-user' | 'hash-to-user' | 'round-robin' | 'weighted' | 'least-dialogs'
export type DestinationState = 'active' | 'disabled' | 'draining' | 'inactive'
export type DigestAlgorithm = 'MD5' | 'SHA-256'

export interface HostPort { host: string; port: number | null }
export interface AddrPort { address: string; port: number }

export interface ListenTls {
  cert: string
  key: string
  /** Server names this certificate is presented for (SNI); empty = default certificate. */
  sni: string[]
}
export interface ListenSpec {
  proto: Proto
  /** Bind address without brackets: "127.0.0.1", "::1", "0.0.0.0", "::". */
  address: string
  family: 4 | 6
  port: number
  /** Host (and port) put in Via/Record-Route/Contact instead of the bind address (behind NAT/VIP). */
  advertise: HostPort | null
  /** Per-listener certificate (tls/wss only); null = use the top-level `tls` section. */
  tls: ListenTls | null
  /** Canonical text form, e.g. "udp:127.0.0.1:5060", "tls:[::1]:5061". */
  id: string
}

export interface TlsCertificate { cert: string; key: string; server_names: string[] }
export interface TlsConfig {
  certificates: TlsCertificate[]
  min_version: 'TLSv1.2' | 'TLSv1.3'
  verify_client: boolean
  ca: string | null
}

export interface LimitsConfig {
  max_message_size: number
  max_connections: number
  /** null in the input: a tenth of max_connections, at least 16 (filled in by the schema). */
  max_connections_per_source: number
  idle_timeout: number
  partial_message_timeout: number
  ring_size: number
}

export interface TimersConfig { t1: number; t2: number; t4: number; timer_b: number; timer_f: number; timer_c: number }

export interface ProxyConfig {
  record_route: boolean
  max_forwards: number
  server_header: string | null
  user_agent: string
}

export interface RegistrarConfig {
  store: string
  min_expires: number
  default_expires: number
  max_expires: number
  max_contacts: number
}

export interface AuthDomain {
  realm: string
  users_file: string
  algorithms: DigestAlgorithm[]
  nonce_ttl: number
  methods: string[]
}
export interface AuthThrottleConfig { max_failures: number; window: number; ban_users: number; ban_failures: number; ban_time: number }
export interface AuthConfig {
  /** Regular expressions (source text) of User-Agents challenged with MD5 only. */
  md5_only_user_agents: string[]
  domains: Record<string, AuthDomain>
  throttle: AuthThrottleConfig
}

export interface ProbeConfig {
  enabled: boolean
  method: string
  interval: number
  timeout: number
  ok_codes: number[]
  failures_down: number
  successes_up: number
}
export interface Destination {
  uri: string
  weight: number
  priority: number
  attrs: Record<string, string>
  state: DestinationState
}
export interface FailoverConfig { on_timeout: boolean; codes: number[]; max_attempts: number }
export interface DispatcherSet {
  name: string
  algorithm: Algorithm
  destinations: Destination[]
  probe: ProbeConfig
  failover: FailoverConfig
}
export interface DispatcherConfig { sets: Record<string, DispatcherSet> }

export interface HeaderMatch { name: string; regex: string; ignore_case: boolean }
export interface RouteMatch {
  // null = condition not given (matches anything). Lists match if any element matches.
  method: string[] | null
  domain: string[] | null
  source: string[] | null
  source_net: string[] | null
  user_prefix: string[] | null
  header: HeaderMatch[] | null
  transport: Proto[] | null
}
export type RouteAction =
  | { type: 'register' }
  | { type: 'lookup' }
  | { type: 'dispatch'; set: string }
  | { type: 'forward'; uri: string }
  | { type: 'reject'; code: number; reason: string | null }
export interface AddHeader { name: string; value: string }
export interface RouteRule {
  /** Position in `routes` (0-based), for logs and metrics. */
  index: number
  name: string | null
  match: RouteMatch
  action: RouteAction
  rewrite_host: HostPort | null
  add_headers: AddHeader[]
  /** null: the top-level `topology_hiding.enabled`. */
  topology_hiding: boolean | null
}

/** `topology_hiding: true|false` is normalised to `{ enabled, call_id: false }`. */
export interface TopologyHidingConfig { enabled: boolean; call_id: boolean }
export interface DialogConfig { timeout: number; send_bye_on_timeout: boolean; secret: string | null; enabled: boolean; store: string; mirror: boolean }
export interface MetricsConfig { listen: AddrPort | null; path: string }
export interface AdminConfig {
  enabled: boolean
  listen: AddrPort | null
  token: string | null
  /** Always set after validation (default next to the LMDB store). */
  token_file: string
}
export interface SecurityConfig { drop_user_agents: string[] }
/** docs/ha.md. `id` is always set after validation. */
export interface NodeConfig { id: string; drain_timeout: number; heartbeat_interval: number; liveness_timeout: number; drain_retry_after: number }
export interface LogRotate { size: number; interval: number; keep: number }
export interface LoggingConfig { level: LogLevel; modules: Record<string, LogLevel>; file: string | null; rotate: LogRotate }
export interface PikeLimits { enabled: boolean; window: number; max_requests: number; ban_time: number }
export interface PikeConfig extends PikeLimits { allow: string[]; domains: Record<string, PikeLimits> }
export interface NatKeepalive { enabled: boolean; interval: number; method: 'auto' | 'options' | 'crlf'; failures_remove: number }
export interface NatConfig { force_rport: boolean; fix_contact: boolean; private_networks: string[]; keepalive: NatKeepalive }

export interface Config {
  workers: number
  helper_thread_nice: number
  listen: ListenSpec[]
  domains: string[]
  tls: TlsConfig
  limits: LimitsConfig
  timers: TimersConfig
  proxy: ProxyConfig
  store: string
  registrar: RegistrarConfig
  auth: AuthConfig
  dispatcher: DispatcherConfig
  routes: RouteRule[]
  dialog: DialogConfig
  topology_hiding: TopologyHidingConfig
  nat: NatConfig
  pike: PikeConfig
  security: SecurityConfig
  node: NodeConfig
  metrics: MetricsConfig
  admin: AdminConfig
  logging: LoggingConfig
}

type DeepReadonly<T> = T extends (infer U)[] ? readonly DeepReadonly<U>[] : T extends object ? { readonly [K in keyof T]: DeepReadonly<T[K]> } : T
/** What loadConfigFile returns: the same shape, read-only all the way down (it is frozen). */
export type FrozenConfig = DeepReadonly<Config>
