/**
 * A hashed timing wheel (Varghese & Lauck, scheme 6) with coarse ticks, advanced by the host.
 *
 * Why a wheel: almost every transaction timer is cancelled before it fires (Timer B/F stop when a
 * response arrives), so the cost that matters is arm + cancel, which is O(1) here (intrusive
 * doubly linked list per slot, no allocation). The host calls `advance(now)` from ONE periodic
 * native timer; the work per call is one slot visit per elapsed tick.
 *
 * Semantics: an entry scheduled at `at` fires on the first `advance(now)` whose tick
 * `floor(now / tickMs)` reaches `ceil(at / tickMs)`: never early, at most one tick late, exact when
 * `at` is a multiple of the tick. Entries further away than one rotation stay in their slot and
 * are skipped (compared by absolute tick) until their round comes: Timer C (180 s) with 1024 slots
 * of 50 ms is visited four times before it fires, which is cheaper than cascading.
 *
 * Entries are intrusive: a class extends `TimerEntry` (transactions do) and overrides `onTimer`.
 * One entry is one pending deadline; a transaction that runs several RFC timers at once keeps
 * their deadlines in its own fields and schedules itself at the earliest one.
 */
export class TimerEntry {
  /** @internal absolute tick; IDLE when not scheduled, FIRING while collected for firing */
  _wTick: number
  /** @internal */
  _wPrev: TimerEntry | null
  /** @internal */
  _wNext: TimerEntry | null

  constructor() {
    this._wTick = IDLE
    this._wPrev = null
    this._wNext = null
  }

  /** Called by `TimerWheel.advance` with the clock time passed to it. */
  onTimer(_now: number): void {}
}

const IDLE = -1
const FIRING = -2

export interface TimerWheelOptions {
  /** Tick length in ms (resolution of every timer on this wheel). */
  tickMs: number
  /** Number of slots, a power of two. Default 1024. */
  slots?: number
  /** Current clock time, ms; the wheel starts at this tick. Default 0. */
  now?: number
  /**
   * An entry's onTimer threw: called with the error. Either way the other entries due in the
   * same tick still fire; without onError the first error is then thrown out of advance().
   */
  onError?: (err: unknown, entry: TimerEntry) => void
}

export class TimerWheel {
  readonly tickMs: number
  private readonly onError: ((err: unknown, entry: TimerEntry) => void) | null
  readonly slotCount: number
  private readonly heads: Array<TimerEntry | null>
  private readonly mask: number
  /** Last tick whose slot has been processed. */
  private current: number
  private count: number
  private advancing: boolean
  /** Reused between advances: entries due in the tick being processed. */
  private readonly due: Array<TimerEntry | null>

  constructor(opts: TimerWheelOptions) {
    const tickMs = opts.tickMs
    const slots = opts.slots ?? 1024
    if (!(tickMs > 0) || !Number.isFinite(tickMs)) throw new RangeError(`TimerWheel tickMs must be > 0, got ${tickMs}`)
    if (!Number.isInteger(slots) || slots < 2 || (slots & (slots - 1)) !== 0) throw new RangeError(`TimerWheel slots must be a power of two >= 2, got ${slots}`)
    this.tickMs = tickMs
    this.slotCount = slots
    this.heads = new Array<TimerEntry | null>(slots).fill(null)
    this.mask = slots - 1
    this.current = Math.floor((opts.now ?? 0) / tickMs)
    this.count = 0
    this.advancing = false
    this.due = []
    this.onError = opts.onError ?? null
  }

  /** Entries currently scheduled. */
  get size(): number {
    return this.count
  }

  /** The last processed tick. */
  get currentTick(): number {
    return this.current
  }

  /** Time (ms) of the last processed tick boundary. */
  get time(): number {
    return this.current * this.tickMs
  }

  isScheduled(e: TimerEntry): boolean {
    return e._wTick >= 0 || e._wTick === FIRING
  }

