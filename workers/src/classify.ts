// Start-line classification for the per-message counters: reads the first bytes of a message
// (a Buffer, or the list of slices a MessageEditor produced) and says "request with method index
// M" or "response with status S", without decoding a string or allocating.
import { METHODS } from '@sipedge/metrics'

/** Returned for bytes that are neither a request line nor a status line we can read. */
export const UNKNOWN = -1
/** A response is returned as RESPONSE_BASE + status (100..699). */
export const RESPONSE_BASE = 1000

const OTHER = METHODS.length - 1
/** Method names as bytes, by first byte, for a short scan. */
const BY_FIRST: Array<Array<{ index: number; bytes: Uint8Array }>> = Array.from({ length: 256 }, () => [])
METHODS.forEach((m, index) => {
  if (m === 'other') return
  BY_FIRST[m.charCodeAt(0)]!.push({ index, bytes: Buffer.from(m, 'latin1') })
})

type Payload = Uint8Array | readonly Uint8Array[]

/** Byte `i` of the payload (across slices), or -1 past the end. */
function byteAt(p: Payload, i: number): number {
  if (p instanceof Uint8Array) return i < p.length ? p[i]! : -1
  for (let k = 0; k < p.length; k++) {
    const c = p[k]!
    if (i < c.length) return c[i]!
    i -= c.length
  }
  return -1
}

/**
 * METHODS index of a request, RESPONSE_BASE + status of a response, or UNKNOWN. Leading CRLFs
 * (keep-alive noise before a message) are skipped; at most a few dozen bytes are looked at.
 */
export function classify(p: Payload): number {
  let i = 0
  let b = byteAt(p, 0)
  while ((b === 13 || b === 10) && i < 8) b = byteAt(p, ++i)
  if (b < 0) return UNKNOWN
  // "SIP/2.0 NNN"
  if (b === 0x53 && byteAt(p, i + 1) === 0x49 && byteAt(p, i + 2) === 0x50 && byteAt(p, i + 3) === 0x2f) {
    let j = i + 4
    while (j < i + 12 && byteAt(p, j) !== 0x20) j++
    const d0 = byteAt(p, j + 1) - 48
    const d1 = byteAt(p, j + 2) - 48
    const d2 = byteAt(p, j + 3) - 48
    if (d0 < 1 || d0 > 6 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9) return UNKNOWN
    return RESPONSE_BASE + d0 * 100 + d1 * 10 + d2
  }
  const cands = BY_FIRST[b]!
  for (let c = 0; c < cands.length; c++) {
    const m = cands[c]!.bytes
    let k = 1
    while (k < m.length && byteAt(p, i + k) === m[k]) k++
    if (k === m.length && byteAt(p, i + k) === 0x20) return cands[c]!.index
  }
  // An extension method: a token followed by a space.
  return b >= 0x41 && b <= 0x7a ? OTHER : UNKNOWN
}
