// Dispatcher (docs/dispatcher.md): sets of application servers from config, destination choice
// per algorithm, sequential failover order, destination state (operator state x probe state x
// passive suspicion), OPTIONS probing spread over the workers and over the interval, and the
// operator actions of the admin API (drain / enable / disable).
//
// Multi-worker model: every worker holds the whole table. A destination is probed by ONE worker
// only: the one with index fnv(set + " " + uri) % workers. Probe verdicts change that worker's
// table and are reported via `onDestinationState`; the proxy posts them as `dispatcher-state`
// control messages, the primary relays them, and the other workers take them in with
// `applyRemoteState`. Passive detection (a timeout or 503 on a real request) is each worker's own
// observation: the destination is "suspect" (skipped) for a while on that worker.
//
// Operator state: `configState` comes from the file; `adminState` is a run-time override set by
// the admin API (`dispatcher-admin` control message, sent to every worker). The effective
// operator state is adminState ?? configState. A reload builds a new Dispatcher: the file wins and
// admin overrides are dropped (docs/dispatcher.md "Reload semantics").
import { callIdHashOf, fnv1a, parseUri, type SipMessage } from '@sipedge/sip'
import type { FrozenConfig } from '@sipedge/config'
import { hopOf, type Hop, type Resolver } from '@sipedge/proxy'

/** Operator states (file or admin API). */
export type AdminState = 'active' | 'disabled' | 'draining'
/** What operators and other workers see: the operator state, or `inactive` when probing/passive detection says down. */
export type DestState = 'active' | 'inactive' | 'disabled' | 'draining'
export type AdminAction = 'drain' | 'enable' | 'disable'

const ACTION_STATE: Readonly<Record<AdminAction, AdminState>> = { drain: 'draining', enable: 'active', disable: 'disabled' }

export function adminStateOf(s: string): AdminState {
  return s === 'draining' ? 'draining' : s === 'disabled' || s === 'inactive' ? 'disabled' : 'active'
}

export class DispatchDestination {
  readonly set: string
  readonly uri: string
  readonly hop: Hop
  readonly index: number
  readonly priority: number
  readonly weight: number
  readonly attrs: Readonly<Record<string, string>>
  /** From the config file. */
  configState: AdminState
  /** Run-time override from the admin API (null: none); dropped on reload. */
  adminState: AdminState | null
  /** From probes (ours or relayed): inactive after failures_down failed probes. */
  probeState: 'active' | 'inactive'
  /** Passive detection: skipped until this time (timeout / 503 seen), ms on the proxy clock. */
  suspectUntil: number
  /** Resolved address (IP literal: the host itself), null until resolved / when resolution failed. */
  address: string | null
  /** Probing bookkeeping (only on the worker that probes this destination). */
  probeFailures: number
  probeSuccesses: number
  probeSeq: number
  probeOutstanding: boolean
  probeSentAt: number
  /** Last probe result: final status, 0 = timeout / transport error, -1 = never probed here. */
  lastProbeStatus: number
  lastProbeAt: number
  /** Requests sent / failures seen (metrics). */
  sent: number
  failed: number
  /** Dialogs of this worker towards this destination that are not terminated (least-dialogs). */
  dialogs: number

  constructor(set: string, uri: string, index: number, priority: number, weight: number, state: string, attrs: Readonly<Record<string, string>> = {}) {
    this.set = set
    this.uri = uri
    this.hop = hopOf(parseUri(uri))
    this.index = index
    this.priority = priority
    this.weight = weight
    this.attrs = attrs
    this.configState = adminStateOf(state)
    this.adminState = null
    this.probeState = 'active'
    this.suspectUntil = 0
    this.address = null
    this.probeFailures = 0
    this.probeSuccesses = 0
    this.probeSeq = 0
    this.probeOutstanding = false
    this.probeSentAt = 0
    this.lastProbeStatus = -1
    this.lastProbeAt = 0
    this.sent = 0
    this.failed = 0
    this.dialogs = 0
  }

  /** Effective operator state: the admin override, else the file's. */
  get operState(): AdminState {
    return this.adminState ?? this.configState
  }

