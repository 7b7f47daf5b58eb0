// The cryptography of topology hiding (docs/topology-hiding.md): deterministic authenticated
// encryption of the edge URI state and of masked Call-IDs, with keys derived from `dialog.secret`
// (or the derived host key, secret.ts), so every worker, every restart and the other node of an
// HA pair (same secret) open what any of them sealed — and nothing sealed with another key opens.
//
// The construction is SIV (RFC 5297) with HMAC-SHA256 as the PRF and AES-256-CTR as the cipher:
//   iv = HMAC-SHA256(macKey, len(header) || header || plaintext)[0..12]
//   ct = AES-256-CTR(encKey, iv || 0^32, plaintext)
//   sealed = iv || ct
// Opening decrypts with the iv and recomputes it: the iv is the 96-bit authentication tag, over
// the header (authenticated, not encrypted) and the plaintext. Why not AES-GCM with a random IV:
// the same state must give the same edge URI in every retransmission and every message of a
// dialog (a UA compares Contacts), a random IV would need storing or sending twice, and GCM adds a
// 16-byte tag on top of the 12-byte IV; SIV needs 12 bytes in all and is misuse-resistant (a
// repeated plaintext only shows that it repeated).
import { createCipheriv, createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto'
import { callIdHashOf } from '@sipedge/sip'
import { keyOf } from '@sipedge/proxy'

export const IV_BYTES = 12
const ZERO_COUNTER = Buffer.alloc(4)

/** One generation of keys, derived from one secret (domain-separated per use). */
export class SealKey {
  readonly id: Buffer
  readonly enc: KeyObject
  readonly mac: KeyObject
  readonly cidEnc: KeyObject
  readonly cidMac: KeyObject
  constructor(secret: Buffer) {
    const d = (label: string): Buffer => createHmac('sha256', secret).update('sipedge topology hiding v1 ' + label).digest()
    this.id = d('id')
    this.enc = createSecretKey(d('edge enc'))
    this.mac = createSecretKey(d('edge mac'))
    this.cidEnc = createSecretKey(d('call-id enc'))
    this.cidMac = createSecretKey(d('call-id mac'))
  }
}

function ctr(key: KeyObject, iv: Buffer, data: Buffer): Buffer {
  const c = createCipheriv('aes-256-ctr', key, Buffer.concat([iv, ZERO_COUNTER]))
  return Buffer.concat([c.update(data), c.final()])
}

function siv(mac: KeyObject, header: Buffer, pt: Buffer): Buffer {
  const len = Buffer.allocUnsafe(2)
  len.writeUInt16BE(header.length & 0xffff)
  return createHmac('sha256', mac).update(len).update(header).update(pt).digest().subarray(0, IV_BYTES)
}

export function seal(enc: KeyObject, mac: KeyObject, header: Buffer, pt: Buffer): Buffer {
  const iv = siv(mac, header, pt)
  return Buffer.concat([iv, ctr(enc, iv, pt)])
}

/** The plaintext, or null when `sealed` was not made by these keys for this header. */
export function open(enc: KeyObject, mac: KeyObject, header: Buffer, sealed: Buffer): Buffer | null {
  if (sealed.length < IV_BYTES) return null
  const iv = sealed.subarray(0, IV_BYTES)
  const pt = ctr(enc, iv, sealed.subarray(IV_BYTES))
  return timingSafeEqual(siv(mac, header, pt), iv) ? pt : null
}

/**
 * The configured key and the one before the last reload: what was sealed before a change of
 * `dialog.secret` still opens until the next change (as the dialog module's tokens do).
 */
export class SealKeys {
  keys: SealKey[]
  constructor(secret: string | null) {
    this.keys = [new SealKey(keyOf(secret))]
  }

  get current(): SealKey {
    return this.keys[0]!
  }

  rekey(secret: string | null): void {
    const k = new SealKey(keyOf(secret))
    if (!k.id.equals(this.keys[0]!.id)) this.keys = [k, this.keys[0]!]
  }
}

// ------------------------------------------------------------------------------ Call-ID masking

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
const FNV_PRIME = 0x01000193
const FNV_OFFSET = 0x811c9dc5
/** Characters appended so that the masked Call-ID lands on the same worker (see shardSuffix). */
export const SHARD_CHARS = 3
const MASK_CACHE = 4096
/**
 * The primary shards messages by FNV-1a(Call-ID) % workers. A masked Call-ID must land on the
 * worker of the original (a request from one side and the answer of the other meet in one
 * transaction), also on the other node of an HA pair and after a restart with another worker
 * count: the hash is matched modulo 840 = lcm(1..8), so every worker count dividing it (1-8, 10,
 * 12, 14, 15, 20, 21, 24, 28, 30, 35, 40, 42, ...) agrees, and this node's own count is added.
 */
export const SHARD_BASE = 840

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b]
  return a
}

