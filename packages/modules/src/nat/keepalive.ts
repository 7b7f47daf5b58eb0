// NAT keep-alives sent by a worker (docs/nat.md "Keep-alives"): one entry per registered binding
// behind NAT that this worker accepted the REGISTER for, on a wheel of 100 ms slots spanning
// `nat.keepalive.interval`. Each entry gets its own phase (slot) when it is created, from the
// golden-ratio sequence, so any number of bindings is spread evenly over the interval and every
// second costs the same: no burst, no setTimeout per binding, one unref'd timer per worker while
// there is anything to ping.
//
// UDP: an OPTIONS sent without a transaction (CoreApi.send; any response, matched by the branch,
// counts as alive), or with `method: crlf` a CRLF datagram (no answer exists, so no failure is
// ever counted). A ping still unanswered when the next one is due counts as failed; after
// `failures_remove` failed pings in a row the binding is removed from the location store (only if
// it was not refreshed meanwhile) and counted. Stream bindings are pinged by the primary, which
// owns the connection and sees the pong (docs/nat.md); here they are only indexed by connection so
// that a failed flow removes them.
import { randomTag } from '@sipedge/sip'
import { pinnedCallId, type CoreApi, type Destination } from '@sipedge/proxy'
import type { FrozenConfig } from '@sipedge/config'

/** Slot width of the wheel: a divisor of one second, so every 1-second bucket holds the same slots. */
export const TICK_MS = 100
const GOLDEN = 0.6180339887498949
/** Branch prefix of keep-alive OPTIONS (RFC 3261 magic cookie + "nK"): a response with it is ours. */
export const PING_BRANCH = 'z9hG4bKnK'
const CRLF2 = Buffer.from('\r\n\r\n')
const TRANSPORT_INDEX: Readonly<Record<string, number>> = { udp: 0, tcp: 1, tls: 2, ws: 3, wss: 4 }
const SEQ_DIGITS = 9
const SEQ_MAX = 999_999_999

/** `n` as SEQ_DIGITS decimal digits, zero-padded, written in place. */
function writeDigits(b: Buffer, at: number, n: number): void {
  for (let i = at + SEQ_DIGITS - 1; i >= at; i--) { b[i] = 0x30 + (n % 10); n = Math.floor(n / 10) }
}

/** Counters of one worker's NAT helper; arrays are indexed udp, tcp, tls, ws, wss (the metrics' order). */
export class NatCounters {
  readonly pingsSent = [0, 0, 0, 0, 0]
  readonly pingsAnswered = [0, 0, 0, 0, 0]
  readonly pingsFailed = [0, 0, 0, 0, 0]
  /** Thread time spent building and sending pings and matching their answers, seconds. */
  readonly pingSeconds = [0, 0, 0, 0, 0]
  bindingsRemoved = 0
  /** Record-Route flow parameters written, in-dialog requests sent over a recorded flow, parameters that failed their MAC. */
  flowsRecorded = 0
  flowsUsed = 0
  flowsForged = 0
}

/** The part of a location binding a keep-alive entry needs (a Binding of @sipedge/store fits). */
export interface BindingRef {
  readonly aor: string
  readonly contact: string
  readonly instance?: string | undefined
  readonly regId?: number | undefined
  readonly callId: string
  readonly cseq: number
  readonly expires: number
  readonly received: { readonly transport: string; readonly address: string; readonly port: number; readonly socketId: number; readonly connId: number }
}

/** One binding being kept alive. Stable shape: every field set in the constructor. */
export class PingEntry {
  readonly id: number
  readonly aor: string
  readonly key: string
  contact: string
  dest: Destination
  transport: number
  /** Call-ID and CSeq of the REGISTER that wrote the binding: removal only if still the same. */
  callId: string
  cseq: number
  expires: number
  slot: number
  /** A ping went out and nothing answered it yet. */
  outstanding: boolean
  failures: number
  seq: number
  /**
   * The OPTIONS of this entry, built once (and again after a reload): each ping only writes its
   * sequence number into it, so a ping allocates nothing in the worker. Offsets of the digits.
   */
  ping: Buffer | null
  branchSeqAt: number
  cseqAt: number
  built: number
  /** Taken off the wheel (removed, expired, unregistered): skipped and dropped lazily. */
  dead: boolean
  removing: boolean

  constructor(id: number, aor: string, key: string, b: BindingRef, dest: Destination, slot: number) {
    this.id = id
    this.aor = aor
    this.key = key
    this.contact = b.contact
    this.dest = dest
    this.transport = TRANSPORT_INDEX[dest.transport] ?? 0
    this.callId = b.callId
    this.cseq = b.cseq
    this.expires = b.expires
    this.slot = slot
    this.outstanding = false
    this.failures = 0
    this.seq = 0
    this.ping = null
    this.branchSeqAt = 0
    this.cseqAt = 0
    this.built = -1
    this.dead = false
    this.removing = false
  }
}

