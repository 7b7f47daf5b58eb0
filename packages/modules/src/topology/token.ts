// Edge URIs (docs/topology-hiding.md): the Contact we show one side of a dialog instead of the far
// side's. Its user part carries, sealed (crypto.ts), what routing a request to the far side needs:
//   sip:th.<base64url(flags || iv || ciphertext)>@<our listener host:port>[;transport=x]
// flags (authenticated, in clear: needed before opening): version, whether the dialog masks its
// Call-ID, whether the side the URI leads to is the masked side. The authenticated header is
// flags || the dialog's original Call-ID, so a URI opens only inside its own dialog.
// Plaintext: the far side's Contact URI, the Route set towards it (Record-Route entries of the
// proxies on its side), the flow we reached it on (when its Contact is not reachable: NAT,
// WebSocket), and the Route set towards this side (for the URI we mint on a target refresh).
//
// Route sets are fixed for the life of a dialog while Contacts change (target refresh), and the
// callee side's proxies are known only from the first response: so they also travel in our own
// Record-Route entry towards each side (`;th=`, sealed the same way: RouteSeal), which every
// request from that side brings back whatever its target became. With our Record-Route in place
// the entry is authoritative; the edge URI's copies serve dialogs without it.
import { isIPv4 } from 'node:net'
import type { Destination, Listener, TransportName } from '@sipedge/proxy'
import { open, seal, type SealKey } from './crypto.js'

/** User-part prefix of our edge URIs (what tells them from any other URI naming us). */
export const EDGE_PREFIX = 'th.'
const VERSION = 0x10
const F_MASK = 0x01
const F_TARGET_MASKED = 0x02
const MAX_TOKEN = 4096

const TRANSPORTS: readonly TransportName[] = ['udp', 'tcp', 'tls', 'ws', 'wss']

/** What an edge URI leads to: one side of a dialog, as seen from the other. Stable shape. */
export class EdgeClaim {
  /** The Contact URI of the side it leads to (the Request-URI of requests towards it). */
  readonly contact: string
  /** Route values towards that side (its proxies' Record-Route entries), in Route order. */
  readonly routes: readonly string[]
  /** Where that side is reachable when its Contact is not (NAT, WebSocket); null: the Contact. */
  readonly flow: Destination | null
  /** Route values towards the side holding the URI (for the URI minted on its target refresh). */
  readonly peerRoutes: readonly string[]
  /** The dialog masks its Call-ID, and the side it leads to is the masked one. */
  readonly mask: boolean
  readonly targetMasked: boolean
  constructor(contact: string, routes: readonly string[], flow: Destination | null, peerRoutes: readonly string[], mask: boolean, targetMasked: boolean) {
    this.contact = contact
    this.routes = routes
    this.flow = flow
    this.peerRoutes = peerRoutes
    this.mask = mask
    this.targetMasked = targetMasked
  }
}

// ------------------------------------------------------------------------------ encoding

class Writer {
  private parts: Buffer[] = []
  private small: number[] = []
  private flush(): void {
    if (this.small.length > 0) { this.parts.push(Buffer.from(this.small)); this.small = [] }
  }
  byte(b: number): void { this.small.push(b & 0xff) }
  bytes(b: Buffer): void { this.flush(); this.parts.push(b) }
  len(n: number): void {
    if (n < 0x80) this.byte(n)
    else { this.byte(0x80 | (n >> 8)); this.byte(n) }
  }
  str(s: string): void {
    const b = Buffer.from(s, 'utf8')
    if (b.length > 0x7fff) throw new RangeError('string too long for an edge URI')
    this.len(b.length)
    this.bytes(b)
  }
  done(): Buffer { this.flush(); return Buffer.concat(this.parts) }
}

class Reader {
  pos = 0
  constructor(readonly b: Buffer) {}
  byte(): number {
    if (this.pos >= this.b.length) throw new RangeError('short')
    return this.b[this.pos++]!
  }
  len(): number {
    const a = this.byte()
    return a < 0x80 ? a : ((a & 0x7f) << 8) | this.byte()
  }
  take(n: number): Buffer {
    if (this.pos + n > this.b.length) throw new RangeError('short')
    const r = this.b.subarray(this.pos, this.pos + n)
    this.pos += n
    return r
  }
  str(): string { return this.take(this.len()).toString('utf8') }
}

function writeRoutes(w: Writer, routes: readonly string[]): void {
  w.byte(routes.length)
  for (const r of routes) w.str(r)
}

function readRoutes(r: Reader): string[] {
  const n = r.byte()
  const out: string[] = []
  for (let i = 0; i < n; i++) out.push(r.str())
  return out
}

