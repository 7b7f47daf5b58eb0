// The key material of this node: `dialog.secret` when configured (shared by an HA pair), else a
// key derived from /etc/machine-id and the host name, so every worker and every restart of this
// host computes the same one. Used for the signed Record-Route parameter (dialog module) and the
// signed Via branch (stray responses, forwarding.ts).
import { createHash, timingSafeEqual } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { HmacSha256 } from './hmac.js'

/**
 * A key for installations that set no `dialog.secret`. Another host derives another key: an HA
 * pair needs a shared `dialog.secret`. Not secret from local users who can read /etc/machine-id.
 */
export function deriveSecret(): Buffer {
  let id = ''
  for (const f of ['/etc/machine-id', '/var/lib/dbus/machine-id']) {
    try { id = readFileSync(f, 'utf8').trim(); if (id !== '') break } catch { /* next */ }
  }
  return createHash('sha256').update('sipedge dialog record-route v1\n' + id + '\n' + hostname()).digest()
}

export function keyOf(secret: string | null): Buffer {
  return secret === null ? deriveSecret() : Buffer.from(secret, 'utf8')
}

const BRANCH_MAC_BYTES = 6

/**
 * The MAC in our Via branch (issue "stray responses are relayed"): binds the branch to where a
 * response to it may be relayed (the previous hop's address and port, as §18.2.2 / RFC 3581 pick
 * them), so a forged response cannot make us send to a host of its choosing. 48 bits: an online
 * forgery needs ~2^47 datagrams per target.
 */
export class BranchSigner {
  private keys: HmacSha256[]
  constructor(secret: string | null) {
    this.keys = [new HmacSha256(keyOf(secret))]
  }

  rekey(secret: string | null): void {
    const k = keyOf(secret)
    if (!k.equals(this.keys[0]!.key)) this.keys = [new HmacSha256(k), this.keys[0]!]
  }

  sign(id: string, address: string, port: number): string {
    return mac(this.keys[0]!, id, address, port).toString('base64url')
  }

  verify(id: string, address: string, port: number, given: string): boolean {
    const g = Buffer.from(given, 'base64url')
    if (g.length !== BRANCH_MAC_BYTES) return false
    for (const k of this.keys) if (timingSafeEqual(mac(k, id, address, port), g)) return true
    return false
  }
}

function mac(key: HmacSha256, id: string, address: string, port: number): Buffer {
  return key.mac(id + '|' + address.toLowerCase() + '|' + port, BRANCH_MAC_BYTES)
}
