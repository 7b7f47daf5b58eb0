// The seam between the proxy core and the registrar/location service (src/registrar/, owned by
// the registrar work). The core calls these for the route actions `register` and `lookup`;
// nothing else in the core knows how registrations are stored.
import type { SipMessage } from '@sipedge/sip'
import type { ServerTransaction } from '@sipedge/transaction'
import type { FrozenConfig } from '@sipedge/config'
import type { Destination, Target } from './types.js'

/** Why `lookup` found nothing to forward to: the proxy answers with this status and reason. */
export interface LookupFailure {
  status: number
  reason: string
}

export interface Registrar {
  /**
   * A REGISTER that matched a `register` rule (its Max-Forwards, loop and Proxy-Require checks
   * already done). The registrar answers through `tx.respond(...)` (200 with Contacts, 401/407,
   * 423, ...), synchronously or later; it owns the transaction from here on. `source` is where the
   * REGISTER came from (flow for RFC 5626 outbound / NAT: transport, address, port, connId).
   * `req.buf` is a private copy: it may be kept.
   */
  handleRegister(req: SipMessage, tx: ServerTransaction, source: Destination): void
  /**
   * Targets for a request that matched a `lookup` rule (the registered contacts of the
   * Request-URI's address of record), in the order to try them (q-value order; the core tries them
   * sequentially with the set's failover rules). A LookupFailure (typically 404 / 480) is answered
   * as is. May resolve synchronously (return a settled value) — the core checks
   * `instanceof Promise` and stays synchronous otherwise.
   */
  lookup(req: SipMessage): Target[] | LookupFailure | Promise<Target[] | LookupFailure>
  /**
   * Digest authentication of a non-REGISTER request from a client (auth.methods). null: go on
   * routing; otherwise the reply to send (407 with Proxy-Authenticate, 403). Trusted sources
   * (application servers) are never challenged. Optional: without it nothing is authenticated.
   */
  authorize?(req: SipMessage, source: Destination): AuthReply | null | Promise<AuthReply | null>
  /** A new configuration (SIGHUP / reload). */
  applyConfig?(config: FrozenConfig): void
  /** Drain / shutdown. */
  close?(): void | Promise<void>
}

/** A failure reply the core sends for `authorize`. */
export interface AuthReply {
  status: number
  reason: string
  headers: Array<[string, string]>
}

export function isLookupFailure(x: Target[] | LookupFailure): x is LookupFailure {
  return !Array.isArray(x)
}

/**
 * Until the registrar lands: `register` answers 501 and `lookup` answers 404, with reasons that
 * say why, so an operator who configured those actions sees what is missing.
 */
export class UnconfiguredRegistrar implements Registrar {
  handleRegister(_req: SipMessage, tx: ServerTransaction): void {
    tx.respond(501, 'Registrar Not Available')
  }

  lookup(): LookupFailure {
    return NO_LOCATION
  }
}

const NO_LOCATION: LookupFailure = Object.freeze({ status: 404, reason: 'Not Found (no location service)' })
