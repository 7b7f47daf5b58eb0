/**
 * Single-producer/single-consumer ring of frames over a SharedArrayBuffer.
 *
 * Memory layout (byte offsets; the control words sit on separate 128-byte blocks so the
 * producer's and the consumer's hot words never share a cache line, nor an adjacent-line
 * prefetch pair):
 *
 *     0  i32 magic 'SRNG'   4 i32 layout version   8 i32 capacity   12 i32 header size
 *   128  i32 HEAD (producer publishes; consumer polls)
 *   256  f64 pushed   264 f64 refused   272 f64 notifies   280 f64 reach  (producer writes, stats() reads)
 *   384  i32 TAIL (consumer publishes; producer reads only when its cached copy says "full")
 *   512  f64 drained  520 f64 wakeups                          (consumer writes, stats() reads)
 *   640  i32 SLEEP (1 = consumer asleep or about to)   644 i32 WAKE (wake() requested)
 *   768  data: `capacity` bytes (a power of two), records 8-byte aligned
 *
 * Counters sit apart from HEAD/TAIL because the other side polls those: a counter store on the
 * same line would cost a second cache-line transfer per frame.
 *
 * HEAD and TAIL are free-running 32-bit byte counters; `pos & (capacity - 1)` is the offset,
 * `(head - tail) | 0` the bytes in use. Counters are float64 (exact to 2^53) written by one
 * thread with plain stores and read by anyone: aligned 8-byte accesses do not tear on the
 * 64-bit targets we run on (x64, arm64).
 *
 * Record (frame) = 48-byte header + payload, padded to a multiple of 8:
 *
 *     0 i32 payload length (-1 = wrap marker: skip to offset 0)
 *     4 u32 flags          8 u32 socketId       12 u32 connId
 *    16 u8 transport   17 u8 family (4|6)   18 u16 port (native endian)
 *    20 u32 reserved (0)
 *    24 f64 recvTime (ms)
 *    32 16 bytes remote address, network order (IPv4: first 4 bytes, rest 0)
 *    48 payload
 *
 * A record never straddles the end: when it does not fit before the end, the producer writes
 * a wrap marker and puts the record at offset 0, so the consumer always gets one contiguous
 * view per frame. That is why the largest record is capacity/2: it then fits an empty ring at
 * any offset.
 *
 * The producer also goes back to offset 0 early: a push that finds the ring empty past an eighth
 * of the capacity (`rewindAt`) writes the same wrap marker and starts again at 0, so the consumer
 * needs no new case. While the consumer keeps up, frames then live in the first eighth of the
 * ring and the rest of the data area is never written: its pages stay untouched (a 4 MiB ring
 * that has gone round once holds 4 MiB of RSS for good; one that rewinds, ~512 KiB) and the
 * frames stay in the CPU caches of both threads. A backlog still grows into the whole ring
 * (`reach` says how far it went). The price: until the consumer has read the marker, the
 * skipped end counts as used, so a consumer that stalls right after a rewind has `rewindAt` or
 * more bytes of room instead of the whole capacity. Only an empty ring is rewound: with frames
 * waiting, the room left would be the bytes in front of the oldest one, which can be few.
 */
import { decodeAddress, encodeAddress, type FrameMeta } from '@sipedge/frame'
import { RingError, RingErrorCode } from './errors.js'

export const RING_MAGIC = 0x474e5253 // 'SRNG' little-endian
export const RING_LAYOUT_VERSION = 1
/** Bytes of the fixed header in front of every frame's payload. */
export const FRAME_HEADER_SIZE = 48
/** Bytes of the control block in front of the data area. */
export const RING_CONTROL_SIZE = 768
export const RING_MIN_CAPACITY = 256
export const RING_MAX_CAPACITY = 1 << 30