  /** May get new dialogs / out-of-dialog requests now. */
  usable(now: number): boolean {
    return this.operState === 'active' && this.probeState === 'active' && this.suspectUntil <= now
  }

  /** The state shown to operators / other workers. */
  get state(): DestState {
    const o = this.operState
    return o !== 'active' ? o : this.probeState
  }
}

export class DispatchSet {
  readonly name: string
  readonly algorithm: string
  readonly destinations: readonly DispatchDestination[]
  readonly byUri: ReadonlyMap<string, DispatchDestination>
  readonly failoverOnTimeout: boolean
  readonly failoverCodes: ReadonlySet<number>
  readonly maxAttempts: number
  readonly probe: FrozenConfig['dispatcher']['sets'][string]['probe']
  readonly okCodes: ReadonlySet<number>
  /** "ip:port" of UDP destinations and "ip" of stream ones (ephemeral source ports): route `source`. */
  readonly sources: Set<string>
  /** How long a passively failed destination is skipped. */
  readonly suspectMs: number
  /** Round-robin cursor (round-robin, least-dialogs tie break). */
  rr: number

  constructor(name: string, cfg: FrozenConfig['dispatcher']['sets'][string]) {
    this.name = name
    this.algorithm = cfg.algorithm
    this.destinations = cfg.destinations.map((d, i) => new DispatchDestination(name, d.uri, i, d.priority, d.weight, d.state, d.attrs))
    const byUri = new Map<string, DispatchDestination>()
    for (const d of this.destinations) byUri.set(d.uri, d)
    this.byUri = byUri
    this.failoverOnTimeout = cfg.failover.on_timeout
    this.failoverCodes = new Set(cfg.failover.codes)
    this.maxAttempts = cfg.failover.max_attempts
    this.probe = cfg.probe
    this.okCodes = new Set(cfg.probe.ok_codes)
    this.sources = new Set()
    this.suspectMs = cfg.probe.enabled ? Math.max(2 * cfg.probe.interval, 5_000) : 30_000
    this.rr = 0
  }

  addSource(d: DispatchDestination): void {
    if (d.address === null) return
    if (d.hop.transport === 'udp') this.sources.add(d.address + ':' + d.hop.port)
    else this.sources.add(d.address)
  }
}

export interface DispatcherOptions {
  workerIndex: number
  /** Number of workers sharing the probing (config.workers; 0 = in-process, counts as 1). */
  workers: number
  now(): number
  resolver: Resolver
  /** A probe verdict changed a destination's state (passive marks never report: see markFailed). */
  onDestinationState?(set: string, uri: string, state: DestState): void
  /** Random numbers in [0, 1) for `weighted` (tests inject a seeded one). */
  random?(): number
}

/** Sends one probe; the proxy reports the outcome with `probeResult`. */
export type ProbeSender = (set: DispatchSet, dest: DispatchDestination, seq: number) => void

export class Dispatcher {
  readonly sets: ReadonlyMap<string, DispatchSet>
  private readonly opts: DispatcherOptions
  private readonly timers: NodeJS.Timeout[]
  private readonly probeTimers: NodeJS.Timeout[]
  private readonly random: () => number
  private closed: boolean
  // Scratch lists reused by plan(): plan() returns a fresh array, these never escape.
  private readonly scratchUsable: DispatchDestination[]
  private readonly scratchBest: DispatchDestination[]
  private readonly scratchRest: DispatchDestination[]

  constructor(config: FrozenConfig, opts: DispatcherOptions) {
    this.opts = opts
    const sets = new Map<string, DispatchSet>()
    for (const [name, cfg] of Object.entries(config.dispatcher.sets)) sets.set(name, new DispatchSet(name, cfg))
    this.sets = sets
    this.timers = []
    this.probeTimers = []
    this.random = opts.random ?? Math.random
    this.closed = false
    this.scratchUsable = []
    this.scratchBest = []
    this.scratchRest = []
    for (const s of sets.values()) {
      for (const d of s.destinations) {
        const a = opts.resolver.peek(d.hop.host)
        if (a !== undefined && a !== null) { d.address = a; s.addSource(d) } else void this.resolve(s, d)
      }
    }
  }

