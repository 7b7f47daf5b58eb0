// Copies of what a transaction keeps for tens of seconds (issue 17, memory at S=20).

/**
 * `s` as a string of its own. A parameter cut out of a header value (the top Via's branch) is a
 * V8 sliced string: a 32-byte view that keeps its whole parent alive. A server transaction keeps
 * its branch for 32 s after its final response (Timers J and I/L, and the layer's index key), so
 * each one kept the whole top Via value too (heap snapshot at S=20: 148,749 Via values, 12 MB,
 * held only by the branches of 131,791 non-INVITE and 10,466 INVITE server transactions).
 * A latin1 round trip gives a flat string of exactly the branch (~0.2 µs, once per transaction).
 */
export function ownString(s: string): string {
  const f = Buffer.from(s, 'latin1').toString('latin1')
  // a character above U+00FF does not survive latin1: keep the slice rather than a different key
  return f === s ? f : s
}

/**
 * The bytes of `b` (one buffer or a gather list) in a store of their own, exactly their size. Used
 * for what lives with an INVITE's transactions: here, and in the proxy for the received INVITE
 * and the best final response (session 13: ~7,000 slabs, 65 MB at S=10, held by INVITEs).
 * `Buffer.concat` and `Buffer.from` cut anything under 4 KB from Node's shared 8 KB pool slab, and
 * the messages sip's builder writes are views of its 16 KB slab: a slab is freed only when its
 * last view is, so one message kept for 32 s kept the slab, and every short-lived message cut
 * from it, alive (heap snapshot at S=20: 4,345 parsed INVITEs of cancelled calls held 35.6 MB of
 * 8 KB slabs, 981 non-2xx ACKs 16.1 MB of 16 KB ones).
 */
export function ownBytes(b: Uint8Array | readonly Uint8Array[]): Buffer {
  if (!Array.isArray(b)) {
    const one = b as Uint8Array
    const c = Buffer.allocUnsafeSlow(one.length)
    c.set(one)
    return c
  }
  const list = b as readonly Uint8Array[]
  let n = 0
  for (let i = 0; i < list.length; i++) n += list[i]!.length
  const c = Buffer.allocUnsafeSlow(n)
  let o = 0
  for (let i = 0; i < list.length; i++) { c.set(list[i]!, o); o += list[i]!.length }
  return c
}