// control words: i32 indices
const I_MAGIC = 0
const I_VERSION = 1
const I_CAPACITY = 2
const I_HEADER = 3
const I_HEAD = 128 >> 2
const I_TAIL = 384 >> 2
const I_SLEEP = 640 >> 2
const I_WAKE = 644 >> 2
// counters: f64 indices
const F_PUSHED = 256 >> 3
const F_REFUSED = 264 >> 3
const F_NOTIFIES = 272 >> 3
const F_REACH = 280 >> 3
const F_DRAINED = 512 >> 3
const F_WAKEUPS = 520 >> 3

const WRAP_MARKER = -1
/**
 * Records start on a 64-byte cache line: the producer then never writes into a line that the
 * consumer is reading (the end of the previous record), which would cost a cache-line transfer
 * per frame when the consumer keeps up. Costs at most 63 bytes of padding per frame.
 */
export const RECORD_ALIGN = 64
const RECORD_ALIGN_MASK = RECORD_ALIGN - 1
const NO_DEADLINE_KEEPALIVE_MS = 1 << 30
/** A push that finds the ring empty past capacity / RING_REWIND_DIVISOR starts again at 0. */
export const RING_REWIND_DIVISOR = 8

export interface RingStats {
  /** frames published by the producer */
  pushed: number
  /** tryPush calls answered false because the ring was full */
  refused: number
  /** frames handed to a drain callback */
  drained: number
  /** consumer sleeps ended by a notify (from the producer or wake()) */
  wakeups: number
  /** Atomics.notify calls made by the producer (each one cost a syscall-ish wake) */
  notifies: number
  /** bytes in use now (headers, payloads, padding) */
  used: number
  /**
   * Bytes of the data area the producer has ever written, from offset 0 (the highest record
   * end): the part of the ring that is resident memory. Stays near capacity / RING_REWIND_DIVISOR
   * while the consumer keeps up.
   */
  reach: number
  /** data area size in bytes */
  capacity: number
}

/**
 * The header of the frame being delivered by `drain`. ONE instance per Ring, overwritten for
 * every frame: valid only during the callback. Copy what you keep. `address` is decoded
 * lazily (a consumer that never reads it never pays for the string).
 */
export class FrameView implements FrameMeta {
  transport = 0
  socketId = 0
  connId = 0
  family: 4 | 6 = 4
  port = 0
  recvTime = 0
  flags = 0
  /** payload length in bytes */
  length = 0
  /** @internal ring bytes and absolute offset of the current frame's address field */
  _bytes: Uint8Array
  /** @internal */
  _addrAt = 0
  /** @internal cached decoded address of the current frame */
  _address: string | null = null
  // one-entry cache across frames: same peer, same string, no allocation
  private _lastFamily = 0
  private _lastW0 = 0
  private _lastW1 = 0
  private _lastW2 = 0
  private _lastW3 = 0
  private _lastStr = ''
  private readonly _i32: Int32Array

  /** @internal */
  constructor(bytes: Uint8Array, i32: Int32Array) {
    this._bytes = bytes
    this._i32 = i32
  }

  /** The remote address as text (IPv4 dotted quad or IPv6 as libuv prints it). */
  get address(): string {
    if (this._address !== null) return this._address
    const i32 = this._i32
    const w = this._addrAt >> 2
    const w0 = i32[w]!, w1 = i32[w + 1]!, w2 = i32[w + 2]!, w3 = i32[w + 3]!
    let s: string
    if (this.family === this._lastFamily && w0 === this._lastW0 && w1 === this._lastW1 &&
        w2 === this._lastW2 && w3 === this._lastW3) {
      s = this._lastStr
    } else {
      s = decodeAddress(this.family, this._bytes, this._addrAt)
      this._lastFamily = this.family
      this._lastW0 = w0; this._lastW1 = w1; this._lastW2 = w2; this._lastW3 = w3
      this._lastStr = s
    }
    this._address = s
    return s
  }

  /** Copy the 16 raw address bytes (network order) into out[offset..offset+15]. */
  copyAddress(out: Uint8Array, offset = 0): void {
    const b = this._bytes
    const a = this._addrAt
    for (let k = 0; k < 16; k++) out[offset + k] = b[a + k]!
  }
}

function roundUpPow2(n: number): number {
  let c = RING_MIN_CAPACITY
  while (c < n) c *= 2
  return c
}

