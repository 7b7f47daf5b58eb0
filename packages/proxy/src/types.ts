// Shapes shared by the proxy core, the dispatcher and the registrar seam.
import type { Destination, TransportName } from '@sipedge/transaction'

export type { Destination, TransportName }

/** A source as the worker adapter hands it in: where the message came from and when. */
export interface Source extends Destination {
  /** ms, performance.timeOrigin + performance.now() (FrameMeta.recvTime). */
  recvTime: number
}

export interface ProxyLogger {
  debug(msg: string, fields?: Record<string, unknown>): void
  info(msg: string, fields?: Record<string, unknown>): void
  warn(msg: string, fields?: Record<string, unknown>): void
  error(msg: string, fields?: Record<string, unknown>): void
  /** When present: whether a level is on (debug fields are only built when it is). */
  isLevelEnabled?(level: string): boolean
}

/** Control messages exchanged with the primary (msgpackr on the worker MessagePort). */
export type ControlMessage =
  | { type: 'config'; config: unknown }
  | { type: 'dispatcher-state'; set: string; uri: string; state: 'active' | 'inactive' | 'draining'; workerIndex?: number }
  | { type: string; [k: string]: unknown }

/**
 * A next hop for a forwarded request, resolved enough to send to.
 * `uri` is the SIP URI the hop came from (Route, dispatcher destination, contact); `requestUri`
 * when set replaces the Request-URI (a registered contact, a rewrite), else it stays.
 */
export interface Target {
  /** Next-hop URI (sip:host[:port][;transport=x]); where the request is sent. */
  uri: string
  /** Request-URI to put on the forwarded request; undefined = keep the received one. */
  requestUri?: string
  /**
   * Send on this existing flow (RFC 5626 outbound / a registered TCP connection) instead of
   * resolving `uri`: transport + address + port + connId of the connection the contact registered on.
   */
  flow?: Destination
  /** Extra header lines (e.g. Path-derived Route), appended as given. */
  headers?: ReadonlyArray<readonly [string, string]>
  /** NextHop.failStatus: what a transport error on this target means (480 / 430 for a flow that is gone). */
  failStatus?: number
}
