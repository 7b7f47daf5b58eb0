/** Counters for metrics; monotonic except where noted. Read them through `layer.stats()`. */
export class TransactionCounters {
  ictCreated = 0
  ictTerminated = 0
  nictCreated = 0
  nictTerminated = 0
  istCreated = 0
  istTerminated = 0
  nistCreated = 0
  nistTerminated = 0
  /** Timer A/E retransmissions and ACKs resent for retransmitted 3xx-6xx. */
  retransmittedRequests = 0
  /** Timer G and responses resent for retransmitted requests. */
  retransmittedResponses = 0
  /** Request retransmissions (and duplicate ACKs are not counted) received by server transactions. */
  absorbedRequests = 0
  /** Response retransmissions absorbed by client transactions. */
  absorbedResponses = 0
  /** Timer B/F/H, Timer C without provisional, §9.1 cancel timeout. */
  timeouts = 0
  /** Transactions ended by a transport error (`layer.transportError`). */
  transportErrors = 0
  strayResponses = 0
  /** Response retransmissions a server transaction withheld under its byte limit (`limitResponses`). */
  withheldResponses = 0
}