function badAddress(family: number, address: string): RingError {
  return new RingError(RingErrorCode.BAD_ADDRESS, family === 4 || family === 6
    ? `ring: not a valid IPv${family} address for a frame header: ${JSON.stringify(address)}`
    : `ring: address family must be 4 or 6, got ${String(family)}`)
}

const RESOLVED: Promise<void> = Promise.resolve()
function noop(): void {}

export type FrameHandler = (meta: FrameView, payload: Buffer) => void

export class Ring {
  /**
   * Allocate and initialise the shared memory for a ring of (at least) `capacityBytes` of frame
   * data: rounded up to a power of two, 256 B .. 1 GiB. Give the result to both threads.
   */
  static allocate(capacityBytes: number): SharedArrayBuffer {
    if (typeof capacityBytes !== 'number' || !Number.isFinite(capacityBytes) || capacityBytes <= 0 ||
        capacityBytes > RING_MAX_CAPACITY) {
      throw new RingError(RingErrorCode.BAD_CAPACITY,
        `ring: capacity must be a number of bytes in 1..${RING_MAX_CAPACITY}, got ${String(capacityBytes)}`)
    }
    const capacity = roundUpPow2(capacityBytes)
    const sab = new SharedArrayBuffer(RING_CONTROL_SIZE + capacity)
    const i32 = new Int32Array(sab)
    i32[I_VERSION] = RING_LAYOUT_VERSION
    i32[I_CAPACITY] = capacity
    i32[I_HEADER] = FRAME_HEADER_SIZE
    Atomics.store(i32, I_MAGIC, RING_MAGIC)
    return sab
  }

  /** Largest payload (bytes) a ring of this data capacity accepts. */
  static maxPayloadFor(capacity: number): number {
    return (capacity >>> 1) - FRAME_HEADER_SIZE
  }

  /** the SharedArrayBuffer (to hand to another thread) */
  readonly sab: SharedArrayBuffer
  /** data area size in bytes (a power of two) */
  readonly capacity: number
  /** largest payload accepted by tryPush; larger throws ERR_RING_FRAME_TOO_LARGE */
  readonly maxPayload: number

  private readonly i32: Int32Array
  private readonly f64: Float64Array
  private readonly u8: Uint8Array
  private readonly buf: Buffer
  private readonly mask: number
  private readonly view: FrameView
  // producer state
  private head: number
  private cachedTail: number
  private reach: number
  /** @internal offset past which a push that finds the ring empty goes back to 0 (tests may raise it) */
  _rewindAt: number
  // consumer state
  private tail: number
  private publishedTail: number
  private readonly publishEvery: number
  private draining: boolean
  private waiting: Promise<void> | null
  private keepAlive: ReturnType<typeof setInterval> | null
  // producer: deferred wake-up (deferNotifications)
  private deferNotify: boolean
  private notifyScheduled: boolean
  private readonly flushNotify: () => void
  private readonly onWaitDone: (res: 'ok' | 'timed-out') => void
  /** @internal test hook: called inside waitForData at phase 1 (flag set, before re-check) and 2 (after re-check, before waitAsync) */
  _waitHook: ((phase: 1 | 2) => void) | null

