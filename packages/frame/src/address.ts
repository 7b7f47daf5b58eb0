/**
 * Remote address codec for the frame header: 16 bytes in network order. IPv4 uses the first
 * 4 bytes (rest zero); IPv6 all 16. Parsing is by hand, without allocation, because the primary
 * gets every address as a string from `dgram` rinfo / `net.Socket#remoteAddress`. Formatting
 * follows libuv's `uv_inet_ntop` (which produced those strings), so a round trip of an address
 * that Node gave us yields the identical string.
 *
 * encodeAddress answers false for what it cannot encode instead of throwing: the caller (the
 * ring's tryPush) raises its own coded error, and this package stays free of error classes.
 */

export type AddressFamily = 4 | 6

// Scratch for IPv6 parsing, reused (module state is per thread).
const groups = new Int32Array(8)
const v6bytes = new Uint8Array(16)
let lastV6In = ''
let lastV6Ok = false

/** Parse a dotted quad in s[start, end) into out[at..at+3]; false if malformed. No allocation. */
function parseV4(s: string, start: number, end: number, out: Uint8Array, at: number): boolean {
  let part = 0
  let val = 0
  let digits = 0
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i)
    if (c === 46 /* . */) {
      if (digits === 0 || part === 3) return false
      out[at + part] = val
      part++
      val = 0
      digits = 0
    } else {
      const d = c - 48
      if (d < 0 || d > 9 || digits === 3) return false
      val = val * 10 + d
      if (val > 255) return false
      digits++
    }
  }
  if (part !== 3 || digits === 0) return false
  out[at + 3] = val
  return true
}

function hexVal(c: number): number {
  if (c >= 48 && c <= 57) return c - 48
  const l = c | 0x20
  if (l >= 97 && l <= 102) return l - 87
  return -1
}

/** Parse an IPv6 literal (optional %zone ignored) into v6bytes; false if malformed. */
function parseV6(s: string): boolean {
  let n = s.length
  const pct = s.indexOf('%')
  if (pct >= 0) n = pct
  if (n < 2) return false
  let gi = 0
  let dbl = -1
  let i = 0
  if (s.charCodeAt(0) === 58) {
    if (s.charCodeAt(1) !== 58) return false
    dbl = 0
    i = 2
  }
  while (i < n) {
    if (gi === 8) return false
    const start = i
    let val = 0
    let digits = 0
    while (i < n) {
      const h = hexVal(s.charCodeAt(i))
      if (h < 0) break
      if (++digits > 4) return false
      val = (val << 4) | h
      i++
    }
    if (i < n && s.charCodeAt(i) === 46) {
      // embedded dotted quad: the last 32 bits
      if (gi > 6 || !parseV4(s, start, n, v6bytes, 0)) return false
      groups[gi++] = (v6bytes[0]! << 8) | v6bytes[1]!
      groups[gi++] = (v6bytes[2]! << 8) | v6bytes[3]!
      i = n
      break
    }
    if (digits === 0) return false
    groups[gi++] = val
    if (i === n) break
    if (s.charCodeAt(i) !== 58) return false
    i++
    if (i < n && s.charCodeAt(i) === 58) {
      if (dbl >= 0) return false
      dbl = gi
      i++
    } else if (i === n) {
      return false // trailing single colon
    }
  }
  if (dbl >= 0) {
    if (gi === 8) return false // '::' stands for at least one group
    const move = gi - dbl
    for (let k = 1; k <= move; k++) groups[8 - k] = groups[gi - k]!
    for (let k = dbl; k < 8 - move; k++) groups[k] = 0
  } else if (gi !== 8) {
    return false
  }
  for (let k = 0; k < 8; k++) {
    const g = groups[k]!
    v6bytes[2 * k] = g >>> 8
    v6bytes[2 * k + 1] = g & 0xff
  }
  return true
}

/**
 * Write `address` (family 4 or 6) as 16 bytes into out[at..at+15]. The empty string writes the
 * unspecified address (0.0.0.0 / ::). Returns false, having written nothing that counts, when
 * `address` is not a literal of `family` or `family` is neither 4 nor 6.
 */
export function encodeAddress(family: number, address: string, out: Uint8Array, at: number): boolean {
  if (family === 4) {
    if (address.length === 0) {
      out[at] = 0; out[at + 1] = 0; out[at + 2] = 0; out[at + 3] = 0
    } else if (!parseV4(address, 0, address.length, out, at)) {
      return false
    }
    for (let k = 4; k < 16; k++) out[at + k] = 0
    return true
  }
  if (family === 6) {
    if (address.length === 0) {
      for (let k = 0; k < 16; k++) out[at + k] = 0
      return true
    }
    // One-entry cache: a burst from the same peer parses once.
    if (address !== lastV6In || !lastV6Ok) {
      lastV6In = address
      lastV6Ok = parseV6(address)
      if (!lastV6Ok) return false
    }
    for (let k = 0; k < 16; k++) out[at + k] = v6bytes[k]!
    return true
  }
  return false
}

/** `uv_inet_ntop`-compatible text of the address stored at bytes[at..]. Allocates the string. */
export function decodeAddress(family: number, bytes: Uint8Array, at: number): string {
  if (family === 4) return formatV4(bytes, at)
  if (family === 6) return formatV6(bytes, at)
  return ''
}

function formatV4(b: Uint8Array, at: number): string {
  return `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`
}

function formatV6(b: Uint8Array, at: number): string {
  // libuv src/inet.c inet_ntop6 (from BIND): longest run of >= 2 zero groups becomes '::',
  // first such run wins on a tie; IPv4-mapped/compatible tails are printed as dotted quads.
  const w = groups
  for (let i = 0; i < 8; i++) w[i] = (b[at + 2 * i]! << 8) | b[at + 2 * i + 1]!
  let bestBase = -1
  let bestLen = 0
  let curBase = -1
  let curLen = 0
  for (let i = 0; i < 8; i++) {
    if (w[i] === 0) {
      if (curBase === -1) { curBase = i; curLen = 1 } else curLen++
    } else if (curBase !== -1) {
      if (bestBase === -1 || curLen > bestLen) { bestBase = curBase; bestLen = curLen }
      curBase = -1
    }
  }
  if (curBase !== -1 && (bestBase === -1 || curLen > bestLen)) { bestBase = curBase; bestLen = curLen }
  if (bestBase !== -1 && bestLen < 2) bestBase = -1
  let out = ''
  for (let i = 0; i < 8; i++) {
    if (bestBase !== -1 && i >= bestBase && i < bestBase + bestLen) {
      if (i === bestBase) out += ':'
      continue
    }
    if (i !== 0) out += ':'
    if (i === 6 && bestBase === 0 &&
        (bestLen === 6 || (bestLen === 7 && w[7] !== 0x0001) || (bestLen === 5 && w[5] === 0xffff))) {
      out += formatV4(b, at + 12)
      break
    }
    out += w[i]!.toString(16)
  }
  if (bestBase !== -1 && bestBase + bestLen === 8) out += ':'
  return out
}
