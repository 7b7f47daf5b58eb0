// SharedCounters: named slots of float64 over a SharedArrayBuffer, one block per writer thread.
//
// Why no locks: each block has exactly one writer (the thread that owns it); the primary only
// reads, at scrape time, and sums the blocks. A counter read a few nanoseconds stale is fine.
// Why float64: integers are exact up to 2^53 (years of traffic at millions of msg/s), histogram
// sums need fractions, and `f[i] += 1` is one load/add/store with no BigInt allocation. Aligned
// 8-byte stores are single instructions on the x64/arm64 targets we run on, so a reader does not
// see half a value in practice (the ECMAScript memory model does not promise it for Float64Array;
// the worst case would be one odd sample in one scrape, never corrupted state).
//
// Buffer layout: a header of HEADER_SLOTS float64 words, then `blocks` blocks of
// `layout.blockSize` words each:
//   [0] MAGIC  [1] layout fingerprint  [2] blockSize  [3] blocks
//   block b starts at word HEADER_SLOTS + b * blockSize.

export const HEADER_SLOTS = 4
const MAGIC = 0x51ed_6e01

export type GroupKind = 'counter' | 'gauge'

export interface GroupSpec {
  /** Number of slots in the group. */
  readonly size: number
  /** Counters survive a writer's replacement (see SharedCounters.retire); gauges are dropped. */
  readonly kind: GroupKind
}

/** A fixed assignment of named slot groups to offsets within a block. Build once, share. */
export class CounterLayout<K extends string = string> {
  readonly offsets: Readonly<Record<K, number>>
  readonly sizes: Readonly<Record<K, number>>
  readonly kinds: Readonly<Record<K, GroupKind>>
  /** float64 slots per block. */
  readonly blockSize: number
  /** Mask over a block: 1 where the slot belongs to a counter group. */
  readonly counterMask: Uint8Array
  /** Stable number derived from the group names and sizes; a mismatched reader/writer is refused. */
  readonly fingerprint: number

  constructor(spec: Readonly<Record<K, GroupSpec>>) {
    const offsets = {} as Record<K, number>
    const sizes = {} as Record<K, number>
    const kinds = {} as Record<K, GroupKind>
    let at = 0
    let fp = 17
    for (const name of Object.keys(spec) as K[]) {
      const g = spec[name]
      if (!Number.isInteger(g.size) || g.size < 1) throw new RangeError(`slot group ${name}: size must be a positive integer`)
      offsets[name] = at
      sizes[name] = g.size
      kinds[name] = g.kind
      at += g.size
      for (let i = 0; i < name.length; i++) fp = (Math.imul(fp, 31) + name.charCodeAt(i)) | 0
      fp = (Math.imul(fp, 31) + g.size + (g.kind === 'counter' ? 1 : 2)) | 0
    }
    this.offsets = Object.freeze(offsets)
    this.sizes = Object.freeze(sizes)
    this.kinds = Object.freeze(kinds)
    this.blockSize = at
    this.fingerprint = fp >>> 0
    const mask = new Uint8Array(at)
    for (const name of Object.keys(spec) as K[]) if (kinds[name] === 'counter') mask.fill(1, offsets[name], offsets[name] + sizes[name])
    this.counterMask = mask
  }
}

export class MetricsLayoutError extends Error {
  readonly code = 'ERR_METRICS_LAYOUT' as const
  constructor(message: string) {
    super(message)
    this.name = 'MetricsLayoutError'
  }
}

export class SharedCounters<K extends string = string> {
  readonly layout: CounterLayout<K>
  readonly buffer: SharedArrayBuffer
  readonly blocks: number
  /** The whole buffer as float64 words (header included). */
  readonly words: Float64Array
  /** Counter values of writers that were replaced (retire()), so totals never go backwards. */
  readonly retired: Float64Array

  /** A zeroed buffer for `blocks` writers of `layout`. */
  static allocate<K extends string>(layout: CounterLayout<K>, blocks: number): SharedArrayBuffer {
    if (!Number.isInteger(blocks) || blocks < 1 || blocks > 4096) throw new RangeError('blocks must be an integer in 1..4096')
    const sab = new SharedArrayBuffer((HEADER_SLOTS + blocks * layout.blockSize) * 8)
    const w = new Float64Array(sab)
    w[0] = MAGIC
    w[1] = layout.fingerprint
    w[2] = layout.blockSize
    w[3] = blocks
    return sab
  }

  constructor(layout: CounterLayout<K>, buffer: SharedArrayBuffer) {
    const w = new Float64Array(buffer)
    if (w.length < HEADER_SLOTS || w[0] !== MAGIC) throw new MetricsLayoutError('not a SharedCounters buffer')
    if (w[1] !== layout.fingerprint || w[2] !== layout.blockSize) {
      throw new MetricsLayoutError('SharedCounters buffer was allocated for another layout (different build of @sipedge/metrics?)')
    }
    this.layout = layout
    this.buffer = buffer
    this.words = w
    this.blocks = w[3]!
    this.retired = new Float64Array(layout.blockSize)
  }

  /** Index in `words` of slot 0 of `block`. */
  base(block: number): number {
    if (!Number.isInteger(block) || block < 0 || block >= this.blocks) throw new RangeError(`block ${block} out of range 0..${this.blocks - 1}`)
    return HEADER_SLOTS + block * this.layout.blockSize
  }

  /** A writer's view: index it with layout offsets. */
  view(block: number): Float64Array {
    const b = this.base(block)
    return this.words.subarray(b, b + this.layout.blockSize)
  }

  get(block: number, group: K, index = 0): number {
    return this.words[this.base(block) + this.layout.offsets[group] + index]!
  }

  /** Sum of one slot over all blocks (plus retired counters). */
  sum(group: K, index = 0): number {
    const off = this.layout.offsets[group] + index
    let s = this.retired[off]!
    for (let b = 0; b < this.blocks; b++) s += this.words[HEADER_SLOTS + b * this.layout.blockSize + off]!
    return s
  }

  /** Every slot summed over all blocks (plus retired counters) into `out` (length blockSize). */
  sumInto(out: Float64Array): Float64Array {
    const n = this.layout.blockSize
    out.set(this.retired)
    const w = this.words
    for (let b = 0; b < this.blocks; b++) {
      const base = HEADER_SLOTS + b * n
      for (let i = 0; i < n; i++) out[i]! += w[base + i]!
    }
    return out
  }

  /**
   * The writer of `block` is gone (a crashed worker): keep its counters in `retired` so sums stay
   * monotonic, drop its gauges, and zero the block for the replacement. Call only when no thread
   * writes the block any more (after the Worker's 'exit' event).
   */
  retire(block: number): void {
    const b = this.base(block)
    const n = this.layout.blockSize
    const mask = this.layout.counterMask
    for (let i = 0; i < n; i++) if (mask[i] === 1) this.retired[i]! += this.words[b + i]!
    this.words.fill(0, b, b + n)
  }
}
