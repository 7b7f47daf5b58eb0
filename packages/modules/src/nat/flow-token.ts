// The signed flow parameter of our Record-Route (docs/nat.md "Dialogs"), in the spirit of the
// RFC 5626 §5.3 flow token: when a dialog-creating request is forwarded, each side that can only
// be reached over the flow it used — a caller or callee behind NAT, or any peer on a stream
// connection (issue 16: a BYE towards a TCP caller must not open a new connection) — is written
// into `;sef=<flows>.<mac>`:
//   flows = base64url(A + "|" + B), A the caller's flow, B the callee's, each "" or
//           "transport,address,port,socketId,connId"
//   mac   = base64url(first 12 bytes of HMAC-SHA256(dialog key, "sef" \n flows \n Call-ID \n caller's From-tag))
// The UA never sees its own Contact changed; the parameter comes back in the Route header of every
// in-dialog request. Verifying the MAC with the request's From-tag or To-tag also says which side
// sent it, so the request goes to the other side's flow. Keyed like the dialog parameter `sed`
// (dialog.secret, else the host's derived key), so an HA pair sharing dialog.secret shares it.
import { timingSafeEqual } from 'node:crypto'
import { HmacSha256, keyOf, type Destination, type TransportName } from '@sipedge/proxy'

export const FLOW_PARAM = 'sef'
const MAC_BYTES = 12
const MAX_TOKEN = 400
const TRANSPORTS: ReadonlySet<string> = new Set(['udp', 'tcp', 'tls', 'ws', 'wss'])

/** A verified parameter: the caller's and callee's flows (null: that side follows its Contact). */
export interface FlowClaim {
  readonly caller: Destination | null
  readonly callee: Destination | null
  /** The caller's From-tag the MAC was computed over. */
  readonly callerTag: string
}

function sideText(d: Destination | null): string {
  if (d === null) return ''
  return d.transport + ',' + d.address + ',' + d.port + ',' + (d.socketId ?? 0) + ',' + (d.connId ?? 0)
}

function sideOf(s: string): Destination | null | undefined {
  if (s === '') return null
  const p = s.split(',')
  if (p.length !== 5 || !TRANSPORTS.has(p[0]!)) return undefined
  const port = Number(p[2])
  const socketId = Number(p[3])
  const connId = Number(p[4])
  // A WebSocket peer's port is unknown (uWebSockets.js gives the address only): 0, and such a
  // flow is only ever reached over its connection.
  const ws = p[0] === 'ws' || p[0] === 'wss'
  if (!(Number.isInteger(port) && port >= (ws && connId > 0 ? 0 : 1) && port < 65536) || !Number.isInteger(socketId) || socketId < 0 || !Number.isInteger(connId) || connId < 0 || p[1] === '') return undefined
  const d: Destination = { transport: p[0] as TransportName, address: p[1]!, port, socketId }
  if (connId !== 0) d.connId = connId
  return d
}

export class FlowTokens {
  private keys: HmacSha256[]

  constructor(secret: string | null) {
    this.keys = [new HmacSha256(keyOf(secret))]
  }

  /** A new secret (reload): parameters signed with the previous one stay valid until the next change. */
  rekey(secret: string | null): void {
    const k = keyOf(secret)
    if (!k.equals(this.keys[0]!.key)) this.keys = [new HmacSha256(k), this.keys[0]!]
  }

  sign(caller: Destination | null, callee: Destination | null, callId: string, callerTag: string): string {
    const flows = Buffer.from(sideText(caller) + '|' + sideText(callee), 'utf8').toString('base64url')
    return flows + '.' + mac(this.keys[0]!, flows, callId, callerTag).toString('base64url')
  }

  /** The claim when the MAC holds for (callId, tagA) or (callId, tagB); null: malformed or forged. */
  verify(token: string, callId: string, tagA: string | undefined, tagB: string | undefined): FlowClaim | null {
    if (token.length > MAX_TOKEN) return null
    const dot = token.lastIndexOf('.')
    if (dot <= 0) return null
    const given = Buffer.from(token.slice(dot + 1), 'base64url')
    if (given.length !== MAC_BYTES) return null
    const flows = token.slice(0, dot)
    let tag: string | undefined
    for (const key of this.keys) {
      if (tagA !== undefined && timingSafeEqual(mac(key, flows, callId, tagA), given)) { tag = tagA; break }
      if (tagB !== undefined && timingSafeEqual(mac(key, flows, callId, tagB), given)) { tag = tagB; break }
    }
    if (tag === undefined) return null
    const text = Buffer.from(flows, 'base64url').toString('utf8')
    const bar = text.indexOf('|')
    if (bar < 0) return null
    const caller = sideOf(text.slice(0, bar))
    const callee = sideOf(text.slice(bar + 1))
    if (caller === undefined || callee === undefined) return null
    return { caller, callee, callerTag: tag }
  }
}

function mac(key: HmacSha256, flows: string, callId: string, tag: string): Buffer {
  return key.mac('sef\n' + flows + '\n' + callId + '\n' + tag, MAC_BYTES)
}

/** The `sef` parameter of a Route/Record-Route URI text, or null. */
export function flowParamOf(uri: string): string | null {
  const i = uri.indexOf(';' + FLOW_PARAM + '=')
  if (i < 0) return null
  const start = i + FLOW_PARAM.length + 2
  let end = start
  while (end < uri.length) {
    const c = uri.charCodeAt(end)
    if (c === 0x3b /* ; */ || c === 0x3e /* > */ || c === 0x3f /* ? */ || c === 0x20 || c === 0x2c) break
    end++
  }
  return uri.slice(start, end)
}
