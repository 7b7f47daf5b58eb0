// Copies of message bytes that are kept long (proxy core, forwarding).
/**
 * A copy of `b` in a backing store of its own, exactly its size. Bytes kept for tens of seconds
 * (an INVITE's transactions live 32 s after the final: Timers L, M, H and D) must not sit in one
 * of Node's 8 KB pool slabs (what Buffer.from gives below 4 KB): a slab is freed only when its last
 * view is, so one INVITE kept the slab, and the space of every short-lived message cut from it,
 * alive (issue 17: at S=10, ~7,000 slabs, 65 MB, held by ~6,000 INVITE transactions).
 */
export function ownCopy(b: Uint8Array): Buffer {
  const c = Buffer.allocUnsafeSlow(b.length)
  c.set(b)
  return c
}