  private async resolve(s: DispatchSet, d: DispatchDestination): Promise<void> {
    const a = await this.opts.resolver.resolve(d.hop.host)
    if (a !== null && !this.closed) { d.address = a; s.addSource(d) }
  }

  get(name: string): DispatchSet | undefined {
    return this.sets.get(name)
  }

  /** The destination `uri` of set `set`, if configured. */
  find(set: string, uri: string): DispatchDestination | undefined {
    return this.sets.get(set)?.byUri.get(uri)
  }

  /** Source-address set for route `source` conditions (empty for an unknown name). */
  sourceSet(name: string): ReadonlySet<string> {
    return this.sets.get(name)?.sources ?? EMPTY
  }

  /**
   * The destinations to try for a new dialog / out-of-dialog request, in order, at most
   * `maxAttempts`: the usable destinations of the best priority, starting at the one the
   * algorithm picks, then the rest of them in set order (sequential failover), then worse
   * priorities. When nothing is usable, operator-active destinations that are only suspected /
   * probed down are tried as a last resort (passive marks may be stale); draining and disabled
   * ones never. Empty: nothing to send to (503).
   */
  plan(set: DispatchSet, req: SipMessage): DispatchDestination[] {
    const now = this.opts.now()
    const all = set.destinations
    const usable = this.scratchUsable
    usable.length = 0
    for (let i = 0; i < all.length; i++) if (all[i]!.usable(now)) usable.push(all[i]!)
    if (usable.length === 0) {
      for (let i = 0; i < all.length; i++) if (all[i]!.operState === 'active') usable.push(all[i]!)
      if (usable.length === 0) return []
    }
    let minPrio = usable[0]!.priority
    for (let i = 1; i < usable.length; i++) if (usable[i]!.priority < minPrio) minPrio = usable[i]!.priority
    const best = this.scratchBest
    const rest = this.scratchRest
    best.length = 0
    rest.length = 0
    for (let i = 0; i < usable.length; i++) (usable[i]!.priority === minPrio ? best : rest).push(usable[i]!)
    const out: DispatchDestination[] = []
    const max = set.maxAttempts
    const start = this.pick(set, req, best)
    for (let k = 0; k < best.length && out.length < max; k++) out.push(best[(start + k) % best.length]!)
    if (rest.length > 1) rest.sort(byPriority)
    for (let k = 0; k < rest.length && out.length < max; k++) out.push(rest[k]!)
    usable.length = 0
    best.length = 0
    rest.length = 0
    return out
  }

  /** Index into `best` (n > 0 destinations of one priority) where the failover order starts. */
  private pick(set: DispatchSet, req: SipMessage, best: readonly DispatchDestination[]): number {
    const n = best.length
    if (n <= 1) return 0
    switch (set.algorithm) {
      case 'hash-callid': {
        // The same FNV-1a the primary shards with, over the header bytes: no string copy.
        const hs = req.headers
        for (let i = 0; i < hs.length; i++) {
          const f = hs[i]!
          if (f.name === 'call-id') return fnv1a(req.buf, f.valueStart, f.valueEnd) % n
        }
        return 0
      }
      case 'hash-from-user': return userHash(req.from.uri) % n
      case 'hash-to-user': return userHash(req.to.uri) % n
      case 'weighted': {
        // Weighted random: P(d) = weight / total. Weight 0 is chosen only when every
        // destination of the priority has weight 0 (it still follows in the failover order).
        let total = 0
        for (let i = 0; i < n; i++) total += best[i]!.weight
        if (total <= 0) return set.rr++ % n
        let r = this.random() * total
        for (let i = 0; i < n; i++) {
          r -= best[i]!.weight
          if (r < 0) return i
        }
        for (let i = n - 1; i >= 0; i--) if (best[i]!.weight > 0) return i
        return 0
      }
      case 'least-dialogs': {
        // Fewest active dialogs (this worker's table; Call-IDs spread evenly over the workers, so
        // balancing each worker's share balances the whole); ties broken round-robin.
        const off = set.rr++ % n
        let bi = off
        let bc = best[off]!.dialogs
        for (let k = 1; k < n; k++) {
          const i = (off + k) % n
          const c = best[i]!.dialogs
          if (c < bc) { bc = c; bi = i }
        }
        return bi
      }
      default: return set.rr++ % n // round-robin
    }
  }

