// pike: flood detection and the ban table, in the primary, before a frame enters a ring (the
// cheapest place, and the only one that sees every source). docs/security.md "Flood detection".
//
// Per source address, a sliding window of requests estimated from two fixed buckets (the current
// window's count plus the previous window's, weighted by how much of it still overlaps): one Map
// lookup and a few float operations per request. Requests whose Request-URI host (read from the
// start line, no parse) is one of `domains` are counted in that domain's own window and
// threshold; responses are never counted. Over the threshold the source is banned for
// `banTimeMs`: its datagrams and stream messages are dropped before the Call-ID scan, its stream
// connections closed and new ones refused. Sources in `allow` are never banned.
//
// The ban table is used whether or not counting is on: workers' bans (auth failures across many
// users, the `ban` control message) and bans shared through the store land here too. A coarse
// sweep timer forgets quiet sources and lifts expired bans; it runs only while either map holds
// something (no fixed idle cost).
import { BlockList, isIPv4, isIPv6 } from 'node:net'

export interface PikeClass {
  /** Count requests of this class (global: pike.enabled; a domain: its `enabled`). */
  enabled: boolean
  windowMs: number
  maxRequests: number
  banTimeMs: number
}

export interface PikeSettings extends PikeClass {
  /** CIDR blocks (IPv4 and IPv6) never banned. */
  allow: readonly string[]
  /** Request-URI host (lower case) -> its own window and threshold. */
  domains: Readonly<Record<string, PikeClass>>
}

/** Where a ban came from. */
export type BanOrigin = 'pike' | 'worker' | 'store' | 'admin'

export interface BanRecord {
  readonly address: string
  /** `flood` (pike), `auth` (a worker's digest throttle), or what the store said. */
  reason: string
  /** The pike.domains entry whose threshold was crossed; null: the global one, or not a flood. */
  domain: string | null
  origin: BanOrigin
  /** Epoch ms the ban began. */
  since: number
  /** Epoch ms the ban ends. */
  until: number
  /** Datagrams and stream messages dropped, and connections refused, while banned. */
  dropped: number
  /** Requests counted in the window when the threshold was crossed (pike bans). */
  requests: number
  /** true once the ban is known to be in the shared store (written or read there). */
  shared: boolean
}

export interface PikeListener {
  /** A new ban (not an extension of one in force). */
  banned?(b: BanRecord): void
  /** A ban ended: `expired` (its time ran out) or `lifted` (admin, or gone from the shared store). */
  ended?(b: BanRecord, how: 'expired' | 'lifted'): void
}

export interface PikeStats {
  /** Datagrams and stream messages dropped because their source was banned. */
  dropped: number
  /** Bans pike itself decided (floods). */
  floodBans: number
  /** Bans taken over from workers (auth) and from the store. */
  otherBans: number
  /** Sources in the counting table. */
  sources: number
  active: number
}

/** Sources tracked at most; beyond, new sources are not counted until the sweep makes room. */
export const PIKE_MAX_SOURCES = 500_000

const SP = 0x20
const CR = 0x0d

class Source {
  /** Per class: [epoch, current count, previous count]. */
  readonly w: Float64Array
  last = 0
  readonly allowed: boolean
  constructor(classes: number, allowed: boolean) {
    this.w = new Float64Array(classes * 3)
    this.allowed = allowed
  }
}

export class Pike {
  readonly #bans = new Map<string, BanRecord>()
  readonly #sources = new Map<string, Source>()
  #classes: PikeClass[] = []
  #domainNames: string[] = []
  #domainIndex = new Map<string, number>()
  #allow = new BlockList()
  #counting = false
  #maxWindow = 0
  #timer: NodeJS.Timeout | null = null
  readonly #listeners: PikeListener[] = []
  readonly #now: () => number
  dropped = 0
  floodBans = 0
  otherBans = 0
  /** Sources not counted because the table was full. */
  untracked = 0

  constructor(settings: PikeSettings | null = null, now: () => number = Date.now) {
    this.#now = now
    this.configure(settings)
  }

  /** New settings (start, reload). Counting windows restart; bans in force stay. */
  configure(s: PikeSettings | null): void {
    this.#sources.clear()
    const allow = new BlockList()
    const classes: PikeClass[] = []
    const names: string[] = []
    const index = new Map<string, number>()
    if (s !== null) {
      for (const c of s.allow) addCidr(allow, c)
      classes.push({ enabled: s.enabled, windowMs: s.windowMs, maxRequests: s.maxRequests, banTimeMs: s.banTimeMs })
      for (const [name, d] of Object.entries(s.domains)) {
        index.set(name.toLowerCase(), classes.length)
        names.push(name.toLowerCase())
        classes.push({ ...d })
      }
    }
    this.#allow = allow
    this.#classes = classes
    this.#domainNames = names
    this.#domainIndex = index
    this.#counting = classes.some(c => c.enabled)
    this.#maxWindow = Math.max(0, ...classes.map(c => c.windowMs))
  }

