// The signed Record-Route parameter that keeps a dialog sticky without the dialog table
// (docs/dispatcher.md "Dialog stickiness") and proves that this edge created the dialog. Our
// Record-Route on every dialog-creating request carries `;sed=<dest>.<mac>` (dest "- sip:-" when
// the request was not dispatched):
//   dest = base64url(set + " " + destination URI)
//   mac  = base64url(first 12 bytes of HMAC-SHA256(secret, set \n uri \n Call-ID \n caller's From-tag))
// In-dialog requests bring it back in their Route header. When the table has no entry (restart,
// another node, table lost) the proxy verifies the MAC and routes to the destination. The MAC
// binds the destination to the dialog, so an endpoint can neither point the proxy at another
// host nor move a dialog to another destination. 96 bits of MAC are ample for an online forgery.
import { timingSafeEqual } from 'node:crypto'
import { HmacSha256, keyOf } from '@sipedge/proxy'

export { deriveSecret } from '@sipedge/proxy'

export const TOKEN_PARAM = 'sed'
const MAC_BYTES = 12
const MAX_TOKEN = 600

export interface TokenClaim {
  set: string
  uri: string
  /** The caller's From-tag the MAC was computed over. */
  ftag: string
}

export class DialogTokens {
  private keys: HmacSha256[]

  constructor(secret: string | null) {
    this.keys = [new HmacSha256(keyOf(secret))]
  }

  /** A new secret (reload); tokens signed with the previous one stay valid until the next change. */
  rekey(secret: string | null): void {
    const k = keyOf(secret)
    if (!k.equals(this.keys[0]!.key)) this.keys = [new HmacSha256(k), this.keys[0]!]
  }

  sign(set: string, uri: string, callId: string, ftag: string): string {
    return Buffer.from(set + ' ' + uri, 'utf8').toString('base64url') + '.' + mac(this.keys[0]!, set, uri, callId, ftag).toString('base64url')
  }

  /**
   * The claim of `token` when its MAC is good for (callId, tagA) or (callId, tagB) — an
   * in-dialog request carries the caller's tag as From-tag or as To-tag depending on direction.
   * null: malformed or forged.
   */
  verify(token: string, callId: string, tagA: string | undefined, tagB: string | undefined): TokenClaim | null {
    if (token.length > MAX_TOKEN) return null
    const dot = token.lastIndexOf('.')
    if (dot <= 0) return null
    const given = Buffer.from(token.slice(dot + 1), 'base64url')
    if (given.length !== MAC_BYTES) return null
    const text = Buffer.from(token.slice(0, dot), 'base64url').toString('utf8')
    const sp = text.indexOf(' ')
    if (sp <= 0) return null
    const set = text.slice(0, sp)
    const uri = text.slice(sp + 1)
    if (!uri.startsWith('sip:') && !uri.startsWith('sips:')) return null
    for (const key of this.keys) {
      for (const tag of [tagA, tagB]) {
        if (tag === undefined) continue
        if (timingSafeEqual(mac(key, set, uri, callId, tag), given)) return { set, uri, ftag: tag }
      }
    }
    return null
  }
}

function mac(key: HmacSha256, set: string, uri: string, callId: string, ftag: string): Buffer {
  return key.mac(set + '\n' + uri + '\n' + callId + '\n' + ftag, MAC_BYTES)
}

/** The `sed` parameter of a Route/Record-Route URI text, or null. */
export function tokenOf(uri: string): string | null {
  const i = uri.indexOf(';' + TOKEN_PARAM + '=')
  if (i < 0) return null
  const start = i + TOKEN_PARAM.length + 2
  let end = start
  while (end < uri.length) {
    const c = uri.charCodeAt(end)
    if (c === 0x3b /* ; */ || c === 0x3e /* > */ || c === 0x3f /* ? */ || c === 0x20 || c === 0x2c) break
    end++
  }
  return uri.slice(start, end)
}
