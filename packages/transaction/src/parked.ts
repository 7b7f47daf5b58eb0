import type { Destination, TransportName } from './types.js'

/**
 * Completed non-INVITE server transactions over an unreliable transport, kept off the V8 heap
 * for Timer J (issue 17).
 *
 * RFC 3261 §17.2.2: "When the server transaction enters the "Completed" state, it MUST set Timer J
 * to fire in 64*T1 seconds for unreliable transports", and until then "the server transaction MUST
 * pass the final response to the transport layer for retransmission whenever a retransmission of
 * the request is received". All such a transaction needs for those 32 s is its matching key
 * (§17.2.3: branch, sent-by, method; and the transport it arrived on), the final response, where
 * that response goes, and the byte counts of `limitResponses`.
 *
 * As JS objects, every one of them was a transaction, its branch, its sent-by host, its response
 * string and its index entry, alive for 32 s: promoted to the old generation and marked by every
 * major GC. At S=20 that is about 130,000 transactions (issue 17, session 18: the first major GC
 * after 100,000 REGISTERs marked 211 MB with 305 ms of main-thread marking, and the UDP receive
 * queue overflowed behind it). Here they are records in fixed-size byte slabs outside the V8 heap,
 * found through an open-addressed hash index in two typed arrays: no JS object per transaction.
 *
 * Records are appended in the order their transactions complete. Every one of them expires 64*T1
 * after it was appended (one unreliable timer set per layer), so they expire in that same order
 * (FIFO): expiry walks from the oldest record, and a slab whose records have all expired is kept
 * for reuse (at most SPARE_SLABS) or left to the GC; an empty store keeps none.
 * A lookup also compares the expiry time, so a record is never matched after its Timer J, whether
 * or not expiry has run yet.
 *
 * Record layout (offsets in bytes, every record starts on an 8-byte boundary):
 *   f64 [0]  expiresAt (the layer's clock, ms)      f64 [8]  limitResponses ratio (0: none)
 *   f64 [16] dest connId (-1: none)                  f64 [24] dest socketId (-1: none)
 *   u32 [32] hash     u32 [36] record length         u32 [40] response bytes sent so far
 *   u32 [44] request bytes received so far           u32 [48] Via port + 1 (0: no port)
 *   u32 [52] arrival transport | dest transport << 4 u32 [56] dest port
 *   u32 [60] lengths: method | branch << 8 | host << 16 | dest address << 24
 *   u32 [64] response length
 *   [72] method, branch, sent-by host (lower case), dest address (latin1), response bytes
 */

/** Bytes per slab. A record larger than this (a response near 256 KB) stays on the heap. */
export const SLAB_BYTES = 256 * 1024
const HEADER = 72
// Float64Array indexes within a record (byte offset / 8)
const F_EXPIRES = 0
const F_RATIO = 1
const F_CONN = 2
const F_SOCKET = 3
// Uint32Array indexes within a record (byte offset / 4)
const U_HASH = 8
const U_LEN = 9
const U_SENT = 10
const U_REQ = 11
const U_VIAPORT = 12
const U_CODES = 13
const U_DPORT = 14
const U_LENS = 15
const U_RESP = 16
/** The index never gets smaller than this (slots). */
const MIN_SLOTS = 1024
/**
 * Emptied slabs kept for the next ones (at most): under a steady load the slab that expires is
 * the next one filled, so none is allocated. Without reuse every slab was a new ArrayBuffer,
 * freed only by a major GC: external memory V8 counts, and more major GCs (issue 17, S=20).
 */
const SPARE_SLABS = 8

const TRANSPORTS: readonly TransportName[] = ['udp', 'tcp', 'tls', 'ws', 'wss']

function transportCode(t: TransportName): number {
  switch (t) {
    case 'udp': return 0
    case 'tcp': return 1
    case 'tls': return 2
    case 'ws': return 3
    default: return 4
  }
}

interface Slab {
  readonly bytes: Buffer
  readonly f64: Float64Array
  readonly u32: Uint32Array
  /** bytes written */
  fill: number
}

