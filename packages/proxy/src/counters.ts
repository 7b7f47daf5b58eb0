// What the core counts, and what it reports to a metrics sink. Feature modules keep their own
// counters (their `stats()`).

/**
 * What the proxy reports to a metrics sink beyond what the worker counts on the wire. One
 * guarded call per response; no allocation.
 */
export interface ProxyMetrics {
  /**
   * A response is being handed to a server transaction: `forwarded` (relayed from a backend) or
   * generated here. `prevStatus` is the transaction's last status before it (0: none), so the
   * sink can time the first provisional and the final. `recvTime`: Source.recvTime of the request.
   */
  serverResponse(method: string, recvTime: number, prevStatus: number, status: number, forwarded: boolean): void
}

/** Metrics of one proxy core (monotonic). */
export class ProxyCounters {
  requestsIn = 0
  responsesIn = 0
  parseErrors = 0
  /** Responses dropped: a mandatory header (Via, To, From, Call-ID, CSeq) missing or unreadable, or no Via left below ours (§16.7 step 3). */
  badResponses = 0
  /** Requests answered by the proxy itself (OPTIONS to us, errors, rejects). */
  localReplies = 0
  optionsLocal = 0
  forwardedRequests = 0
  forwardedResponses = 0
  tooManyHops = 0
  loops = 0
  spirals = 0
  noRoute = 0
  rejected = 0
  failovers = 0
  timeouts = 0
  transportErrors = 0
  /** A transaction timer's callback threw (a bug): logged, the other timers went on. */
  timerErrors = 0
  cancels = 0
  cancelNoMatch = 0
  acksForwarded = 0
  acksDropped = 0
  strayForwarded = 0
  strayDropped = 0
  /** Stray responses whose Via branch MAC did not verify (forged, or for another previous hop). */
  strayForged = 0
  drainRefused = 0
  dnsWaits = 0
  /** Requests dropped unanswered by an on-arrival hook (scanner user agents, bans, ...). */
  arrivalDropped = 0
  /** Requests answered statelessly by an on-arrival hook (challenges). */
  arrivalReplies = 0
  /** Requests refused by a module hook (auth, dialog check, ...). */
  moduleRefused = 0
  /** Requests this proxy originated for modules (probes, BYE). */
  originated = 0
}