  /**
   * Passive failure (timeout, transport error, 503): this worker skips the destination for a
   * while. Not a state change: only probe verdicts (and operators) change the state that is
   * reported, logged and relayed (issue "Safe on a public address" 8: requests the backend
   * refused or ignored under garbage traffic made a healthy destination "flap" 184 times a minute
   * while every probe succeeded). `suspect` in the snapshot shows it.
   */
  markFailed(d: DispatchDestination): void {
    d.failed++
    const set = this.sets.get(d.set)
    d.suspectUntil = this.opts.now() + (set?.suspectMs ?? 30_000)
  }

  /** A response came from the destination: it is alive (the suspicion ends; nothing is reported). */
  markAlive(d: DispatchDestination): void {
    if (d.suspectUntil !== 0) d.suspectUntil = 0
  }

  /**
   * Operator action from the admin API (`dispatcher-admin`): drain (no new dialogs, existing
   * ones continue), enable, disable. `uri` '*' applies to every destination of the set. Returns
   * how many destinations changed; 0 when set/uri are unknown.
   */
  admin(setName: string, uri: string, action: AdminAction): number {
    const set = this.sets.get(setName)
    const state = ACTION_STATE[action]
    if (set === undefined || state === undefined) return 0
    let n = 0
    for (const d of set.destinations) {
      if (uri !== '*' && d.uri !== uri) continue
      d.adminState = state === d.configState ? null : state
      if (state === 'active') d.suspectUntil = 0
      n++
    }
    return n
  }

  /** State reported by another worker (the destination's prober) through the control relay. */
  applyRemoteState(setName: string, uri: string, state: DestState): boolean {
    const d = this.find(setName, uri)
    if (d === undefined) return false
    if (state === 'active' || state === 'inactive') {
      d.probeState = state
      if (state === 'active') d.suspectUntil = 0
    } else {
      d.adminState = state === d.configState ? null : state
    }
    return true
  }

  /** Whether this worker probes `d`: fnv(set + " " + uri) % workers === workerIndex. */
  isProber(d: DispatchDestination): boolean {
    const n = Math.max(1, this.opts.workers)
    return proberIndex(d.set, d.uri, n) === this.opts.workerIndex % n
  }

  /**
   * Starts probing the destinations this worker owns: per set, one unref'd timer every
   * interval / (destinations owned), probing them in turn, so probes are spread evenly over the
   * interval instead of leaving in a burst; the first one after a phase derived from the set
   * name. Disabled destinations are skipped (their slot stays, so the spacing does not change
   * when an operator disables one); draining ones are probed (their dialogs still need them).
   */
  startProbing(send: ProbeSender): void {
    for (const set of this.sets.values()) {
      if (!set.probe.enabled) continue
      const mine = set.destinations.filter(d => this.isProber(d))
      if (mine.length === 0) continue
      const step = Math.max(10, Math.floor(set.probe.interval / mine.length))
      let k = 0
      const tick = (): void => {
        if (this.closed) return
        const now = this.opts.now()
        // Probe timeouts: an outstanding probe older than probe.timeout counts as failed.
        for (const d of mine) if (d.probeOutstanding && now - d.probeSentAt >= set.probe.timeout) this.probeResult(set, d, d.probeSeq, 0)
        const d = mine[k++ % mine.length]!
        if (d.probeOutstanding || d.operState === 'disabled') return
        d.probeSeq++
        d.probeOutstanding = true
        d.probeSentAt = now
        send(set, d, d.probeSeq)
      }
      const phase = fnv(set.name) % step
      const first = setTimeout(() => {
        tick()
        const t = setInterval(tick, step)
        t.unref()
        this.probeTimers.push(t)
      }, phase)
      first.unref()
      this.timers.push(first)
    }
  }