export interface KeepaliveOptions {
  core: CoreApi
  config: FrozenConfig
  counters: NatCounters
  /** Removes the binding of `e` from the location store if it is unchanged; resolves true when removed. */
  remove(e: PingEntry): Promise<boolean>
  /** A stream binding behind NAT was registered on connection `dest.connId`: the primary pings it. */
  watchFlow?(dest: Destination): void
}

export function bindingKeyOf(b: { contact: string; instance?: string | undefined; regId?: number | undefined }): string {
  return b.instance !== undefined && b.regId !== undefined ? b.instance + ';reg-id=' + b.regId : b.contact
}

export class KeepaliveScheduler {
  private readonly o: KeepaliveOptions
  private readonly core: CoreApi
  private enabled: boolean
  private crlf: boolean
  private failuresRemove: number
  private slots: PingEntry[][]
  /** Entries per AOR (what one REGISTER can change). */
  private readonly byAor: Map<string, PingEntry[]>
  /** UDP entries by id, for the answers. */
  private readonly byId: Map<number, PingEntry>
  /** Stream entries by connection id, for a failed flow. */
  private readonly byConn: Map<number, PingEntry[]>
  private nextId: number
  private placed: number
  private cursor: number
  private cursorAt: number
  private timer: ReturnType<typeof setInterval> | null
  private live: number
  /** Bumped by configure(): the prebuilt pings are rebuilt (listeners, User-Agent may have changed). */
  private generation: number

  constructor(o: KeepaliveOptions) {
    this.o = o
    this.core = o.core
    this.enabled = false
    this.crlf = false
    this.failuresRemove = 3
    this.slots = []
    this.byAor = new Map()
    this.byId = new Map()
    this.byConn = new Map()
    this.nextId = 1
    this.placed = 0
    this.cursor = 0
    this.cursorAt = 0
    this.timer = null
    this.live = 0
    this.generation = 0
    this.configure(o.config)
  }

  /** Entries kept alive by this worker (UDP pinged here, streams watched). */
  get size(): number {
    return this.live
  }

  configure(config: FrozenConfig): void {
    this.generation++
    const k = config.nat.keepalive
    this.enabled = k.enabled
    this.crlf = k.method === 'crlf'
    this.failuresRemove = k.failures_remove
    const n = Math.max(1, Math.round(k.interval / TICK_MS))
    if (n !== this.slots.length) {
      // A new interval: every entry gets a phase on the new wheel (same golden-ratio order).
      const all: PingEntry[] = []
      for (const s of this.slots) for (const e of s) if (!e.dead) all.push(e)
      this.slots = Array.from({ length: n }, () => [])
      this.placed = 0
      this.cursor = 0
      this.cursorAt = this.core.now() + TICK_MS
      for (const e of all) this.place(e)
    }
    if (!this.enabled) this.clear()
  }

  /**
   * The result of a REGISTER for `aor` that this worker handled: `bindings` is the AOR's new set,
   * `mine` tells which of them this REGISTER wrote (the others belong to whichever worker accepted
   * theirs), `nat` which are behind NAT. Entries of the AOR that are gone or no longer behind NAT
   * stop; new ones start at their own phase, refreshed ones keep theirs.
   */
  registered(aor: string, bindings: readonly BindingRef[], mine: (b: BindingRef) => boolean, nat: (b: BindingRef) => boolean): void {
    if (!this.enabled) return
    const prev = this.byAor.get(aor)
    let next: PingEntry[] | undefined
    for (const b of bindings) {
      const key = bindingKeyOf(b)
      const old = prev?.find(e => e.key === key && !e.dead)
      if (!mine(b)) {
        // Written by an earlier REGISTER: still ours if it is the one we ping; rewritten by a
        // REGISTER another worker accepted (a new Call-ID): that worker pings it now.
        if (old !== undefined && old.callId === b.callId && old.cseq === b.cseq) (next ??= []).push(old)
        else if (old !== undefined) this.kill(old)
        continue
      }
      if (!nat(b)) {
        if (old !== undefined) this.kill(old)
        continue
      }
      const dest = destOf(b)
      if (old !== undefined && sameFlow(old.dest, dest)) {
        old.callId = b.callId
        old.cseq = b.cseq
        old.expires = b.expires
        if (old.contact !== b.contact) { old.contact = b.contact; old.ping = null }
        ;(next ??= []).push(old)
        continue
      }
      if (old !== undefined) this.kill(old)
      ;(next ??= []).push(this.add(aor, key, b, dest))
    }
    if (prev !== undefined) for (const e of prev) if (!e.dead && (next === undefined || !next.includes(e))) this.kill(e)
    if (next === undefined) this.byAor.delete(aor)
    else this.byAor.set(aor, next)
  }