  /**
   * Attach to a ring made by `Ring.allocate`. Has no side effect on the shared memory: any
   * thread may attach (the primary attaches to read stats). Use one instance as the producer
   * in one thread and one as the consumer in one thread.
   */
  constructor(sab: SharedArrayBuffer) {
    if (!(sab instanceof SharedArrayBuffer) || sab.byteLength < RING_CONTROL_SIZE + RING_MIN_CAPACITY) {
      throw new RingError(RingErrorCode.BAD_BUFFER, 'ring: expected a SharedArrayBuffer from Ring.allocate()')
    }
    const i32 = new Int32Array(sab)
    const capacity = i32[I_CAPACITY]!
    if (Atomics.load(i32, I_MAGIC) !== RING_MAGIC || i32[I_VERSION] !== RING_LAYOUT_VERSION ||
        i32[I_HEADER] !== FRAME_HEADER_SIZE || capacity !== sab.byteLength - RING_CONTROL_SIZE ||
        (capacity & (capacity - 1)) !== 0) {
      throw new RingError(RingErrorCode.BAD_BUFFER,
        'ring: SharedArrayBuffer is not a ring of this layout version (magic/version/capacity mismatch)')
    }
    this.sab = sab
    this.capacity = capacity
    this.maxPayload = Ring.maxPayloadFor(capacity)
    this.i32 = i32
    this.f64 = new Float64Array(sab)
    this.u8 = new Uint8Array(sab)
    this.buf = Buffer.from(sab)
    this.mask = capacity - 1
    this.view = new FrameView(this.u8, i32)
    this.head = Atomics.load(i32, I_HEAD)
    this.cachedTail = Atomics.load(i32, I_TAIL)
    this.reach = this.f64[F_REACH]!
    this._rewindAt = capacity / RING_REWIND_DIVISOR
    this.tail = this.cachedTail
    this.publishedTail = this.tail
    // give the producer room back in quarters during a long batch
    this.publishEvery = capacity >>> 2
    this.draining = false
    this.waiting = null
    this.keepAlive = null
    this.deferNotify = false
    this.notifyScheduled = false
    this.flushNotify = () => {
      this.notifyScheduled = false
      if (Atomics.load(this.i32, I_SLEEP) !== 0) this.notifyConsumer()
    }
    this.onWaitDone = (res) => this.waitDone(res)
    this._waitHook = null
  }

  // ---------------------------------------------------------------- producer side

  /**
   * Publish one frame. `payload` is one byte array or a list (gather write: the list is copied
   * back to back, e.g. the output of MessageEditor.toBuffers()). Returns false, and counts a
   * refusal, when the ring has no room now: never blocks; the caller decides (drop, 503, retry).
   * Throws RingError ERR_RING_FRAME_TOO_LARGE when the payload exceeds `maxPayload` (it could
   * never fit), ERR_RING_BAD_ADDRESS for an address that is not a literal of `meta.family`.
   * `meta` may be a FrameView from another ring (forwarding): its address bytes are copied as is.
   */
  tryPush(meta: FrameMeta, payload: Uint8Array | readonly Uint8Array[]): boolean {
    let len: number
    if (payload instanceof Uint8Array) {
      len = payload.byteLength
    } else {
      len = 0
      for (let i = 0; i < payload.length; i++) len += payload[i]!.byteLength
    }
    if (len > this.maxPayload) throw this.tooLarge(len)
    const rec = (FRAME_HEADER_SIZE + len + RECORD_ALIGN_MASK) & ~RECORD_ALIGN_MASK
    const cap = this.capacity
    const i32 = this.i32
    let head = this.head
    let off = head & this.mask
    if (off >= this._rewindAt) {
      // Empty (the consumer has published every frame as done): back to offset 0. The skipped
      // end counts as used until the consumer reads the marker, so `off` bytes are free: enough.
      if (this.cachedTail !== head) this.cachedTail = Atomics.load(i32, I_TAIL)
      if (this.cachedTail === head && rec <= off) {
        i32[(RING_CONTROL_SIZE + off) >> 2] = WRAP_MARKER
        head = (head + (cap - off)) | 0
        off = 0
      }
    }
    const contiguous = cap - off
    const need = rec <= contiguous ? rec : contiguous + rec
    if (cap - ((head - this.cachedTail) | 0) < need) {
      this.cachedTail = Atomics.load(i32, I_TAIL)
      if (cap - ((head - this.cachedTail) | 0) < need) {
        this.f64[F_REFUSED]! += 1
        return false
      }
    }
    const u8 = this.u8
    if (rec > contiguous) {
      i32[(RING_CONTROL_SIZE + off) >> 2] = WRAP_MARKER
      head = (head + contiguous) | 0
      off = 0
    }
    const base = RING_CONTROL_SIZE + off
    const w = base >> 2
    // address first: it is the only part that can throw, and nothing is published yet
    if (meta instanceof FrameView) {
      const src = meta._bytes, a = meta._addrAt
      for (let k = 0; k < 16; k++) u8[base + 32 + k] = src[a + k]!
    } else if (!encodeAddress(meta.family, meta.address, u8, base + 32)) {
      throw badAddress(meta.family, meta.address)
    }
    i32[w] = len
    i32[w + 1] = meta.flags | 0
    i32[w + 2] = meta.socketId | 0
    i32[w + 3] = meta.connId | 0
    i32[w + 4] = (meta.transport & 0xff) | ((meta.family & 0xff) << 8) | ((meta.port & 0xffff) << 16)
    i32[w + 5] = 0
    this.f64[(base + 24) >> 3] = meta.recvTime
    let p = base + FRAME_HEADER_SIZE
    if (payload instanceof Uint8Array) {
      u8.set(payload, p)
    } else {
      for (let i = 0; i < payload.length; i++) {
        const part = payload[i]!
        u8.set(part, p)
        p += part.byteLength
      }
    }
    if (off + rec > this.reach) {
      this.reach = off + rec
      this.f64[F_REACH] = this.reach
    }
    head = (head + rec) | 0
    this.head = head
    Atomics.store(i32, I_HEAD, head)
    this.f64[F_PUSHED]! += 1
    // Dekker pairing with waitForData: we stored HEAD then load SLEEP; the consumer stores SLEEP
    // then loads HEAD. With sequentially consistent atomics one of us sees the other's store.
    if (Atomics.load(i32, I_SLEEP) !== 0) {
      // deferred: one wake-up at the end of this event-loop turn, unless the ring is half full
      if (!this.deferNotify || ((head - this.cachedTail) | 0) > (cap >>> 1)) this.notifyConsumer()
      else if (!this.notifyScheduled) {
        this.notifyScheduled = true
        setImmediate(this.flushNotify)
      }
    }
    return true
  }