function newSlab(): Slab {
  // Not from Buffer's pool: a slab of its own, freed when its records have expired.
  const bytes = Buffer.allocUnsafeSlow(SLAB_BYTES)
  return { bytes, f64: new Float64Array(bytes.buffer, bytes.byteOffset, SLAB_BYTES >>> 3), u32: new Uint32Array(bytes.buffer, bytes.byteOffset, SLAB_BYTES >>> 2), fill: 0 }
}

/** FNV-1a over a string's char codes (each < 256 here). */
function mix(h: number, s: string, fold: boolean): number {
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i)
    if (fold && c >= 65 && c <= 90) c += 32
    h = Math.imul(h ^ c, 0x01000193)
  }
  return Math.imul(h ^ 0xff, 0x01000193)
}

function keyHash(method: string, branch: string, host: string, viaPort: number, arrival: number): number {
  let h = mix(0x811c9dc5, method, false)
  h = mix(h, branch, false)
  h = mix(h, host, true)
  h = Math.imul(h ^ (viaPort + 1), 0x01000193)
  h = Math.imul(h ^ arrival, 0x01000193)
  return h >>> 0
}

/** Every char code of `s` is below `limit`. */
function below(s: string, limit: number): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) >= limit) return false
  return true
}

/** The bytes at `off` spell `s` (host: `s` compared with ASCII letters folded to lower case). */
function same(b: Buffer, off: number, len: number, s: string, fold: boolean): boolean {
  if (s.length !== len) return false
  for (let i = 0; i < len; i++) {
    let c = s.charCodeAt(i)
    if (fold && c >= 65 && c <= 90) c += 32
    if (b[off + i] !== c) return false
  }
  return true
}

export interface ParkedRecord {
  method: string
  branch: string
  /** sent-by host, already lower case */
  viaHost: string
  /** -1: the Via had no port */
  viaPort: number
  arrival: TransportName
  dest: Destination
  response: Buffer | Buffer[]
  sentBytes: number
  requestBytes: number
  ratio: number
  expiresAt: number
}

/** What a request retransmission gets from a parked transaction (`ParkedStore.retransmission`). */
export interface ParkedResend {
  /** The final response (a copy), or null when `limitResponses` withholds it. */
  bytes: Buffer | null
  dest: Destination
}

export class ParkedStore {
  /** Records held (every one a Completed transaction whose Timer J has not been processed yet). */
  count: number
  /** Slabs in order; slabs[0] holds the oldest record, the last one takes new records. */
  private slabs: Slab[]
  /** Emptied slabs for reuse (SPARE_SLABS). */
  private spare: Slab[]
  /** Sequence number of slabs[0] (a record's location is seq * SLAB_BYTES + offset). */
  private firstSeq: number
  /** Offset of the oldest record in slabs[0]. */
  private headOff: number
  /** Index: record location, -1 when the slot is empty. */
  private loc: Float64Array
  /** Index: the record's hash (compared before the record is read). */
  private hashes: Uint32Array
  private mask: number

  constructor() {
    this.count = 0
    this.slabs = []
    this.spare = []
    this.firstSeq = 0
    this.headOff = 0
    this.loc = new Float64Array(MIN_SLOTS).fill(-1)
    this.hashes = new Uint32Array(MIN_SLOTS)
    this.mask = MIN_SLOTS - 1
  }

  /** Bytes of slab memory held, spare slabs included (outside the V8 heap; `arrayBuffers` in process.memoryUsage()). */
  get slabBytes(): number {
    return (this.slabs.length + this.spare.length) * SLAB_BYTES
  }