  /** Bindings found in the store at start (NatModule.rebuild): entries for those not kept yet. */
  adopt(aor: string, bindings: readonly BindingRef[]): number {
    if (!this.enabled) return 0
    let list = this.byAor.get(aor)
    let n = 0
    for (const b of bindings) {
      const key = bindingKeyOf(b)
      if (list?.some(e => e.key === key && !e.dead) === true) continue
      ;(list ??= []).push(this.add(aor, key, b, destOf(b)))
      n++
    }
    if (list !== undefined) this.byAor.set(aor, list)
    return n
  }

  private add(aor: string, key: string, b: BindingRef, dest: Destination): PingEntry {
    const stream = dest.transport !== 'udp'
    const e = new PingEntry(this.nextId++, aor, key, b, dest, 0)
    if (this.nextId > 0x7fffffff) this.nextId = 1
    this.live++
    if (stream) {
      const c = dest.connId ?? 0
      if (c !== 0) {
        const list = this.byConn.get(c)
        if (list === undefined) this.byConn.set(c, [e])
        else list.push(e)
        this.o.watchFlow?.(dest)
      }
      return e
    }
    this.byId.set(e.id, e)
    this.place(e)
    return e
  }

  /** Golden-ratio phase: the n-th entry goes to slot floor(frac(n φ) · slots), evenly for any n. */
  private place(e: PingEntry): void {
    const n = this.slots.length
    const x = (this.placed++ * GOLDEN) % 1
    e.slot = Math.min(n - 1, Math.floor(x * n))
    this.slots[e.slot]!.push(e)
    this.start()
  }

  private kill(e: PingEntry): void {
    if (e.dead) return
    e.dead = true
    this.live--
    if (e.dest.transport === 'udp') this.byId.delete(e.id)
    else {
      const c = e.dest.connId ?? 0
      const list = this.byConn.get(c)
      if (list !== undefined) {
        const i = list.indexOf(e)
        if (i >= 0) list.splice(i, 1)
        if (list.length === 0) this.byConn.delete(c)
      }
    }
  }

  private dropFromAor(e: PingEntry): void {
    const list = this.byAor.get(e.aor)
    if (list === undefined) return
    const i = list.indexOf(e)
    if (i >= 0) list.splice(i, 1)
    if (list.length === 0) this.byAor.delete(e.aor)
  }

  // ------------------------------------------------------------------------------ the wheel

  private start(): void {
    if (this.timer !== null || this.core.manualTimers) return
    this.cursorAt = this.core.now() + TICK_MS
    this.timer = setInterval(() => this.tick(this.core.now()), TICK_MS)
    this.timer.unref()
  }

  /** Sends the pings of every slot that is due by `now` (tests drive it by hand). */
  tick(now: number): void {
    const n = this.slots.length
    let guard = n
    while (this.cursorAt <= now && guard-- > 0) {
      this.runSlot(this.cursor)
      this.cursor = this.cursor + 1 === n ? 0 : this.cursor + 1
      this.cursorAt += TICK_MS
    }
    // Far behind (a stopped clock, a paused process): resume from now, never burst the backlog.
    if (this.cursorAt <= now) this.cursorAt = now + TICK_MS
    if (this.live === 0 && this.timer !== null) { clearInterval(this.timer); this.timer = null }
  }

  private runSlot(i: number): void {
    const s = this.slots[i]!
    if (s.length === 0) return
    const t0 = performance.now()
    // Binding expiries are epoch ms of the registrar's clock (Date.now), not the wheel's.
    const wall = Date.now()
    let w = 0
    for (let r = 0; r < s.length; r++) {
      const e = s[r]!
      if (e.dead) continue
      if (e.expires <= wall) { this.kill(e); this.dropFromAor(e); continue }
      s[w++] = e
      this.ping(e)
    }
    s.length = w
    this.o.counters.pingSeconds[0]! += (performance.now() - t0) / 1000
  }

  private ping(e: PingEntry): void {
    const c = this.o.counters
    if (e.outstanding) {
      c.pingsFailed[e.transport]!++
      if (++e.failures >= this.failuresRemove && !e.removing) { this.removeBinding(e); return }
    }
    if (e.removing) return
    if (this.crlf) {
      // RFC 5626 §3.5.1-style CRLF datagram: keeps the pinhole open, nothing ever answers it.
      this.core.send(e.dest, CRLF2)
      c.pingsSent[e.transport]!++
      return
    }
    if (e.ping === null || e.built !== this.generation) { if (!this.build(e)) return }
    const p = e.ping!
    e.seq = e.seq >= SEQ_MAX ? 1 : e.seq + 1
    writeDigits(p, e.branchSeqAt, e.seq)
    writeDigits(p, e.cseqAt, e.seq)
    e.outstanding = true
    this.core.send(e.dest, p)
    c.pingsSent[e.transport]!++
  }