  /**
   * Producer: while on, a push that finds the consumer asleep wakes it at the end of the current
   * event-loop turn (setImmediate) instead of at once, so every frame published in one turn
   * (a drain batch and the promise continuations it started) costs one wake-up; a push that
   * leaves the ring more than half full still wakes at once. Meant for a producer that shares a
   * CPU with its consumer: there an immediate Atomics.notify lets the woken consumer preempt
   * the producer, once per frame (two context switches and a cross-thread wake-up each).
   */
  deferNotifications(on: boolean): void {
    this.deferNotify = on
    if (!on && this.notifyScheduled) this.flushNotify()
  }

  /** Bytes free now, as the producer sees them (a lower bound: the consumer may free more). */
  freeBytes(): number {
    return this.capacity - ((this.head - Atomics.load(this.i32, I_TAIL)) | 0)
  }

  private notifyConsumer(): void {
    // Only the one who flips 1 -> 0 notifies: one notify per sleep however many frames follow.
    if (Atomics.compareExchange(this.i32, I_SLEEP, 1, 0) === 1) {
      Atomics.notify(this.i32, I_SLEEP, 1)
      this.f64[F_NOTIFIES]! += 1
    }
  }

  private tooLarge(len: number): RingError {
    return new RingError(RingErrorCode.FRAME_TOO_LARGE,
      `ring: frame payload of ${len} bytes exceeds the ring's maximum of ${this.maxPayload} bytes ` +
      `(capacity ${this.capacity} / 2 - ${FRAME_HEADER_SIZE} header)`)
  }

  // ---------------------------------------------------------------- consumer side

  /** True when at least one frame is published and not yet drained. */
  hasData(): boolean {
    return Atomics.load(this.i32, I_HEAD) !== this.tail
  }