  /**
   * Appends a record. Returns false, and keeps nothing, when it cannot be kept here: a string with
   * a char outside latin1 (a host outside ASCII), a part longer than its length field, a record
   * larger than a slab. The caller then keeps the transaction as an object.
   */
  add(r: ParkedRecord): boolean {
    const { method, branch, viaHost, dest } = r
    const address = dest.address
    if (method.length > 255 || branch.length > 255 || viaHost.length > 255 || address.length > 255) return false
    if (!below(method, 256) || !below(branch, 256) || !below(viaHost, 128) || !below(address, 256)) return false
    const resp = r.response
    let respLen = 0
    if (Array.isArray(resp)) for (let i = 0; i < resp.length; i++) respLen += resp[i]!.length
    else respLen = resp.length
    const len = (HEADER + method.length + branch.length + viaHost.length + address.length + respLen + 7) & ~7
    if (len > SLAB_BYTES) return false
    let seqIdx = this.slabs.length - 1
    let slab = seqIdx >= 0 ? this.slabs[seqIdx]! : null
    if (slab === null || slab.fill + len > SLAB_BYTES) {
      slab = this.spare.pop() ?? newSlab()
      slab.fill = 0
      this.slabs.push(slab)
      seqIdx++
    }
    const off = slab.fill
    slab.fill = off + len
    const arrival = transportCode(r.arrival)
    const hash = keyHash(method, branch, viaHost, r.viaPort, arrival)
    const f = off >>> 3
    const u = off >>> 2
    const f64 = slab.f64
    const u32 = slab.u32
    f64[f + F_EXPIRES] = r.expiresAt
    f64[f + F_RATIO] = r.ratio
    f64[f + F_CONN] = dest.connId ?? -1
    f64[f + F_SOCKET] = dest.socketId ?? -1
    u32[u + U_HASH] = hash
    u32[u + U_LEN] = len
    u32[u + U_SENT] = r.sentBytes
    u32[u + U_REQ] = r.requestBytes
    u32[u + U_VIAPORT] = r.viaPort + 1
    u32[u + U_CODES] = arrival | (transportCode(dest.transport) << 4)
    u32[u + U_DPORT] = dest.port
    u32[u + U_LENS] = method.length | (branch.length << 8) | (viaHost.length << 16) | (address.length << 24)
    u32[u + U_RESP] = respLen
    const b = slab.bytes
    let p = off + HEADER
    p += b.write(method, p, 'latin1')
    p += b.write(branch, p, 'latin1')
    p += b.write(viaHost, p, 'latin1')
    p += b.write(address, p, 'latin1')
    if (Array.isArray(resp)) for (let i = 0; i < resp.length; i++) p += resp[i]!.copy(b, p)
    else resp.copy(b, p)
    if ((this.count + 1) * 2 > this.loc.length) this.resize(this.loc.length * 2)
    this.insert((this.firstSeq + seqIdx) * SLAB_BYTES + off, hash)
    this.count++
    return true
  }

