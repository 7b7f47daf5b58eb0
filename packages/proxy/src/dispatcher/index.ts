// Dispatcher (minimal, issue 5): sets of application servers from config, destination choice,
// sequential failover order, destination state (config state x probe state x passive suspicion)
// and OPTIONS probing spread over the workers and over the interval.
//
// Multi-worker model (docs/proxy.md "Dispatcher state across workers"): every worker holds the
// whole table. A destination is probed by ONE worker only: the one with index
// fnv(set + " " + uri) % workers. Probe results change that worker's table and are reported via
// `onDestinationState` (the proxy forwards it upward as a `dispatcher-state` control message when
// the host offers `postControl`; a relay in the primary can fan it out, and `applyRemoteState`
// takes it in). Until that relay exists the other workers rely on passive detection: a timeout
// or 503 from a destination makes it "suspect" (skipped) for a while.
import { callIdHashOf, fnv1a, parseUri, type SipMessage } from '@sipedge/sip'
import type { FrozenConfig } from '@sipedge/config'
import { hopOf, type Hop, type Resolver } from '../resolver.js'

export type DestState = 'active' | 'inactive' | 'draining'

export class DispatchDestination {
  readonly set: string
  readonly uri: string
  readonly hop: Hop
  readonly index: number
  readonly priority: number
  readonly weight: number
  /** From config: inactive never used, draining gets no new requests. */
  configState: DestState
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
  /** Requests sent / failures seen (metrics). */
  sent: number
  failed: number

  constructor(set: string, uri: string, index: number, priority: number, weight: number, state: DestState) {
    this.set = set
    this.uri = uri
    this.hop = hopOf(parseUri(uri))
    this.index = index
    this.priority = priority
    this.weight = weight
    this.configState = state
    this.probeState = 'active'
    this.suspectUntil = 0
    this.address = null
    this.probeFailures = 0
    this.probeSuccesses = 0
    this.probeSeq = 0
    this.probeOutstanding = false
    this.probeSentAt = 0
    this.sent = 0
    this.failed = 0
  }

  usable(now: number): boolean {
    return this.configState === 'active' && this.probeState === 'active' && this.suspectUntil <= now
  }

  /** The state shown to operators / other workers. */
  get state(): DestState {
    return this.configState !== 'active' ? this.configState : this.probeState
  }
}

export class DispatchSet {
  readonly name: string
  readonly algorithm: string
  readonly destinations: readonly DispatchDestination[]
  readonly failoverOnTimeout: boolean
  readonly failoverCodes: ReadonlySet<number>
  readonly maxAttempts: number
  readonly probe: FrozenConfig['dispatcher']['sets'][string]['probe']
  readonly okCodes: ReadonlySet<number>
  /** "ip:port" of UDP destinations and "ip" of stream ones (ephemeral source ports): route `source`. */
  readonly sources: Set<string>
  /** How long a passively failed destination is skipped. */
  readonly suspectMs: number
  rr: number

  constructor(name: string, cfg: FrozenConfig['dispatcher']['sets'][string]) {
    this.name = name
    this.algorithm = cfg.algorithm
    this.destinations = cfg.destinations.map((d, i) => new DispatchDestination(name, d.uri, i, d.priority, d.weight, d.state))
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
  /** A probe result changed a destination's state (local probe or passive mark). */
  onDestinationState?(set: string, uri: string, state: DestState): void
}

/** Sends one probe; calls `done(status | 0 for timeout/transport error)` once. */
export type ProbeSender = (set: DispatchSet, dest: DispatchDestination, seq: number) => void

export class Dispatcher {
  readonly sets: ReadonlyMap<string, DispatchSet>
  private readonly opts: DispatcherOptions
  private readonly timers: NodeJS.Timeout[]
  private readonly probeTimers: NodeJS.Timeout[]
  private closed: boolean