  /**
   * Deliver up to `maxFrames` frames published before this call, in order, to `onFrame`.
   * `meta` is this ring's one reused FrameView and `payload` a view into the ring (a Buffer):
   * both valid only during the callback; copy what you keep. Frames are consumed as they are
   * handed out: if `onFrame` throws, that frame is not redelivered and the error propagates.
   * Returns the number of frames delivered.
   */
  drain(onFrame: FrameHandler, maxFrames = 0x7fffffff): number {
    if (this.draining) {
      throw new RingError(RingErrorCode.REENTRANT_DRAIN, 'ring: drain() called from inside a drain callback')
    }
    const i32 = this.i32
    const head = Atomics.load(i32, I_HEAD)
    let tail = this.tail
    if (head === tail) return 0
    const mask = this.mask
    const cap = this.capacity
    const maxPayload = this.maxPayload
    const view = this.view
    const buf = this.buf
    const f64 = this.f64
    let n = 0
    this.draining = true
    try {
      while (tail !== head && n < maxFrames) {
        const off = tail & mask
        const base = RING_CONTROL_SIZE + off
        const w = base >> 2
        const len = i32[w]!
        if (len === WRAP_MARKER) {
          tail = (tail + (cap - off)) | 0
          this.tail = tail
          continue
        }
        const rec = (FRAME_HEADER_SIZE + len + RECORD_ALIGN_MASK) & ~RECORD_ALIGN_MASK
        if (len < 0 || len > maxPayload || off + rec > cap || ((head - tail) | 0) < rec) {
          throw new RingError(RingErrorCode.CORRUPT,
            `ring: corrupt record at offset ${off} (length field ${len}); the ring must be recreated`)
        }
        const tpf = i32[w + 4]!
        view.flags = i32[w + 1]! >>> 0
        view.socketId = i32[w + 2]! >>> 0
        view.connId = i32[w + 3]! >>> 0
        view.transport = tpf & 0xff
        view.family = ((tpf >>> 8) & 0xff) as 4 | 6
        view.port = tpf >>> 16
        view.recvTime = f64[(base + 24) >> 3]!
        view.length = len
        view._addrAt = base + 32
        view._address = null
        tail = (tail + rec) | 0
        this.tail = tail
        n++
        const start = base + FRAME_HEADER_SIZE
        onFrame(view, buf.subarray(start, start + len))
        if (((tail - this.publishedTail) | 0) >= this.publishEvery) {
          Atomics.store(i32, I_TAIL, tail)
          this.publishedTail = tail
        }
      }
    } finally {
      this.draining = false
      if (this.publishedTail !== this.tail) {
        Atomics.store(i32, I_TAIL, this.tail)
        this.publishedTail = this.tail
      }
      f64[F_DRAINED]! += n
    }
    return n
  }

  /**
   * Resolve when data is available, without blocking the event loop (Atomics.waitAsync). If
   * data is there already, resolves at once. Sets the "sleeping" word so the producer's next
   * tryPush notifies; re-checks for data after setting it (a frame published in between is not
   * missed). Also ends on `wake()` or after `timeoutMs`. May resolve with no data (spurious
   * wake, wake(), timeout): loop `drain` / `waitForData`. While pending, the wait keeps the
   * event loop alive like an open socket. Calls while a wait is pending share its promise.
   */
  waitForData(timeoutMs?: number): Promise<void> {
    if (this.waiting !== null) return this.waiting
    const i32 = this.i32
    if (Atomics.load(i32, I_HEAD) !== this.tail || Atomics.exchange(i32, I_WAKE, 0) !== 0) return RESOLVED
    Atomics.store(i32, I_SLEEP, 1)
    if (this._waitHook !== null) this._waitHook(1)
    // Re-check after announcing the sleep: a frame published before the producer could see the
    // flag would otherwise sleep here until the next frame.
    if (Atomics.load(i32, I_HEAD) !== this.tail || Atomics.exchange(i32, I_WAKE, 0) !== 0) {
      Atomics.compareExchange(i32, I_SLEEP, 1, 0)
      return RESOLVED
    }
    if (this._waitHook !== null) this._waitHook(2)
    const timeout = timeoutMs === undefined ? Infinity : Math.max(0, timeoutMs)
    const r = Atomics.waitAsync(i32, I_SLEEP, 1, timeout)
    if (!r.async) {
      // 'not-equal': the producer (or wake()) flipped the flag after our re-check and notified.
      // 'timed-out' (timeout 0): take the flag back.
      if (r.value === 'not-equal') this.f64[F_WAKEUPS]! += 1
      else Atomics.compareExchange(i32, I_SLEEP, 1, 0)
      return RESOLVED
    }
    // A pending waitAsync does not keep Node's event loop alive; a worker whose only job is
    // this ring would exit. Hold a ref on a timer for the duration of the wait: one timer per
    // ring, created on the first sleep and never re-armed (it never fires), so a sleep costs a
    // ref/unref, not a timer armed and cleared (issue 17).
    let k = this.keepAlive
    if (k === null) {
      k = setInterval(noop, NO_DEADLINE_KEEPALIVE_MS)
      this.keepAlive = k
    } else {
      k.ref()
    }
    const p = r.value.then(this.onWaitDone)
    this.waiting = p
    return p
  }