  /**
   * The record a request retransmission matches (§17.2.3), or -1: same method, branch, sent-by
   * (host compared without case), Via port (-1: none) and arrival transport, Timer J not due.
   */
  find(method: string, branch: string, host: string, viaPort: number, arrival: TransportName, now: number): number {
    if (this.count === 0) return -1
    const code = transportCode(arrival)
    const h = keyHash(method, branch, host, viaPort, code)
    const loc = this.loc
    const hashes = this.hashes
    const mask = this.mask
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const l = loc[i]!
      if (l < 0) return -1
      if (hashes[i] !== h) continue
      const seq = Math.floor(l / SLAB_BYTES)
      const slab = this.slabs[seq - this.firstSeq]!
      const off = l - seq * SLAB_BYTES
      const u = off >>> 2
      const u32 = slab.u32
      if (u32[u + U_VIAPORT] !== viaPort + 1 || (u32[u + U_CODES]! & 15) !== code) continue
      const lens = u32[u + U_LENS]!
      const ml = lens & 255
      const bl = (lens >>> 8) & 255
      const hl = (lens >>> 16) & 255
      const b = slab.bytes
      const p = off + HEADER
      if (!same(b, p, ml, method, false) || !same(b, p + ml, bl, branch, false) || !same(b, p + ml + bl, hl, host, true)) continue
      return slab.f64[(off >>> 3) + F_EXPIRES]! > now ? l : -1
    }
  }

  /**
   * A retransmission of the request of record `l` arrived with `requestBytes` bytes: counts them,
   * and gives the final response to resend (a copy: the slab is reused once the record expires),
   * or null when the response byte cap (`limitResponses`) withholds it.
   */
  retransmission(l: number, requestBytes: number): ParkedResend {
    const seq = Math.floor(l / SLAB_BYTES)
    const slab = this.slabs[seq - this.firstSeq]!
    const off = l - seq * SLAB_BYTES
    const u = off >>> 2
    const f = off >>> 3
    const u32 = slab.u32
    const f64 = slab.f64
    const req = u32[u + U_REQ]! + requestBytes
    u32[u + U_REQ] = Math.min(req, 0xffffffff)
    const lens = u32[u + U_LENS]!
    const keyLen = (lens & 255) + ((lens >>> 8) & 255) + ((lens >>> 16) & 255)
    const addrLen = lens >>> 24
    const b = slab.bytes
    const addrAt = off + HEADER + keyLen
    const codes = u32[u + U_CODES]!
    const dest: Destination = { transport: TRANSPORTS[(codes >>> 4) & 15]!, address: b.toString('latin1', addrAt, addrAt + addrLen), port: u32[u + U_DPORT]! }
    const conn = f64[f + F_CONN]!
    const sock = f64[f + F_SOCKET]!
    if (conn >= 0) dest.connId = conn
    if (sock >= 0) dest.socketId = sock
    const n = u32[u + U_RESP]!
    const sent = u32[u + U_SENT]!
    const ratio = f64[f + F_RATIO]!
    if (ratio > 0 && sent + n > ratio * req) return { bytes: null, dest }
    u32[u + U_SENT] = Math.min(sent + n, 0xffffffff)
    const at = addrAt + addrLen
    return { bytes: Buffer.from(b.subarray(at, at + n)), dest }
  }

  /** Expiry time of the oldest record, -1 when none. */
  nextExpiry(): number {
    if (this.count === 0) return -1
    this.skipSpent()
    const s = this.slabs[0]!
    return s.f64[(this.headOff >>> 3) + F_EXPIRES]!
  }

  /** Removes every record whose Timer J is due at `now` (oldest first); returns how many. */
  expire(now: number): number {
    let n = 0
    while (this.count > 0) {
      this.skipSpent()
      const s = this.slabs[0]!
      const off = this.headOff
      if (s.f64[(off >>> 3) + F_EXPIRES]! > now) break
      const u = off >>> 2
      this.delete(this.firstSeq * SLAB_BYTES + off, s.u32[u + U_HASH]!)
      this.headOff = off + s.u32[u + U_LEN]!
      this.count--
      n++
    }
    if (this.count === 0 && this.slabs.length > 0) {
      // nothing left: every slab goes, spare ones too (an idle node keeps no slab)
      this.firstSeq += this.slabs.length
      this.slabs = []
      this.spare = []
      this.headOff = 0
    }
    if (n > 0 && this.loc.length > MIN_SLOTS && this.count * 8 < this.loc.length) {
      let size = MIN_SLOTS
      while (size < this.count * 4) size *= 2
      this.resize(size)
    }
    return n
  }

  /** Frees the oldest slab while all of its records are gone (count > 0: a record follows). */
  private skipSpent(): void {
    while (this.headOff >= this.slabs[0]!.fill) {
      const s = this.slabs.shift()!
      if (this.spare.length < SPARE_SLABS) this.spare.push(s)
      this.firstSeq++
      this.headOff = 0
    }
  }

  private insert(l: number, h: number): void {
    const loc = this.loc
    const mask = this.mask
    let i = h & mask
    while (loc[i]! >= 0) i = (i + 1) & mask
    loc[i] = l
    this.hashes[i] = h
  }

  /** Linear probing deletion with backward shift (no tombstones). */
  private delete(l: number, h: number): void {
    const loc = this.loc
    const hashes = this.hashes
    const mask = this.mask
    let i = h & mask
    for (;;) {
      const v = loc[i]!
      if (v === l) break
      if (v < 0) return // not indexed (cannot happen: every record is)
      i = (i + 1) & mask
    }
    let j = i
    for (;;) {
      j = (j + 1) & mask
      const v = loc[j]!
      if (v < 0) break
      const home = hashes[j]! & mask
      // the entry at j may move to the hole at i unless its home lies cyclically in (i, j]
      const stays = i <= j ? home > i && home <= j : home > i || home <= j
      if (stays) continue
      loc[i] = v
      hashes[i] = hashes[j]!
      i = j
    }
    loc[i] = -1
  }

  private resize(size: number): void {
    const oldLoc = this.loc
    const oldHashes = this.hashes
    this.loc = new Float64Array(size).fill(-1)
    this.hashes = new Uint32Array(size)
    this.mask = size - 1
    for (let i = 0; i < oldLoc.length; i++) {
      const l = oldLoc[i]!
      if (l >= 0) this.insert(l, oldHashes[i]!)
    }
  }
}