function writeFlow(w: Writer, f: Destination | null): void {
  if (f === null) { w.byte(0); return }
  const t = TRANSPORTS.indexOf(f.transport) + 1
  const v4 = isIPv4(f.address)
  w.byte(t | (v4 ? 0x08 : 0x10))
  w.byte(f.socketId === undefined || f.socketId < 0 || f.socketId > 254 ? 0xff : f.socketId)
  if (v4) w.bytes(Buffer.from(f.address.split('.').map(Number)))
  else w.str(f.address)
  w.byte(f.port >> 8)
  w.byte(f.port)
}

function readFlow(r: Reader): Destination | null {
  const k = r.byte()
  if (k === 0) return null
  const transport = TRANSPORTS[(k & 0x07) - 1]
  if (transport === undefined) throw new RangeError('transport')
  const sid = r.byte()
  const address = (k & 0x08) !== 0 ? Array.from(r.take(4)).join('.') : r.str()
  const port = (r.byte() << 8) | r.byte()
  const f: Destination = { transport, address, port }
  if (sid !== 0xff) f.socketId = sid
  return f
}

function header(flags: number, callId: string): Buffer {
  return Buffer.concat([Buffer.from([flags]), Buffer.from(callId, 'latin1')])
}

/** The token (user part without the prefix) for `c`, bound to the dialog's original Call-ID. */
export function sealClaim(key: SealKey, callId: string, c: EdgeClaim): string {
  const w = new Writer()
  w.str(c.contact)
  writeRoutes(w, c.routes)
  writeFlow(w, c.flow)
  writeRoutes(w, c.peerRoutes)
  const flags = VERSION | (c.mask ? F_MASK : 0) | (c.targetMasked ? F_TARGET_MASKED : 0)
  return Buffer.concat([Buffer.from([flags]), seal(key.enc, key.mac, header(flags, callId), w.done())]).toString('base64url')
}

/** The clear part of a token: whether the dialog masks its Call-ID and towards which side. */
export interface TokenHead {
  readonly flags: number
  readonly mask: boolean
  readonly targetMasked: boolean
  readonly sealed: Buffer
}

export function parseToken(token: string): TokenHead | null {
  if (token.length < 20 || token.length > MAX_TOKEN) return null
  const b = Buffer.from(token, 'base64url')
  if (b.length < 14 || b.toString('base64url') !== token) return null
  const flags = b[0]!
  if ((flags & 0xf0) !== VERSION) return null
  return { flags, mask: (flags & F_MASK) !== 0, targetMasked: (flags & F_TARGET_MASKED) !== 0, sealed: b.subarray(1) }
}

/** The claim and the key that opened it, or null: forged, altered, another dialog, or a key we do not have. */
export function openClaim(keys: readonly SealKey[], t: TokenHead, callId: string): { claim: EdgeClaim; key: SealKey } | null {
  const h = header(t.flags, callId)
  for (const key of keys) {
    const pt = open(key.enc, key.mac, h, t.sealed)
    if (pt === null) continue
    try {
      const r = new Reader(pt)
      const contact = r.str()
      const routes = readRoutes(r)
      const flow = readFlow(r)
      const peer = readRoutes(r)
      return { claim: new EdgeClaim(contact, routes, flow, peer, t.mask, t.targetMasked), key }
    } catch {
      return null
    }
  }
  return null
}

// ------------------------------------------------------------------------------ Record-Route

/** Name of the Record-Route parameter of ours that carries a RouteSeal. */
export const ROUTE_PARAM = 'th'
const ROUTE_KIND = 0x21

/**
 * What our Record-Route entry towards one side carries (sealed): the Route set towards the
 * other side, and the parameters modules put on our entry that side's requests must show the
 * on-dialog-request hooks (the signed dialog parameter names the other side's destination, so
 * the entry we show the caller's side carries it only sealed).
 */
export interface RouteSeal {
  readonly routes: readonly string[]
  readonly params: string
}

export function sealRoutes(key: SealKey, callId: string, r: RouteSeal): string {
  const w = new Writer()
  writeRoutes(w, r.routes)
  w.str(r.params)
  return seal(key.enc, key.mac, header(ROUTE_KIND, callId), w.done()).toString('base64url')
}

export function openRoutes(keys: readonly SealKey[], value: string, callId: string): RouteSeal | null {
  if (value.length < 16 || value.length > MAX_TOKEN) return null
  const b = Buffer.from(value, 'base64url')
  if (b.toString('base64url') !== value) return null
  const h = header(ROUTE_KIND, callId)
  for (const key of keys) {
    const pt = open(key.enc, key.mac, h, b)
    if (pt === null) continue
    try {
      const r = new Reader(pt)
      const routes = readRoutes(r)
      return { routes, params: r.str() }
    } catch {
      return null
    }
  }
  return null
}

/** `sip:th.<token>@host:port[;transport=x]` on listener `l` (the one facing whoever gets it). */
export function edgeUri(l: Listener, token: string): string {
  return 'sip:' + EDGE_PREFIX + token + '@' + l.host + ':' + l.port + (l.transport === 'udp' ? '' : ';transport=' + l.transport)
}