  /**
   * Block this thread (Atomics.wait) until data is available, wake() is called, or `timeoutMs`
   * passes; returns true when it may have data (woken, or there already). The same sleeping-flag
   * protocol as waitForData, so the producer's notify ends it; a wake-up costs a futex wake and
   * no event-loop hop (Atomics.waitAsync resolves through a libuv async handle and a task), but
   * the thread's event loop does not run while it blocks: keep `timeoutMs` short. Not on a
   * thread where blocking is not allowed (a browser main thread; Node's main thread may).
   */
  waitSync(timeoutMs: number): boolean {
    if (this.waiting !== null) return false
    const i32 = this.i32
    if (Atomics.load(i32, I_HEAD) !== this.tail || Atomics.exchange(i32, I_WAKE, 0) !== 0) return true
    Atomics.store(i32, I_SLEEP, 1)
    if (Atomics.load(i32, I_HEAD) !== this.tail || Atomics.exchange(i32, I_WAKE, 0) !== 0) {
      Atomics.compareExchange(i32, I_SLEEP, 1, 0)
      return true
    }
    const r = Atomics.wait(i32, I_SLEEP, 1, Math.max(0, timeoutMs))
    if (r === 'timed-out') {
      // take the flag back; a producer that flipped it just now has notified nobody: the data is there
      if (Atomics.compareExchange(i32, I_SLEEP, 1, 0) === 1) return false
    }
    this.f64[F_WAKEUPS]! += 1
    return true
  }

  private waitDone(res: 'ok' | 'timed-out'): void {
    if (this.keepAlive !== null) this.keepAlive.unref()
    this.waiting = null
    if (res === 'ok') this.f64[F_WAKEUPS]! += 1
    else Atomics.compareExchange(this.i32, I_SLEEP, 1, 0)
  }

  /**
   * End the consumer's current or next waitForData (e.g. at shutdown). Callable from any
   * thread; a wake requested while the consumer is awake makes its next waitForData return at once.
   */
  wake(): void {
    Atomics.store(this.i32, I_WAKE, 1)
    if (Atomics.compareExchange(this.i32, I_SLEEP, 1, 0) === 1) Atomics.notify(this.i32, I_SLEEP, 1)
  }

  /** True while the consumer has announced that it sleeps (diagnostics, tests, benchmarks). */
  consumerSleeping(): boolean {
    return Atomics.load(this.i32, I_SLEEP) !== 0
  }

  // ---------------------------------------------------------------- any thread

  /** Counters from shared memory: any thread attached to the ring reads them without messages. */
  stats(): RingStats {
    const i32 = this.i32
    const f64 = this.f64
    const tail = Atomics.load(i32, I_TAIL)
    const head = Atomics.load(i32, I_HEAD)
    let used = (head - tail) | 0
    if (used < 0) used = 0
    else if (used > this.capacity) used = this.capacity
    return {
      pushed: f64[F_PUSHED]!,
      refused: f64[F_REFUSED]!,
      drained: f64[F_DRAINED]!,
      wakeups: f64[F_WAKEUPS]!,
      notifies: f64[F_NOTIFIES]!,
      used,
      capacity: this.capacity,
      reach: f64[F_REACH]!,
    }
  }
}
