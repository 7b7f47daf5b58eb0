/**
 * Call-ID scan over raw bytes for the primary thread's sharding: no parse, no allocation.
 * Finds the first "Call-ID" (any case) or compact "i" header line, and hashes the trimmed
 * value with FNV-1a 32-bit, so one call always lands on the same worker.
 */

const FNV_OFFSET = 0x811c9dc5
const FNV_PRIME = 0x01000193
// "call-id" folded
const C_A = 0x61, C_L = 0x6c, C_I = 0x69, C_D = 0x64, C_C = 0x63, DASH = 0x2d

let lastStart = -1
let lastEnd = -1

/**
 * Locate the Call-ID value in buf[start, end). Returns the value's start offset and leaves the
 * end offset readable via lastCallIdEnd() (no allocation); -1 when there is none.
 * The value is trimmed; folded values are followed across the fold.
 */
export function findCallIdStart(buf: Uint8Array, start = 0, end = buf.length): number {
  // Line starts are found with the native memchr behind indexOf (Buffer or Uint8Array): a
  // per-byte JS loop costs several times more on lines of a few dozen bytes. Only the first
  // byte of a line is looked at unless it can start "Call-ID" or "i".
  let p = buf.indexOf(10, start)
  if (p < 0 || p >= end) return -1
  p++
  while (p < end) {
    const raw = buf[p]!
    // empty line (or a stray CR): end of headers
    if (raw === 13 || raw === 10) return -1
    const c = raw | 0x20
    let q = -1
    if (c === C_C) {
      if (p + 7 <= end && (buf[p + 1]! | 0x20) === C_A && (buf[p + 2]! | 0x20) === C_L && (buf[p + 3]! | 0x20) === C_L &&
        buf[p + 4] === DASH && (buf[p + 5]! | 0x20) === C_I && (buf[p + 6]! | 0x20) === C_D) q = p + 7
    } else if (c === C_I) {
      q = p + 1
    }
    if (q >= 0) {
      while (q < end && (buf[q] === 32 || buf[q] === 9)) q++
      if (q < end && buf[q] === 58) {
        q++
        // skip LWS, including a fold (CRLF followed by SP/HT)
        for (;;) {
          while (q < end && (buf[q] === 32 || buf[q] === 9)) q++
          if (q + 2 < end && buf[q] === 13 && buf[q + 1] === 10 && (buf[q + 2] === 32 || buf[q + 2] === 9)) { q += 3; continue }
          if (q + 1 < end && buf[q] === 10 && (buf[q + 1] === 32 || buf[q + 1] === 9)) { q += 2; continue }
          break
        }
        let e = q
        while (e < end) {
          const b = buf[e]!
          if (b === 13 || b === 10 || b === 32 || b === 9) break
          e++
        }
        if (e === q) return -1
        lastStart = q
        lastEnd = e
        return q
      }
    }
    const nl = buf.indexOf(10, p)
    if (nl < 0 || nl >= end) return -1
    p = nl + 1
  }
  return -1
}

/** End offset of the value found by the last successful findCallIdStart / findCallId. */
export function lastCallIdEnd(): number {
  return lastEnd
}

/**
 * Contract form: the Call-ID value range packed in one number, start * 2^16 + length
 * (length < 65536); -1 when absent. Unpack with callIdRangeStart / callIdRangeLength.
 */
export function findCallId(buf: Uint8Array, start = 0, end = buf.length): number {
  const s = findCallIdStart(buf, start, end)
  if (s < 0) return -1
  const len = lastEnd - s
  return s * 0x10000 + (len > 0xffff ? 0xffff : len)
}

export function callIdRangeStart(packed: number): number {
  return Math.floor(packed / 0x10000)
}

export function callIdRangeLength(packed: number): number {
  return packed % 0x10000
}

/** FNV-1a 32-bit over buf[s, e). */
export function fnv1a(buf: Uint8Array, s: number, e: number): number {
  let h = FNV_OFFSET
  for (let i = s; i < e; i++) {
    h ^= buf[i]!
    h = Math.imul(h, FNV_PRIME)
  }
  return h >>> 0
}

/** Stable 32-bit hash of the Call-ID value (unsigned), -1 when there is no Call-ID. */
export function callIdHash(buf: Uint8Array, start = 0, end = buf.length): number {
  const s = findCallIdStart(buf, start, end)
  if (s < 0) return -1
  return fnv1a(buf, s, lastEnd)
}

/**
 * The same hash computed from a Call-ID string as returned by SipMessage.callId (latin1, one
 * char per byte), so a worker can recompute the shard of a parsed message.
 */
export function callIdHashOf(callId: string): number {
  let h = FNV_OFFSET
  for (let i = 0; i < callId.length; i++) {
    h ^= callId.charCodeAt(i) & 0xff
    h = Math.imul(h, FNV_PRIME)
  }
  return h >>> 0
}

void lastStart