  /**
   * (Re)schedules `e` to fire at `at` (ms). An entry already scheduled is moved; one already in
   * the tick `at` falls in is left where it is (no per-entry deadline field is needed for that).
   */
  schedule(e: TimerEntry, at: number): void {
    let tick = Math.ceil(at / this.tickMs)
    if (tick <= this.current) tick = this.current + 1
    if (e._wTick === tick) return
    if (e._wTick >= 0) this.unlink(e)
    e._wTick = tick
    const i = tick & this.mask
    const head = this.heads[i]!
    e._wPrev = null
    e._wNext = head
    if (head !== null) head._wPrev = e
    this.heads[i] = e
    this.count++
  }

  /** Cancels `e`; returns whether it was pending. Safe from inside another entry's `onTimer`. */
  cancel(e: TimerEntry): boolean {
    if (e._wTick >= 0) {
      this.unlink(e)
      e._wTick = IDLE
      return true
    }
    if (e._wTick === FIRING) {
      e._wTick = IDLE
      return true
    }
    return false
  }

  /**
   * The first tick at which `advance` has something to fire, for a host that sleeps until then
   * instead of ticking all the time: the earliest scheduled tick within one rotation; when every
   * entry is further away, `current + slotCount` (look again then: at most one wake-up per
   * rotation); -1 when nothing is scheduled. One slot visit per empty tick ahead (<= slotCount).
   */
  nextTick(): number {
    if (this.count === 0) return -1
    const heads = this.heads
    const mask = this.mask
    const end = this.current + this.slotCount
    for (let t = this.current + 1; t <= end; t++) {
      let e: TimerEntry | null = heads[t & mask]!
      while (e !== null) {
        if (e._wTick <= t) return t
        e = e._wNext
      }
    }
    return end
  }

  /**
   * Processes every tick up to `floor(now / tickMs)` and fires what is due, passing `now`.
   * Returns the number of entries fired. Re-entrant calls (from `onTimer`) are ignored.
   */
  advance(now: number): number {
    const target = Math.floor(now / this.tickMs)
    if (target <= this.current || this.advancing) return 0
    this.advancing = true
    let fired = 0
    try {
      if (target - this.current >= this.slotCount) {
        // Jumped a whole rotation (a stalled event loop or a test leap): visit each slot once.
        // Setting `current` first makes entries scheduled by callbacks land after `target`.
        const first = this.current + 1
        this.current = target
        for (let t = first; t < first + this.slotCount; t++) fired += this.fireSlot(t & this.mask, target, now)
      } else {
        while (this.current < target) {
          const t = ++this.current
          if (this.heads[t & this.mask] !== null) fired += this.fireSlot(t & this.mask, t, now)
        }
      }
    } finally {
      this.advancing = false
    }
    return fired
  }

  private fireSlot(slot: number, upTo: number, now: number): number {
    const due = this.due
    let n = 0
    let failed = false
    let error: unknown
    let e: TimerEntry | null = this.heads[slot]!
    while (e !== null) {
      const next: TimerEntry | null = e._wNext
      if (e._wTick <= upTo) {
        this.unlink(e)
        e._wTick = FIRING
        due.push(e)
      }
      e = next
    }
    for (let k = 0; k < due.length; k++) {
      const d = due[k]!
      due[k] = null
      // An earlier callback in this batch may have cancelled or rescheduled it.
      if (d._wTick !== FIRING) continue
      d._wTick = IDLE
      n++
      try {
        d.onTimer(now)
      } catch (err) {
        if (this.onError !== null) this.onError(err, d)
        else if (!failed) { failed = true; error = err }
      }
    }
    due.length = 0
    if (failed) throw error
    return n
  }

  private unlink(e: TimerEntry): void {
    const prev = e._wPrev
    const next = e._wNext
    if (prev !== null) prev._wNext = next
    else this.heads[e._wTick & this.mask] = next
    if (next !== null) next._wPrev = prev
    e._wPrev = null
    e._wNext = null
    this.count--
  }
}