export function shardModulus(workers: number): number {
  const n = Math.max(1, workers)
  return SHARD_BASE / gcd(SHARD_BASE, n) * n
}

function fnvStep(h: number, c: number): number {
  return Math.imul(h ^ c, FNV_PRIME)
}

/**
 * Three characters that make FNV-1a(body + chars) equal `target` modulo `mod` (expected `mod`
 * tries of one multiplication each), or modulo `fallback` when no triple does for `mod`.
 */
export function shardSuffix(body: string, target: number, mod: number, fallback: number): string {
  let h0 = FNV_OFFSET
  for (let i = 0; i < body.length; i++) h0 = fnvStep(h0, body.charCodeAt(i) & 0xff)
  for (const m of [mod, fallback]) {
    const want = target % m
    for (let a = 0; a < 64; a++) {
      const h1 = fnvStep(h0, B64URL.charCodeAt(a))
      for (let b = 0; b < 64; b++) {
        const h2 = fnvStep(h1, B64URL.charCodeAt(b))
        for (let c = 0; c < 64; c++) {
          if ((fnvStep(h2, B64URL.charCodeAt(c)) >>> 0) % m === want) return B64URL[a]! + B64URL[b]! + B64URL[c]!
        }
      }
    }
  }
  return 'AAA'
}

/**
 * Masked Call-IDs: base64url(SIV(Call-ID)) + the shard characters. Deterministic (every message
 * of a dialog carries the same masked Call-ID, computed again from the original each time), and
 * reversible only with the keys. Results are cached (a bounded map, cleared when full).
 */
export class CallIdMask {
  private readonly masked = new Map<string, string>()
  private readonly unmasked = new Map<string, { callId: string; key: SealKey }>()
  mod: number
  fallback: number

  constructor(workers: number) {
    this.mod = shardModulus(workers)
    this.fallback = Math.max(1, workers)
  }

  mask(key: SealKey, callId: string): string {
    const ck = key.id.toString('latin1', 0, 8) + callId
    const hit = this.masked.get(ck)
    if (hit !== undefined) return hit
    const body = seal(key.cidEnc, key.cidMac, EMPTY, Buffer.from(callId, 'latin1')).toString('base64url')
    const out = body + shardSuffix(body, callIdHashOf(callId), this.mod, this.fallback)
    if (this.masked.size >= MASK_CACHE) this.masked.clear()
    this.masked.set(ck, out)
    return out
  }

  /** Forget every cached result (a key was replaced: nothing opens with a key no longer configured). */
  clear(workers: number): void {
    this.masked.clear()
    this.unmasked.clear()
    this.mod = shardModulus(workers)
    this.fallback = Math.max(1, workers)
  }

  /** The original Call-ID and the key it was masked with, or null (not one of ours). */
  unmask(keys: readonly SealKey[], masked: string): { callId: string; key: SealKey } | null {
    const hit = this.unmasked.get(masked)
    if (hit !== undefined) return hit
    if (masked.length < SHARD_CHARS + 18 || masked.length > 1024) return null
    const body = masked.slice(0, -SHARD_CHARS)
    const sealed = Buffer.from(body, 'base64url')
    if (sealed.toString('base64url') !== body) return null
    for (const key of keys) {
      const pt = open(key.cidEnc, key.cidMac, EMPTY, sealed)
      if (pt === null) continue
      const r = { callId: pt.toString('latin1'), key }
      if (this.unmasked.size >= MASK_CACHE) this.unmasked.clear()
      this.unmasked.set(masked, r)
      return r
    }
    return null
  }
}

const EMPTY = Buffer.alloc(0)
