// Transport kinds and frame flags as they travel in the ring frame header (docs/contracts.md,
// @sipedge/ring FrameMeta). The numbers are mirrored here as plain constants: a `const enum`
// from another package's declarations cannot be used under isolatedModules.
export const UDP = 1
export const TCP = 2
export const TLS = 3
export const WS = 4
export const WSS = 5

export type TransportName = 'udp' | 'tcp' | 'tls' | 'ws' | 'wss'
export const KIND_BY_NAME: Readonly<Record<TransportName, number>> = { udp: UDP, tcp: TCP, tls: TLS, ws: WS, wss: WSS }
export const NAME_BY_KIND: readonly (TransportName | '')[] = ['', 'udp', 'tcp', 'tls', 'ws', 'wss']

/** Worker -> primary: close the connection once this frame is written. */
export const FLAG_CLOSE_AFTER_SEND = 1
/** Worker -> primary: connId 0, no connection known: reuse one to address:port:transport or open it. */
export const FLAG_OPEN_CONNECTION = 2

/** The header of every frame (same fields as @sipedge/ring FrameMeta). */
export interface FrameMeta {
  transport: number
  socketId: number
  connId: number
  family: 4 | 6
  address: string
  port: number
  recvTime: number
  flags: number
}

export function isStreamKind(kind: number): boolean {
  return kind === TCP || kind === TLS || kind === WS || kind === WSS
}
