// Who "we" are: the listeners from config.listen (socketId i = config.listen[i], see
// docs/proxy.md "Listeners and socket ids"), their advertised host:port for Via and
// Record-Route, and the local domains. Built once per configuration.
import { networkInterfaces } from 'node:os'
import type { FrozenConfig } from '@sipedge/config'
import type { TransportName } from './types.js'

export interface Listener {
  /** Engine socketId: the index of this entry in config.listen (engineOptionsFromConfig keeps the order). */
  readonly socketId: number
  readonly transport: TransportName
  /** Host written in Via / Record-Route (advertise.host or the bind address; IPv6 bracketed). */
  readonly host: string
  readonly port: number
  /** "SIP/2.0/UDP host:port;branch=" : our Via up to the branch value. */
  readonly viaPrefix: string
  /** Record-Route value: "<sip:host:port;transport=tcp;lr>" (no transport param for UDP). */
  readonly recordRoute: string
}

const VIA_PROTO: Record<TransportName, string> = { udp: 'UDP', tcp: 'TCP', tls: 'TLS', ws: 'WS', wss: 'WSS' }

export function defaultPort(transport: string, scheme?: string): number {
  return transport === 'tls' || transport === 'wss' || scheme === 'sips' ? 5061 : 5060
}

function bracket(h: string): string {
  return h.includes(':') && !h.startsWith('[') ? '[' + h + ']' : h
}

function unbracket(h: string): string {
  return h.length > 1 && h.charCodeAt(0) === 0x5b ? h.slice(1, -1) : h
}

function isUnspecified(a: string): boolean {
  return a === '0.0.0.0' || a === '::'
}

function interfaceAddresses(family: 4 | 6): string[] {
  const out: string[] = []
  for (const list of Object.values(networkInterfaces())) {
    for (const i of list ?? []) if ((family === 4) === (i.family === 'IPv4')) out.push(i.address)
  }
  return out
}

export class LocalIdentity {
  readonly listeners: readonly Listener[]
  /** First listener of each transport: where a request leaves for that transport. */
  private readonly byTransport: Map<string, Listener>
  /** "host:port" (lower case, no brackets) of every listener, bound and advertised. */
  private readonly hostPorts: Set<string>
  /** Hosts of the listeners (lower case, no brackets) and the local domains. */
  private readonly hosts: Set<string>
  readonly domains: Set<string>

  constructor(config: FrozenConfig) {
    const listeners: Listener[] = []
    this.byTransport = new Map()
    this.hostPorts = new Set()
    this.hosts = new Set()
    this.domains = new Set()
    for (const d of config.domains) { this.domains.add(d.toLowerCase()); this.hosts.add(d.toLowerCase()) }
    config.listen.forEach((l, socketId) => {
      let host = l.advertise?.host ?? l.address
      const port = l.advertise?.port ?? l.port
      if (l.advertise === null && isUnspecified(l.address)) {
        // Bound to every address: every interface address names us; Via needs a concrete one.
        const addrs = interfaceAddresses(l.family)
        for (const a of addrs) { this.hostPorts.add(a.toLowerCase() + ':' + l.port); this.hosts.add(a.toLowerCase()) }
        host = addrs.find(a => a !== '127.0.0.1' && a !== '::1') ?? addrs[0] ?? (l.family === 4 ? '127.0.0.1' : '::1')
      }
      const h = unbracket(host).toLowerCase()
      this.hostPorts.add(h + ':' + port)
      this.hostPorts.add(l.address.toLowerCase() + ':' + l.port)
      this.hosts.add(h)
      this.hosts.add(l.address.toLowerCase())
      const bh = bracket(unbracket(host))
      const li: Listener = {
        socketId,
        transport: l.proto,
        host: bh,
        port,
        viaPrefix: 'SIP/2.0/' + VIA_PROTO[l.proto] + ' ' + bh + ':' + port + ';branch=',
        recordRoute: '<sip:' + bh + ':' + port + (l.proto === 'udp' ? '' : ';transport=' + l.proto) + ';lr>',
      }
      listeners.push(li)
      if (!this.byTransport.has(l.proto)) this.byTransport.set(l.proto, li)
    })
    this.listeners = listeners
  }

  /** The listener a request for `transport` leaves from (undefined: we do not speak it). */
  listenerFor(transport: string): Listener | undefined {
    return this.byTransport.get(transport)
  }

  /**
   * The listener a message arrived on. Connections we opened have no listener (socketId
   * 0xffffffff / -1 from the engine): the first listener of that transport stands in.
   */
  listenerOf(socketId: number | undefined, transport: string): Listener | undefined {
    if (socketId !== undefined && socketId >= 0 && socketId < this.listeners.length) {
      const l = this.listeners[socketId]!
      if (l.transport === transport) return l
    }
    return this.byTransport.get(transport)
  }

  /** host[:port] names one of our listeners (port absent: the default port of the transport). */
  isLocalHostPort(host: string, port: number | undefined, transport = 'udp', scheme?: string): boolean {
    const h = unbracket(host).toLowerCase()
    if (port === undefined) {
      // A bare local domain (no port) in a Route names this proxy (a pre-loaded/Service-Route).
      if (this.domains.has(h)) return true
      port = defaultPort(transport, scheme)
    }
    return this.hostPorts.has(h + ':' + port)
  }

  /** The host is one of our listener hosts or a local domain (port not considered). */
  isLocalHost(host: string): boolean {
    return this.hosts.has(unbracket(host).toLowerCase())
  }
}
