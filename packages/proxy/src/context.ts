// The response context of a forwarded request (RFC 3261 §16: one server transaction, the client
// transactions of its attempts, the best final response so far). Stable shape: every field is set
// in the constructor, nothing is added later.
import type { SipMessage } from '@sipedge/sip'
import type { ClientTransaction, ServerTransaction } from '@sipedge/transaction'
import type { Listener } from './identity.js'
import type { CompiledRule } from './routing.js'
import type { FailoverPolicy, NextHop, RequestView } from './module.js'
import type { Source } from './types.js'

export class RequestContext implements RequestView {
  readonly server: ServerTransaction
  readonly req: SipMessage
  readonly source: Source
  readonly inListener: Listener | undefined
  /** The listener of the current attempt. */
  outListener: Listener | undefined
  /** Request-URI after strict-router repair (§16.4); what is forwarded unless a hop replaces it. */
  ruri: string
  ruriChanged: boolean
  /** Our own Route values at the top (removed when forwarding), and whether the last one goes (strict repair). */
  ourRoutes: number
  dropLastRoute: boolean
  hash: string
  recordRoute: boolean
  rule: CompiledRule | null
  /** When to move to the next hop (null: the core's default). */
  failover: FailoverPolicy | null
  hops: NextHop[]
  next: number
  current: ClientTransaction | null
  currentHop: NextHop | null
  /** Best final response so far (§16.7 step 6): a copied message, or null with bestStatus for a generated one. */
  best: SipMessage | null
  bestStatus: number
  cancelled: boolean
  done: boolean
  rrParams: string
  singleRecordRoute: boolean
  restoresVias: boolean
  private state: unknown[] | null

  constructor(server: ServerTransaction, req: SipMessage, source: Source, inListener: Listener | undefined) {
    this.server = server
    this.req = req
    this.source = source
    this.inListener = inListener
    this.outListener = undefined
    this.ruri = req.uri
    this.ruriChanged = false
    this.ourRoutes = 0
    this.dropLastRoute = false
    this.hash = ''
    this.recordRoute = false
    this.rule = null
    this.failover = null
    this.hops = []
    this.next = 0
    this.current = null
    this.currentHop = null
    this.best = null
    this.bestStatus = 0
    this.cancelled = false
    this.done = false
    this.rrParams = ''
    this.singleRecordRoute = false
    this.restoresVias = false
    this.state = null
  }

  getState(slot: number): unknown {
    return this.state === null ? undefined : this.state[slot]
  }

  setState(slot: number, value: unknown): void {
    if (this.state === null) this.state = []
    this.state[slot] = value
  }
}

/** §16.7 step 6: 6xx wins; otherwise the lowest class; first seen wins within a class. */
export function betterFinal(candidate: number, current: number): boolean {
  if (current === 0) return true
  const c6 = candidate >= 600
  const b6 = current >= 600
  if (c6 !== b6) return c6
  return Math.floor(candidate / 100) < Math.floor(current / 100)
}
