// Transport kinds as numbers in the frame header, and the one table between those numbers and
// the names the configuration and SIP use (Via transport, lower case). Plain constants and an
// `as const` object, not a const enum: isolatedModules cannot inline another package's enum.

export const TransportKind = { UDP: 1, TCP: 2, TLS: 3, WS: 4, WSS: 5 } as const
export type TransportKind = (typeof TransportKind)[keyof typeof TransportKind]

export const UDP = TransportKind.UDP
export const TCP = TransportKind.TCP
export const TLS = TransportKind.TLS
export const WS = TransportKind.WS
export const WSS = TransportKind.WSS

export type TransportName = 'udp' | 'tcp' | 'tls' | 'ws' | 'wss'

/** Every transport name in kind order: `TRANSPORT_NAMES[kind - 1]`. */
export const TRANSPORT_NAMES: readonly TransportName[] = Object.freeze(['udp', 'tcp', 'tls', 'ws', 'wss'] as const)

// Indexed by kind; slot 0 (no transport) and anything past WSS read undefined.
const NAME_BY_KIND: readonly (TransportName | undefined)[] = [undefined, ...TRANSPORT_NAMES]

/** The name of a kind number, or undefined for a number that names no transport. */
export function nameOf(kind: number): TransportName | undefined {
  return NAME_BY_KIND[kind]
}

/** The kind number of a (lower-case) transport name; 0 for a string that names none. */
export function kindOf(name: TransportName): TransportKind
export function kindOf(name: string): TransportKind | 0
export function kindOf(name: string): TransportKind | 0 {
  // A switch on five short strings: no map, no prototype lookups; called per outgoing frame.
  switch (name) {
    case 'udp': return UDP
    case 'tcp': return TCP
    case 'tls': return TLS
    case 'ws': return WS
    case 'wss': return WSS
    default: return 0
  }
}

/** TCP, TLS, WS and WSS: reliable, connection-oriented (RFC 3261 §18: no retransmission timers). */
export function isStreamKind(kind: number): boolean {
  return kind === TCP || kind === TLS || kind === WS || kind === WSS
}
