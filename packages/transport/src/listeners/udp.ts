// UDP listeners: one dgram socket per configured address, bound exclusively, with large kernel
// buffers. Datagrams go to the inbound path tagged with the listener's socketId; the outbound
// path sends from the listener a request came in on (the peer sees the address it wrote to).
import { createSocket, type Socket as UdpSocket, type RemoteInfo } from 'node:dgram'
import { lookup as dnsLookup, type LookupOneOptions } from 'node:dns'
import { isIP, isIPv6 } from 'node:net'
import { RateLimitedLog, type Logger } from '../log.js'

/**
 * dgram passes every destination through a `lookup`; node's default (`dns.lookup`) answers an IP
 * literal on the next tick, so a datagram left a tick after `send()`, and a socket closed in
 * between (shutdown after the last answers) dropped it. Every address the outbound path sends to
 * is a literal (resolution happened in the worker), so answer those at once: the datagram is
 * handed to the kernel inside `send()` (CPU per send unchanged, docs/performance.md "Copy once").
 * A name (none today) still goes through `dns.lookup`.
 */
function literalLookup(host: string, family: number, cb: (err: NodeJS.ErrnoException | null, address: string, family: number) => void): void {
  const f = isIP(host)
  if (f !== 0) { cb(null, host, f); return }
  dnsLookup(host, { family } as LookupOneOptions, cb)
}

export type DatagramHandler = (socketId: number, msg: Buffer, rinfo: RemoteInfo) => void

export class UdpListeners {
  readonly #onDatagram: DatagramHandler
  readonly #rl: RateLimitedLog
  /** by socketId (listener index); undefined for listeners of other transports */
  readonly #sockets: (UdpSocket | undefined)[] = []
  readonly #family: number[] = []
  #first4: UdpSocket | null = null
  #first6: UdpSocket | null = null

  constructor(log: Logger, onDatagram: DatagramHandler) {
    this.#onDatagram = onDatagram
    this.#rl = new RateLimitedLog(log, 'info')
  }

  /** Binds listener `socketId` to address:port (0 = any free port); resolves with the port bound. */
  async bind(socketId: number, address: string, port: number): Promise<number> {
    const v6 = isIPv6(address)
    const sock = createSocket({ type: v6 ? 'udp6' : 'udp4', lookup: literalLookup as never })
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject)
      sock.bind({ address, port, exclusive: true }, () => { sock.off('error', reject); resolve() })
    })
    try { sock.setRecvBufferSize(4 * 1024 * 1024); sock.setSendBufferSize(4 * 1024 * 1024) } catch { /* capped by net.core.rmem_max */ }
    sock.on('error', err => this.#rl.hit('UDP socket error', { err, socketId }))
    const onDatagram = this.#onDatagram
    sock.on('message', (msg, rinfo) => onDatagram(socketId, msg, rinfo))
    const fam = v6 ? 6 : 4
    this.#sockets[socketId] = sock
    this.#family[socketId] = fam
    if (fam === 4 && this.#first4 === null) this.#first4 = sock
    if (fam === 6 && this.#first6 === null) this.#first6 = sock
    return sock.address().port
  }

  /**
   * The socket to send a datagram to an address of `family` from: listener `socketId` when it is
   * a UDP socket of that family, else the first UDP listener of the family (a frame the worker
   * originated, or an answer across families); null when there is none.
   */
  socketFor(socketId: number, family: 4 | 6): UdpSocket | null {
    const s = this.#sockets[socketId]
    if (s !== undefined && this.#family[socketId] === family) return s
    return family === 4 ? this.#first4 : this.#first6
  }

  close(): void {
    for (const s of this.#sockets) { try { s?.close() } catch { /* already closed */ } }
  }
}
