// The fixed header in front of every frame, as both threads see it, and the flag bits it carries.
// @sipedge/ring lays it out in shared memory (48 bytes, see packages/ring/src/ring.ts); this file
// says what the fields mean.
import type { AddressFamily } from './address.js'

/** The header of every frame, primary -> worker and worker -> primary. */
export interface FrameMeta {
  /** TransportKind value, 0..255 */
  transport: number
  /** index of the listener the frame came in on (answers leave from it); 0..2^32-1 */
  socketId: number
  /** 0..2^32-1; 0 = no connection (datagram, or "open one" with FLAG_OPEN_CONNECTION) */
  connId: number
  /** remote address family */
  family: AddressFamily
  /** remote address literal; '' writes the unspecified address (reads back '0.0.0.0' / '::') */
  address: string
  /** remote port 0..65535 */
  port: number
  /** performance.timeOrigin + performance.now(), ms (any float64 is carried as is) */
  recvTime: number
  /** FrameFlags bits, 0..2^32-1 */
  flags: number
}

/** Frame flags (bit set). The ring carries them opaquely; their meaning is here. */
export const FrameFlags = {
  /** worker -> primary: close the connection after this frame is sent */
  CLOSE_AFTER_SEND: 1,
  /** worker -> primary: connId is 0 (or gone); reuse a connection to address:port or open one */
  OPEN_CONNECTION: 2,
  /**
   * primary -> worker: not a message but a report that frames this worker sent to
   * transport/address/port could not be delivered (connect refused or reset, TLS handshake
   * failed, write failed or reset with frames pending). connId is the failed connection's id (0
   * when none was opened). The payload is empty. Handed to `MessageHandler.onTransportError`,
   * never to `onFrame`. RFC 3261 §17.1.4: the client transaction treats it as a transport error.
   */
  TRANSPORT_ERROR: 4,
  /**
   * worker -> primary: not a message but "keep connection connId alive" (docs/nat.md): a client
   * behind NAT registered over it. The payload is empty; address/port name the connection's peer.
   * The primary pings the connection once per keep-alive interval at its own phase (double CRLF,
   * RFC 5626 §4.4.1; a ping frame on WebSocket) and, after `failures_remove` pings answered by
   * neither a pong nor any other traffic, closes it and reports it to every worker that asked:
   * primary -> worker, a frame with TRANSPORT_ERROR | KEEPALIVE (the flow failed).
   */
  KEEPALIVE: 8,
} as const
export const FLAG_CLOSE_AFTER_SEND = FrameFlags.CLOSE_AFTER_SEND
export const FLAG_OPEN_CONNECTION = FrameFlags.OPEN_CONNECTION
export const FLAG_TRANSPORT_ERROR = FrameFlags.TRANSPORT_ERROR
export const FLAG_KEEPALIVE = FrameFlags.KEEPALIVE

/**
 * A FrameMeta with every field initialised in a fixed order (stable hidden class). A producer
 * keeps one and overwrites its fields per frame instead of allocating an object per frame.
 */
export function createFrameMeta(init?: Partial<FrameMeta>): FrameMeta {
  return {
    transport: init?.transport ?? 0,
    socketId: init?.socketId ?? 0,
    connId: init?.connId ?? 0,
    family: init?.family ?? 4,
    address: init?.address ?? '',
    port: init?.port ?? 0,
    recvTime: init?.recvTime ?? 0,
    flags: init?.flags ?? 0,
  }
}
