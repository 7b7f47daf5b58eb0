// The request edits a forwarding proxy makes on the way through, written once for the stateful
// path (forwarding.ts) and the stateless ACK path (stateless.ts).
import type { MessageEditor, NameAddr, Via } from '@sipedge/sip'
import type { Source } from './types.js'

/**
 * RFC 3261 §18.2.1 / RFC 3581 §4: `received` when the sent-by host is not the source address, and
 * `rport` filled in when the client asked for it — or, with `forceRport` (`nat.force_rport`), for
 * every UDP client (stream responses follow the connection, so their Via keeps the sent-by port).
 */
export function markReceived(ed: MessageEditor, via: Via, source: Source, forceRport = false): void {
  if (via.rport !== undefined || (forceRport && source.transport === 'udp')) ed.setTopViaParams({ received: source.address, rport: source.port })
  else if (via.host !== source.address) ed.setTopViaParams({ received: source.address })
}

/**
 * §16.4 and §16.6 steps 6-7 on the Route header: drop our `skip` values at the top (and the last
 * one when `dropLast`: strict-router repair). When the next hop is a strict router (`strictNext`,
 * the Route value at index `skip`), its URI becomes the Request-URI and `ruri` goes to the end of
 * the Route set. Returns the Request-URI to write, or null when it stays.
 */
export function editRouteSet(ed: MessageEditor, routes: readonly NameAddr[], skip: number, dropLast: boolean, strictNext: string | null, ruri: string): string | null {
  const end = routes.length - (dropLast ? 1 : 0)
  if (strictNext !== null) {
    const keep: string[] = []
    for (let i = skip + 1; i < end; i++) keep.push(routes[i]!.raw)
    keep.push('<' + ruri + '>')
    ed.replaceHeader('Route', keep.join(', '))
    return strictNext
  }
  if (skip === 0 && !dropLast) return null
  if (skip === 1 && !dropLast) ed.removeFirstRoute()
  else if (end <= skip) ed.removeHeader('Route')
  else {
    const keep: string[] = []
    for (let i = skip; i < end; i++) keep.push(routes[i]!.raw)
    ed.replaceHeader('Route', keep.join(', '))
  }
  return null
}