  /**
   * The entry's OPTIONS (R-URI and To: the Contact; From: us; a Call-ID the primary shards back to
   * this worker) with fixed-width sequence digits in the branch and CSeq (leading zeros are
   * digits, RFC 3261 §20.16). The send copies it into the ring (or, in-process, the next write
   * is a whole interval later).
   */
  private build(e: PingEntry): boolean {
    const out = this.core.local.listenerOf(e.dest.socketId, 'udp')
    if (out === undefined) return false
    const zeros = '0'.repeat(SEQ_DIGITS)
    const head = 'OPTIONS ' + e.contact + ' SIP/2.0\r\nVia: ' + out.viaPrefix + PING_BRANCH + e.id.toString(36) + '.'
    const mid = ';rport\r\nMax-Forwards: 70\r\nFrom: <sip:keepalive@' + out.host + '>;tag=' + randomTag() + '\r\n' +
      'To: <' + e.contact + '>\r\nCall-ID: ' + pinnedCallId(this.core.workerIndex, this.core.workers) + '\r\nCSeq: '
    const tail = ' OPTIONS\r\nUser-Agent: ' + this.core.config.proxy.user_agent + '\r\nContent-Length: 0\r\n\r\n'
    e.ping = Buffer.from(head + zeros + mid + zeros + tail, 'latin1')
    e.branchSeqAt = Buffer.byteLength(head, 'latin1')
    e.cseqAt = e.branchSeqAt + SEQ_DIGITS + Buffer.byteLength(mid, 'latin1')
    e.built = this.generation
    return true
  }

  private removeBinding(e: PingEntry): void {
    e.removing = true
    this.o.remove(e).then(
      removed => {
        if (removed) this.o.counters.bindingsRemoved++
        // Removed, or refreshed meanwhile by a REGISTER another worker handled: either way not ours to ping.
        this.kill(e)
        this.dropFromAor(e)
      },
      () => { e.removing = false }, // store down: try again at the next failed ping
    )
  }

  /** A response matching no transaction: true when it answers one of our OPTIONS pings. */
  answer(branch: string | undefined, source: Destination): boolean {
    if (branch === undefined || !branch.startsWith(PING_BRANCH)) return false
    const t0 = performance.now()
    const dot = branch.indexOf('.', PING_BRANCH.length)
    const id = parseInt(branch.slice(PING_BRANCH.length, dot < 0 ? undefined : dot), 36)
    const e = this.byId.get(id)
    // Only from where the ping went: a forged answer from elsewhere keeps nothing alive.
    if (e !== undefined && !e.dead && e.dest.address === source.address && e.dest.port === source.port) {
      if (e.outstanding) this.o.counters.pingsAnswered[0]!++
      e.outstanding = false
      e.failures = 0
    }
    this.o.counters.pingSeconds[0]! += (performance.now() - t0) / 1000
    return true
  }

  /**
   * The flow of connection `connId` failed (the primary's keep-alive got no pong, or the
   * connection is gone): its bindings are removed (only if unchanged).
   */
  flowFailed(connId: number): number {
    const list = this.byConn.get(connId)
    if (list === undefined) return 0
    const n = list.length
    // The pings themselves are the primary's (it counts them); here only the removal.
    for (const e of list.slice()) this.removeBinding(e)
    return n
  }

  /** Stream entries on connection `connId` (tests, diagnostics). */
  watching(connId: number): number {
    return this.byConn.get(connId)?.length ?? 0
  }

  clear(): void {
    for (const s of this.slots) s.length = 0
    this.byAor.clear()
    this.byId.clear()
    this.byConn.clear()
    this.live = 0
    if (this.timer !== null) { clearInterval(this.timer); this.timer = null }
  }

  close(): void {
    this.clear()
  }
}

function destOf(b: BindingRef): Destination {
  const r = b.received
  const d: Destination = { transport: r.transport as Destination['transport'], address: r.address, port: r.port, socketId: r.socketId }
  if (r.transport !== 'udp' && r.connId !== 0) d.connId = r.connId
  return d
}

function sameFlow(a: Destination, b: Destination): boolean {
  return a.transport === b.transport && a.address === b.address && a.port === b.port && (a.connId ?? 0) === (b.connId ?? 0) && a.socketId === b.socketId
}
