// Helpers of the topology hiding module that read or write header values (no state).
import { parseNameAddr, parseUri, type NameAddr, type SipMessage } from '@sipedge/sip'
import { TargetHop, hopOf, type Destination, type LocalIdentity, type NextHop, type Source } from '@sipedge/proxy'
import type { EdgeClaim } from './token.js'

const RECEIVED_RPORT = /;\s*(?:received|rport)(?:\s*=\s*[^;,\s]*)?/gi

function unbracket(h: string): string {
  return h.length > 1 && h.charCodeAt(0) === 0x5b ? h.slice(1, -1) : h
}

/**
 * The Via values of the request as the previous hop sent it, for the response relayed back to it
 * (we forwarded the request with our Via only). The top one gets `received`/`rport` as the core
 * would have added them (RFC 3261 §18.2.1, RFC 3581 §4): the previous hop matches its
 * transaction by this Via.
 */
export function upstreamVias(req: SipMessage, source: Source): string[] {
  const vias = req.vias
  const out: string[] = []
  for (let i = 0; i < vias.length; i++) out.push(vias[i]!.raw)
  const top = vias[0]!
  const sameHost = unbracket(top.host).toLowerCase() === source.address.toLowerCase()
  if (top.rport !== undefined) out[0] = out[0]!.replace(RECEIVED_RPORT, '') + ';received=' + source.address + ';rport=' + source.port
  else if (!sameHost) out[0] = out[0]!.replace(RECEIVED_RPORT, '') + ';received=' + source.address
  return out
}

/** The parameters of a Record-Route URI of ours that a module added (`;sed=...`): not lr, transport, maddr or `skip`. */
export function addedParams(uri: string, skip = ''): string {
  let out = ''
  for (const [k, v] of parseUri(uri).params) {
    if (k === 'lr' || k === 'transport' || k === 'maddr' || k === skip) continue
    out += ';' + k + (v === null ? '' : '=' + v)
  }
  return out
}

/** The value of our `;th=` Route parameter (token.ts RouteSeal), or null. */
export function routeParam(uri: string): string | null {
  const i = uri.indexOf(';th=')
  if (i < 0) return null
  let e = i + 4
  while (e < uri.length) {
    const c = uri.charCodeAt(e)
    if (c === 0x3b || c === 0x3e || c === 0x3f || c === 0x2c || c === 0x20) break
    e++
  }
  return uri.slice(i + 4, e)
}

/** A Record-Route/Route URI naming one of our listeners (no user part). */
export function isOurRoute(local: LocalIdentity, uri: string): boolean {
  try {
    const u = parseUri(uri)
    const tp = u.params.get('transport')
    return u.user === undefined && local.isLocalHostPort(u.host, u.port, typeof tp === 'string' ? tp.toLowerCase() : 'udp', u.scheme)
  } catch {
    return false
  }
}

/** Header parameters of a Contact value (`;expires=..`, `;+sip.instance=..`), kept on the edge URI. */
export function contactParams(c: NameAddr): string {
  let out = ''
  for (const [k, v] of c.params) out += ';' + k + (v === null ? '' : '=' + v)
  return out
}

/**
 * The flow to remember for a side whose Contact is `contact` and which we talk to at `peer`
 * (the source of its request, or where we sent ours): a WebSocket peer is reachable only over its
 * connection; with `nat.fix_contact`, a Contact whose host differs from the peer's address, or
 * (UDP, `symmetric`: it sends and receives on one port, RFC 3581) whose port differs, is behind
 * NAT. null: its Contact is reachable as it is. No connection id is kept: ids do not survive a
 * restart, and the transport reuses a live connection to the same address and port anyway.
 */
export function flowToward(contact: string, peer: Destination, symmetric: boolean, fixContact: boolean): Destination | null {
  const flow: Destination = { transport: peer.transport, address: peer.address, port: peer.port }
  if (peer.socketId !== undefined) flow.socketId = peer.socketId
  if (peer.transport === 'ws' || peer.transport === 'wss') return flow
  if (!fixContact) return null
  let host: string
  let port: number | undefined
  try {
    const u = parseUri(contact)
    host = unbracket(u.host).toLowerCase()
    port = u.port
  } catch {
    return flow
  }
  if (host !== peer.address.toLowerCase()) return flow
  if (peer.transport === 'udp' && symmetric && (port ?? 5060) !== peer.port) return flow
  return null
}

/** Where a request restored from `c` goes: the first of `routes` (strict router: §16.6 step 6), else the flow or the Contact. */
export function claimTarget(routes: readonly string[], c: EdgeClaim): NextHop {
  if (routes.length > 0) {
    const uri = parseNameAddr(routes[0]!, 'Route').uri
    const u = parseUri(uri)
    return new TargetHop(uri, hopOf(u), undefined, undefined, undefined, !u.params.has('lr'))
  }
  return new TargetHop(c.contact, hopOf(parseUri(c.contact)), undefined, c.flow ?? undefined)
}