  /** Result of probe `seq` of `d`: a final status, or 0 for timeout / transport error. */
  probeResult(set: DispatchSet, d: DispatchDestination, seq: number, status: number): void {
    if (seq !== d.probeSeq || !d.probeOutstanding) return
    d.probeOutstanding = false
    d.lastProbeStatus = status
    d.lastProbeAt = this.opts.now()
    const ok = status !== 0 && set.okCodes.has(status)
    if (ok) {
      d.probeFailures = 0
      d.probeSuccesses++
      if (d.suspectUntil !== 0) d.suspectUntil = 0
      if (d.probeState === 'inactive' && d.probeSuccesses >= set.probe.successes_up) this.changeProbeState(d, 'active')
    } else {
      d.probeSuccesses = 0
      d.probeFailures++
      if (d.probeState === 'active' && d.probeFailures >= set.probe.failures_down) this.changeProbeState(d, 'inactive')
    }
  }

  private changeProbeState(d: DispatchDestination, s: 'active' | 'inactive'): void {
    d.probeState = s
    this.opts.onDestinationState?.(d.set, d.uri, s)
  }

  /**
   * Carries run-time knowledge into the dispatcher built from a new configuration: probe and
   * passive state of destinations that still exist. Admin overrides are NOT carried: the file
   * wins on reload.
   */
  inherit(old: Dispatcher): void {
    for (const s of this.sets.values()) {
      const os = old.get(s.name)
      if (os === undefined) continue
      for (const d of s.destinations) {
        const od = os.byUri.get(d.uri)
        if (od === undefined) continue
        d.probeState = od.probeState
        d.suspectUntil = od.suspectUntil
        d.probeFailures = od.probeFailures
        d.probeSuccesses = od.probeSuccesses
        d.lastProbeStatus = od.lastProbeStatus
        d.lastProbeAt = od.lastProbeAt
        d.sent = od.sent
        d.failed = od.failed
        if (od.address !== null && d.address === null) { d.address = od.address; s.addSource(d) }
      }
      s.rr = os.rr
    }
  }

  /** `query('dispatcher')`: sets and destinations as plain data (docs/contracts.md "Query results"). */
  snapshot(): DispatcherSnapshot {
    const now = this.opts.now()
    const sets: DispatcherSnapshot['sets'] = []
    for (const s of this.sets.values()) {
      sets.push({
        name: s.name,
        algorithm: s.algorithm,
        probing: s.probe.enabled,
        destinations: s.destinations.map(d => ({
          uri: d.uri,
          state: d.state,
          configState: d.configState,
          adminState: d.adminState,
          probe: {
            state: d.probeState,
            prober: this.isProber(d),
            failures: d.probeFailures,
            successes: d.probeSuccesses,
            lastStatus: d.lastProbeStatus < 0 ? null : d.lastProbeStatus,
            lastAt: d.lastProbeAt === 0 ? null : d.lastProbeAt,
          },
          suspect: d.suspectUntil > now,
          weight: d.weight,
          priority: d.priority,
          attrs: { ...d.attrs },
          dialogs: d.dialogs,
          sent: d.sent,
          failed: d.failed,
        })),
      })
    }
    return { workerIndex: this.opts.workerIndex, sets }
  }

  close(): void {
    this.closed = true
    for (const t of this.timers) clearTimeout(t)
    for (const t of this.probeTimers) clearInterval(t)
    this.timers.length = 0
    this.probeTimers.length = 0
  }
}

export interface DestinationSnapshot {
  uri: string
  state: DestState
  configState: AdminState
  adminState: AdminState | null
  probe: { state: 'active' | 'inactive'; prober: boolean; failures: number; successes: number; lastStatus: number | null; lastAt: number | null }
  suspect: boolean
  weight: number
  priority: number
  attrs: Record<string, string>
  dialogs: number
  sent: number
  failed: number
}
export interface DispatcherSnapshot {
  workerIndex: number
  sets: Array<{ name: string; algorithm: string; probing: boolean; destinations: DestinationSnapshot[] }>
}

const EMPTY: ReadonlySet<string> = new Set()

function byPriority(a: DispatchDestination, b: DispatchDestination): number {
  return a.priority - b.priority
}

function fnv(s: string): number {
  return callIdHashOf(s)
}

export function proberIndex(set: string, uri: string, workers: number): number {
  return fnv(set + ' ' + uri) % Math.max(1, workers)
}

function userHash(uri: string): number {
  const at = uri.indexOf('@')
  const colon = uri.indexOf(':')
  return callIdHashOf(at > colon ? uri.slice(colon + 1, at) : uri)
}