  get counting(): boolean { return this.#counting }

  on(l: PikeListener): void { this.#listeners.push(l) }

  /** true when `address` is in pike.allow (never banned). */
  allowed(address: string): boolean {
    return matches(this.#allow, address)
  }

  /**
   * The inbound hook, once per datagram or stream message, before anything else reads it: true
   * means drop it (the source is banned, or this request just got it banned).
   */
  check(address: string, buf: Uint8Array): boolean {
    if (this.#bans.size > 0) {
      const b = this.#bans.get(address)
      if (b !== undefined) {
        if (b.until > this.#now()) { b.dropped++; this.dropped++; return true }
        this.#end(b, 'expired')
      }
    }
    if (!this.#counting) return false
    // Responses are never counted (a backend answering a burst is no flood); "SIP/" starts one.
    if (buf.length < 8 || (buf[0] === 0x53 && buf[1] === 0x49 && buf[2] === 0x50 && buf[3] === 0x2f)) return false
    let cls = 0
    if (this.#domainNames.length > 0) {
      const host = requestHost(buf)
      if (host !== null) cls = this.#domainIndex.get(host) ?? 0
    }
    const c = this.#classes[cls]!
    if (!c.enabled) return false
    let src = this.#sources.get(address)
    const now = this.#now()
    if (src === undefined) {
      if (this.#sources.size >= PIKE_MAX_SOURCES) { this.untracked++; return false }
      src = new Source(this.#classes.length, matches(this.#allow, address))
      this.#sources.set(address, src)
      this.#arm()
    }
    src.last = now
    if (src.allowed) return false
    const w = src.w
    const i = cls * 3
    const epoch = Math.floor(now / c.windowMs)
    if (w[i] !== epoch) {
      w[i + 2] = w[i] === epoch - 1 ? w[i + 1]! : 0
      w[i + 1] = 0
      w[i] = epoch
    }
    const n = ++w[i + 1]!
    const overlap = 1 - (now - epoch * c.windowMs) / c.windowMs
    const estimate = n + w[i + 2]! * overlap
    if (estimate <= c.maxRequests) return false
    this.floodBans++
    const b = this.ban(address, 'flood', now + c.banTimeMs, { origin: 'pike', since: now, domain: cls === 0 ? null : this.#domainNames[cls - 1]!, requests: Math.round(estimate) })
    if (b !== null) { b.dropped++; this.dropped++ }
    return true
  }

  /** true when `address` is banned now (a connection from it is refused at accept). */
  isBanned(address: string): boolean {
    if (this.#bans.size === 0) return false
    const b = this.#bans.get(address)
    if (b === undefined) return false
    if (b.until > this.#now()) return true
    this.#end(b, 'expired')
    return false
  }

  /** Counts a refused connection against the ban of `address` (if any). */
  refused(address: string): void {
    const b = this.#bans.get(address)
    if (b !== undefined) b.dropped++
  }

  /**
   * Bans `address` until `until` (epoch ms). An address in pike.allow is never banned (null).
   * A ban already in force is extended to the later end; listeners hear only of new bans.
   */
  ban(address: string, reason: string, until: number, o: { origin?: BanOrigin; domain?: string | null; requests?: number; shared?: boolean; since?: number } = {}): BanRecord | null {
    if (matches(this.#allow, address)) return null
    const now = o.since ?? this.#now()
    if (!(until > now)) return null
    const prev = this.#bans.get(address)
    if (prev !== undefined && prev.until > now) {
      if (until > prev.until) prev.until = until
      if (o.shared === true) prev.shared = true
      return prev
    }
    const b: BanRecord = {
      address, reason, domain: o.domain ?? null, origin: o.origin ?? 'admin', since: now, until,
      dropped: 0, requests: o.requests ?? 0, shared: o.shared === true,
    }
    if (b.origin !== 'pike') this.otherBans++
    this.#bans.set(address, b)
    this.#sources.delete(address) // a fresh window after the ban
    this.#arm()
    for (const l of this.#listeners) l.banned?.(b)
    return b
  }

  /** Lifts the ban of `address`; false when it was not banned. */
  unban(address: string): boolean {
    const b = this.#bans.get(address)
    if (b === undefined) return false
    const live = b.until > this.#now()
    this.#end(b, live ? 'lifted' : 'expired')
    return live
  }

  get(address: string): BanRecord | undefined {
    const b = this.#bans.get(address)
    return b !== undefined && b.until > this.#now() ? b : undefined
  }

  /** Bans in force, soonest lifted first. */
  list(): BanRecord[] {
    const now = this.#now()
    return [...this.#bans.values()].filter(b => b.until > now).sort((a, b) => a.until - b.until)
  }

  stats(): PikeStats {
    const now = this.#now()
    let active = 0
    for (const b of this.#bans.values()) if (b.until > now) active++
    return { dropped: this.dropped, floodBans: this.floodBans, otherBans: this.otherBans, sources: this.#sources.size, active }
  }

  /** Stops the sweep timer (engine teardown). */
  close(): void {
    if (this.#timer !== null) { clearInterval(this.#timer); this.#timer = null }
  }

  /** One sweep now (the timer's work; tests call it with an injected clock). */
  sweep(): void {
    const now = this.#now()
    const quiet = now - 2 * Math.max(this.#maxWindow, 1_000)
    for (const [a, s] of this.#sources) if (s.last < quiet) this.#sources.delete(a)
    for (const b of this.#bans.values()) if (b.until <= now) this.#end(b, 'expired')
    if (this.#sources.size === 0 && this.#bans.size === 0) this.close()
  }

  #end(b: BanRecord, how: 'expired' | 'lifted'): void {
    if (this.#bans.get(b.address) !== b) return
    this.#bans.delete(b.address)
    for (const l of this.#listeners) l.ended?.(b, how)
  }

  #arm(): void {
    if (this.#timer !== null) return
    // Coarse: forgetting a quiet source or lifting a ban a second late costs nothing (a banned
    // packet arriving after `until` lifts its ban itself, above).
    const every = Math.min(10_000, Math.max(1_000, this.#maxWindow))
    this.#timer = setInterval(() => this.sweep(), every)
    this.#timer.unref()
  }
}

/**
 * The host of a request's Request-URI, lower case, from the start line's bytes
 * (`METHOD SP scheme:[user@]host[:port][;params] SP SIP/2.0`); null when there is none to read.
 */
export function requestHost(buf: Uint8Array): string | null {
  const end = Math.min(buf.length, 1024)
  let i = 0
  while (i < end && buf[i] !== SP) i++
  i++
  const uriStart = i
  let uriEnd = i
  while (uriEnd < end && buf[uriEnd] !== SP && buf[uriEnd] !== CR) uriEnd++
  if (uriEnd >= end || uriEnd === uriStart) return null
  // scheme
  while (i < uriEnd && buf[i] !== 0x3a) i++
  if (i >= uriEnd) return null
  let h = i + 1
  for (let j = h; j < uriEnd; j++) {
    const c = buf[j]
    if (c === 0x40) { h = j + 1; break } // '@'
    if (c === 0x3f) break // '?': headers, no userinfo after it
  }
  let e = h
  if (buf[h] === 0x5b) { // [IPv6]
    while (e < uriEnd && buf[e] !== 0x5d) e++
    e++
  } else {
    while (e < uriEnd) {
      const c = buf[e]
      if (c === 0x3a || c === 0x3b || c === 0x3f || c === 0x3e) break
      e++
    }
  }
  if (e <= h || e > uriEnd) return null
  let s = ''
  for (let k = h; k < e; k++) {
    const c = buf[k]!
    s += String.fromCharCode(c >= 0x41 && c <= 0x5a ? c | 0x20 : c)
  }
  return s
}

function addCidr(list: BlockList, cidr: string): void {
  const slash = cidr.indexOf('/')
  const addr = slash < 0 ? cidr : cidr.slice(0, slash)
  const type = isIPv4(addr) ? 'ipv4' : isIPv6(addr) ? 'ipv6' : null
  if (type === null) return // validated by the configuration schema
  const prefix = slash < 0 ? (type === 'ipv4' ? 32 : 128) : Number(cidr.slice(slash + 1))
  list.addSubnet(addr, prefix, type)
}

function matches(list: BlockList, address: string): boolean {
  if (isIPv4(address)) return list.check(address, 'ipv4')
  if (!isIPv6(address)) return false
  if (list.check(address, 'ipv6')) return true
  // an IPv4 peer on a dual-stack socket: ::ffff:a.b.c.d
  if (address.length > 7 && address.slice(0, 7).toLowerCase() === '::ffff:') {
    const v4 = address.slice(7)
    return isIPv4(v4) && list.check(v4, 'ipv4')
  }
  return false
}
