// Is this UA behind NAT? Decided per request from what it already carries (docs/nat.md
// "Detection"): the source address/port differs from the top Via's sent-by (RFC 3261 §18.2.1,
// RFC 3581), or the Contact host is in one of `nat.private_networks`. No lookup, no allocation
// beyond the BlockList check of an IP literal.
import { BlockList, isIP } from 'node:net'
import type { Via } from '@sipedge/sip'
import type { Destination } from '@sipedge/proxy'

/** The default of `nat.private_networks` (also what the schema documents). */
export const DEFAULT_PRIVATE_NETWORKS: readonly string[] = Object.freeze([
  '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', '169.254.0.0/16', 'fc00::/7', 'fe80::/10',
])

function unbracket(h: string): string {
  return h.length > 1 && h.charCodeAt(0) === 0x5b ? h.slice(1, -1) : h
}

/** Loopback is public for every NAT decision (tests, and a UA on this host is reachable). */
function isLoopback(ip: string, family: number): boolean {
  return family === 4 ? ip.startsWith('127.') : ip === '::1'
}

export class NatDetector {
  private readonly list: BlockList

  constructor(networks: readonly string[] = DEFAULT_PRIVATE_NETWORKS) {
    this.list = new BlockList()
    for (const n of networks) {
      const slash = n.indexOf('/')
      const addr = slash < 0 ? n : n.slice(0, slash)
      const family = isIP(addr)
      if (family === 0) continue // the schema validated them; an odd entry is skipped, never fatal
      const prefix = slash < 0 ? (family === 4 ? 32 : 128) : Number(n.slice(slash + 1))
      this.list.addSubnet(addr, prefix, family === 4 ? 'ipv4' : 'ipv6')
    }
  }

  /** An IP literal in one of the private networks (host names and loopback: false). */
  isPrivate(host: string): boolean {
    const h = unbracket(host)
    const family = isIP(h)
    if (family === 0 || isLoopback(h, family)) return false
    return this.list.check(h, family === 4 ? 'ipv4' : 'ipv6')
  }

  /**
   * The sent-by of the top Via is not where the request came from. For UDP the port counts too
   * (§18.2.2 answers to the sent-by port, which a NAT does not forward); a stream client's
   * source port is ephemeral by design (§18.1.1: its Via names the port it listens on), so only
   * the address is compared there.
   */
  viaDiffers(via: Via, source: Destination): boolean {
    const host = unbracket(via.host)
    if (host !== source.address && host.toLowerCase() !== source.address.toLowerCase()) return true
    return source.transport === 'udp' && (via.port ?? 5060) !== source.port
  }

  /** The whole rule: source differs from the Via sent-by, or the Contact host is private. */
  behindNat(via: Via, source: Destination, contactHost: string | undefined): boolean {
    return this.viaDiffers(via, source) || (contactHost !== undefined && this.isPrivate(contactHost))
  }
}