  constructor(config: FrozenConfig, opts: DispatcherOptions) {
    this.opts = opts
    const sets = new Map<string, DispatchSet>()
    for (const [name, cfg] of Object.entries(config.dispatcher.sets)) sets.set(name, new DispatchSet(name, cfg))
    this.sets = sets
    this.timers = []
    this.probeTimers = []
    this.closed = false
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

  /** Source-address set for route `source` conditions (empty for an unknown name). */
  sourceSet(name: string): ReadonlySet<string> {
    return this.sets.get(name)?.sources ?? EMPTY
  }

  /**
   * The destinations to try for `req`, in order, at most `maxAttempts`: the usable destinations
   * of the best priority, starting at the one the algorithm picks (hash-callid: FNV-1a of the
   * Call-ID mod their count: stable for a Call-ID while the set of usable destinations stays the
   * same), then the rest in set order (sequential failover), then worse priorities. When nothing
   * is usable, config-active destinations that are only suspected/probed down are tried as a last
   * resort (passive marks may be stale). Empty: nothing to send to (503).
   */
  plan(set: DispatchSet, req: SipMessage): DispatchDestination[] {
    const now = this.opts.now()
    const all = set.destinations
    const usable: DispatchDestination[] = []
    for (let i = 0; i < all.length; i++) if (all[i]!.usable(now)) usable.push(all[i]!)
    let list = usable
    if (list.length === 0) {
      for (let i = 0; i < all.length; i++) if (all[i]!.configState === 'active') list.push(all[i]!)
      if (list.length === 0) return list
    }
    let minPrio = list[0]!.priority
    for (let i = 1; i < list.length; i++) if (list[i]!.priority < minPrio) minPrio = list[i]!.priority
    const best: DispatchDestination[] = []
    const rest: DispatchDestination[] = []
    for (let i = 0; i < list.length; i++) (list[i]!.priority === minPrio ? best : rest).push(list[i]!)
    const start = pick(set, req, best.length)
    const out: DispatchDestination[] = []
    const max = set.maxAttempts
    for (let k = 0; k < best.length && out.length < max; k++) out.push(best[(start + k) % best.length]!)
    rest.sort((a, b) => a.priority - b.priority)
    for (let k = 0; k < rest.length && out.length < max; k++) out.push(rest[k]!)
    return out
  }

  /** Passive failure (timeout, transport error, 503): skip the destination for a while. */
  markFailed(d: DispatchDestination): void {
    d.failed++
    const set = this.sets.get(d.set)
    const wasUsable = d.suspectUntil <= this.opts.now()
    d.suspectUntil = this.opts.now() + (set?.suspectMs ?? 30_000)
    if (wasUsable) this.opts.onDestinationState?.(d.set, d.uri, 'inactive')
  }

  /** A response came from the destination: it is alive. */
  markAlive(d: DispatchDestination): void {
    if (d.suspectUntil !== 0) {
      d.suspectUntil = 0
      if (d.probeState === 'active') this.opts.onDestinationState?.(d.set, d.uri, d.state)
    }
  }

  /** State reported by another worker (the destination's prober) through the control relay. */
  applyRemoteState(setName: string, uri: string, state: DestState): boolean {
    const d = this.sets.get(setName)?.destinations.find(x => x.uri === uri)
    if (d === undefined) return false
    if (state === 'draining') d.configState = 'draining'
    else { d.probeState = state; if (state === 'active') d.suspectUntil = 0 }
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
   * interval instead of leaving in a burst; the first one after a phase derived from the set name.
   */
  startProbing(send: ProbeSender): void {
    for (const set of this.sets.values()) {
      if (!set.probe.enabled) continue
      const mine = set.destinations.filter(d => d.configState !== 'inactive' && this.isProber(d))
      if (mine.length === 0) continue
      const step = Math.max(10, Math.floor(set.probe.interval / mine.length))
      let k = 0
      const tick = (): void => {
        if (this.closed) return
        const now = this.opts.now()
        // Probe timeouts: an outstanding probe older than probe.timeout counts as failed.
        for (const d of mine) if (d.probeOutstanding && now - d.probeSentAt >= set.probe.timeout) this.probeResult(set, d, d.probeSeq, 0)
        const d = mine[k++ % mine.length]!
        if (d.probeOutstanding || d.configState === 'inactive') return
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
    this.opts.onDestinationState?.(d.set, d.uri, d.state)
  }

  close(): void {
    this.closed = true
    for (const t of this.timers) clearTimeout(t)
    for (const t of this.probeTimers) clearInterval(t)
    this.timers.length = 0
    this.probeTimers.length = 0
  }
}

const EMPTY: ReadonlySet<string> = new Set()

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

/** Index (0..n-1) where the failover order starts. */
function pick(set: DispatchSet, req: SipMessage, n: number): number {
  if (n <= 1) return 0
  switch (set.algorithm) {
    case 'hash-callid': {
      // The same FNV-1a the primary shards with; computed from the header bytes, no string copy.
      const hs = req.headers
      for (let i = 0; i < hs.length; i++) {
        const f = hs[i]!
        if (f.name === 'call-id') return fnv1a(req.buf, f.valueStart, f.valueEnd) % n
      }
      return 0
    }
    case 'hash-from-user': return userHash(req.from.uri) % n
    case 'hash-to-user': return userHash(req.to.uri) % n
    // TODO(issue 6): weighted and least-dialogs; round-robin stands in for them meanwhile.
    default: return set.rr++ % n
  }
}
