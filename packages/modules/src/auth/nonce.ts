// Stateless nonces (RFC 7616 §3.3 suggests "time-stamp H(time-stamp ":" ETag ":" secret)"):
// 6 bytes issue time (ms) + 8 random bytes + 16 bytes of HMAC-SHA-256 over both and the realm,
// base64url. Any worker (or node) holding the same secret verifies a nonce without shared state;
// replay protection (nonce-count) is per worker in a small LRU, which is enough because the
// primary shards by Call-ID and a client's REGISTER refreshes keep their Call-ID (RFC 3261 §10.2.4).
import { randomBytes, timingSafeEqual } from 'node:crypto'
import { HmacSha256 } from '@sipedge/proxy'

const TS_LEN = 6
const RAND_LEN = 8
const MAC_LEN = 16
const RAW_LEN = TS_LEN + RAND_LEN + MAC_LEN
/** base64url length of RAW_LEN bytes (30 bytes -> 40 chars, no padding). */
const NONCE_CHARS = 40

export type NonceCheck = 'ok' | 'stale' | 'invalid'

export class NonceCodec {
  private readonly key: HmacSha256
  private readonly ttlMs: number
  private readonly now: () => number

  constructor(key: Buffer, ttlMs: number, now: () => number) {
    this.key = new HmacSha256(key)
    this.ttlMs = ttlMs
    this.now = now
  }

  issue(realm: string): string {
    const raw = Buffer.allocUnsafe(RAW_LEN)
    raw.writeUIntBE(Math.floor(this.now()), 0, TS_LEN)
    randomBytes(RAND_LEN).copy(raw, TS_LEN)
    this.mac(raw, realm).copy(raw, TS_LEN + RAND_LEN, 0, MAC_LEN)
    return raw.toString('base64url')
  }

  /** 'invalid' (not ours / tampered / other realm), 'stale' (ours but older than the ttl) or 'ok'. */
  check(nonce: string, realm: string): NonceCheck {
    if (nonce.length !== NONCE_CHARS) return 'invalid'
    const raw = Buffer.from(nonce, 'base64url')
    if (raw.length !== RAW_LEN) return 'invalid'
    const want = this.mac(raw, realm).subarray(0, MAC_LEN)
    if (!timingSafeEqual(want, raw.subarray(TS_LEN + RAND_LEN))) return 'invalid'
    const issued = raw.readUIntBE(0, TS_LEN)
    const age = this.now() - issued
    // A nonce from the future (clock step back beyond a second) is not trusted either.
    if (age < -1000) return 'invalid'
    return age > this.ttlMs ? 'stale' : 'ok'
  }

  private mac(raw: Buffer, realm: string): Buffer {
    return this.key.macBytes(raw.subarray(0, TS_LEN + RAND_LEN), realm, MAC_LEN)
  }
}

/**
 * Highest nonce-count seen per nonce (RFC 7616 §3.4: "the server ... can detect replays by
 * checking nc"). A bounded LRU (Map insertion order). An evicted nonce's counter restarts, so a
 * captured request could be replayed once after eviction within the nonce's ttl: keep the LRU
 * larger than the nonces one worker hands out within a ttl.
 */
export class NonceCounts {
  private readonly map = new Map<string, number>()
  private readonly max: number

  constructor(max = 10_000) {
    this.max = max
  }

  /** Records nc for nonce; false when nc is not higher than the last one seen (replay). */
  advance(nonce: string, nc: number): boolean {
    const last = this.map.get(nonce)
    if (last !== undefined) {
      if (nc <= last) return false
      this.map.delete(nonce)
    } else if (this.map.size >= this.max) {
      const oldest = this.map.keys().next().value as string
      this.map.delete(oldest)
    }
    this.map.set(nonce, nc)
    return true
  }

  get size(): number {
    return this.map.size
  }
}
