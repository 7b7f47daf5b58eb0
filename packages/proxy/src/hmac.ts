// HMAC-SHA256 (RFC 2104, FIPS 180-4) for the short MACs the proxy computes per message: the
// signed Via branch, the dialog and flow tokens in Record-Route, the auth nonces. `createHmac`
// costs ~3.2 µs a call in a warm loop on Node 20 (`bench:hmac`) because OpenSSL 3 fetches the
// algorithm and builds a context each time; profiled at S=1 it was 4.9% of the main thread's
// JavaScript (docs/performance.md, session 20). A key's inner and outer pad blocks are
// compressed once, when the key is set, so a MAC of a message under 56 bytes is two compressions
// and one under 120 bytes three. No branch or table index depends on the key or the message's
// content. Checked against node:crypto (test/hmac.test.ts: RFC 4231 vectors, random keys and
// messages).
import { createHash } from 'node:crypto'

const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
])
const IV = new Int32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19])

/** Message schedule and working state, shared: a MAC runs to completion before the next starts. */
const W = new Int32Array(64)
const H = new Int32Array(8)
/** The message, padded, encoded here; grown for a longer one. */
let scratch = Buffer.allocUnsafeSlow(1024)

/** One SHA-256 compression of the 64 bytes of `b` at `off` into `h`. */
function compress(h: Int32Array, b: Uint8Array, off: number): void {
  for (let i = 0; i < 16; i++) {
    const j = off + (i << 2)
    W[i] = (b[j]! << 24) | (b[j + 1]! << 16) | (b[j + 2]! << 8) | b[j + 3]!
  }
  for (let i = 16; i < 64; i++) {
    const x = W[i - 15]!
    const y = W[i - 2]!
    const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)
    const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10)
    W[i] = (W[i - 16]! + s0 + W[i - 7]! + s1) | 0
  }
  let a = h[0]!, bb = h[1]!, c = h[2]!, d = h[3]!, e = h[4]!, f = h[5]!, g = h[6]!, hh = h[7]!
  for (let i = 0; i < 64; i++) {
    const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))
    const ch = (e & f) ^ (~e & g)
    const t1 = (hh + S1 + ch + K[i]! + W[i]!) | 0
    const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))
    const maj = (a & bb) ^ (a & c) ^ (bb & c)
    const t2 = (S0 + maj) | 0
    hh = g; g = f; f = e; e = (d + t1) | 0
    d = c; c = bb; bb = a; a = (t1 + t2) | 0
  }
  h[0] = (h[0]! + a) | 0; h[1] = (h[1]! + bb) | 0; h[2] = (h[2]! + c) | 0; h[3] = (h[3]! + d) | 0
  h[4] = (h[4]! + e) | 0; h[5] = (h[5]! + f) | 0; h[6] = (h[6]! + g) | 0; h[7] = (h[7]! + hh) | 0
}

/**
 * Pads the `len` message bytes at the start of `scratch` (which follow `prefix` bytes already
 * compressed into `h`) and compresses them into `h`.
 */
function finish(h: Int32Array, len: number, prefix: number): void {
  const total = len + 9
  const padded = (total + 63) & ~63
  scratch[len] = 0x80
  for (let i = len + 1; i < padded - 4; i++) scratch[i] = 0
  // bit length of prefix + message; messages here are far below 2^29 bytes, so 32 bits hold it
  putWord(scratch, padded - 4, (prefix + len) * 8)
  for (let off = 0; off < padded; off += 64) compress(h, scratch, off)
}

function putWord(b: Uint8Array, off: number, w: number): void {
  b[off] = w >>> 24; b[off + 1] = w >>> 16; b[off + 2] = w >>> 8; b[off + 3] = w
}

function ensureScratch(bytes: number): void {
  // finish() writes the bit length as 32 bits; nothing the proxy MACs comes near this
  if (bytes > 1 << 28) throw new RangeError(`HMAC-SHA256 message of up to ${bytes} bytes: at most 256 MiB`)
  if (bytes > scratch.length) scratch = Buffer.allocUnsafeSlow(Math.max(bytes, scratch.length * 2))
}

export class HmacSha256 {
  /** The key as given, to compare keys on a reload. */
  readonly key: Buffer
  private readonly inner = new Int32Array(8)
  private readonly outer = new Int32Array(8)

  constructor(key: Uint8Array) {
    this.key = Buffer.from(key)
    const k = key.length > 64 ? createHash('sha256').update(key).digest() : key
    const block = new Uint8Array(64)
    block.set(k)
    const pad = new Uint8Array(64)
    for (let i = 0; i < 64; i++) pad[i] = block[i]! ^ 0x36
    this.inner.set(IV)
    compress(this.inner, pad, 0)
    for (let i = 0; i < 64; i++) pad[i] = block[i]! ^ 0x5c
    this.outer.set(IV)
    compress(this.outer, pad, 0)
  }

  /** The first `bytes` (1–32) bytes of HMAC-SHA256(key, UTF-8 of `text`), in a new Buffer. */
  mac(text: string, bytes = 32): Buffer {
    ensureScratch(text.length * 3 + 72)
    const len = scratch.write(text, 0, 'utf8')
    return this.digest(len, bytes)
  }

  /** As `mac`, over `data` followed by the UTF-8 of `text`. */
  macBytes(data: Uint8Array, text: string, bytes = 32): Buffer {
    ensureScratch(data.length + text.length * 3 + 72)
    scratch.set(data, 0)
    const len = data.length + scratch.write(text, data.length, 'utf8')
    return this.digest(len, bytes)
  }

  private digest(len: number, bytes: number): Buffer {
    if (!(bytes >= 1 && bytes <= 32 && Number.isInteger(bytes))) throw new RangeError(`HMAC-SHA256 output length ${bytes}: 1 to 32 bytes`)
    H.set(this.inner)
    finish(H, len, 64)
    // the outer message: the inner digest, 32 bytes
    for (let i = 0; i < 8; i++) putWord(scratch, i << 2, H[i]!)
    H.set(this.outer)
    finish(H, 32, 64)
    const out = Buffer.allocUnsafe(bytes)
    for (let i = 0; i < bytes; i++) out[i] = (H[i >> 2]! >>> (24 - ((i & 3) << 3))) & 0xff
    return out
  }
}
