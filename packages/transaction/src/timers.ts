import { TransactionError } from './errors.js'

export interface TimerConfig {
  /** RTT estimate, ms. RFC 3261 default 500. */
  t1: number
  /** Maximum retransmit interval for non-INVITE requests and INVITE responses, ms. Default 4000. */
  t2: number
  /** Maximum time a message remains in the network, ms. Default 5000. */
  t4: number
  /** Proxy Timer C (§16.6 step 11), ms; 0 disables. Default 180000. */
  timerC?: number
  /**
   * Timer B and Timer F, ms. Default 64*T1, the RFC's value; an operator may shorten them to
   * fail over sooner to the next destination (the proxy's own timeout, like Kamailio's
   * fr_timer), or lengthen them.
   */
  timerB?: number
  timerF?: number
}

/**
 * Every timer of RFC 3261 §17 (Table 4) plus RFC 6026 Timers L and M and proxy Timer C, in ms.
 * For the retransmission timers A, E and G, 0 means "do not retransmit" (reliable transport).
 * For the wait timers D, I, J and K, 0 means "terminate at once" (reliable transport).
 */
export interface TimerValues {
  /** Which of the two sets this is: for a reliable transport (the layer's `isReliable`) or not. */
  readonly reliable: boolean
  readonly T1: number
  readonly T2: number
  readonly T4: number
  readonly A: number
  readonly B: number
  readonly C: number
  readonly D: number
  readonly E: number
  readonly F: number
  readonly G: number
  readonly H: number
  readonly I: number
  readonly J: number
  readonly K: number
  readonly L: number
  readonly M: number
}

export const DEFAULT_TIMERS: Readonly<Required<Omit<TimerConfig, 'timerB' | 'timerF'>>> = Object.freeze({ t1: 500, t2: 4000, t4: 5000, timerC: 180_000 })

/**
 * The one place where timer values are derived from T1/T2/T4 and the transport's reliability.
 * The layer calls it twice at construction (reliable, unreliable) and every transaction holds a
 * reference to one of the two frozen results, so no per-transaction allocation happens.
 */
export function timerValues(cfg: TimerConfig, reliable: boolean): TimerValues {
  const { t1, t2, t4 } = cfg
  const timerC = cfg.timerC ?? DEFAULT_TIMERS.timerC
  if (!(t1 > 0) || !(t2 >= t1) || !(t4 > 0) || !(timerC >= 0) || !Number.isFinite(t2) || !Number.isFinite(t4) ||
      !((cfg.timerB ?? 1) > 0) || !((cfg.timerF ?? 1) > 0)) {
    throw new TransactionError('ERR_TX_BAD_CONFIG', `invalid transaction timers: t1=${t1} t2=${t2} t4=${t4} timerC=${timerC} (need t1 > 0, t2 >= t1, t4 > 0, timerC >= 0)`)
  }
  const t64 = 64 * t1
  return Object.freeze({
    reliable,
    T1: t1,
    T2: t2,
    T4: t4,
    // §17.1.1.2: "If an unreliable transport is being used, the client transaction MUST start
    // timer A with a value of T1. If a reliable transport is being used, the client transaction
    // SHOULD NOT start timer A"
    A: reliable ? 0 : t1,
    // §17.1.1.2: "For any transport, the client transaction MUST start timer B with a value of 64*T1"
    B: cfg.timerB ?? t64,
    // §16.6 step 11: "If the request is an INVITE, the proxy MUST set timer C" (default 3 min).
    C: timerC,
    // §17.1.1.2: "Timer D ... with a value of at least 32 seconds for unreliable transports, and a
    // value of zero seconds for reliable transports". Kept >= 64*T1 so a large T1 stays safe.
    D: reliable ? 0 : Math.max(32_000, t64),
    // §17.1.2.2: Timer E starts at T1 on unreliable transports only; F = 64*T1 always.
    E: reliable ? 0 : t1,
    F: cfg.timerF ?? t64,
    // §17.2.1: "If an unreliable transport is being used, the server transaction MUST start timer G
    // with a value of T1" ... "For any transport, the server transaction MUST start timer H ... 64*T1"
    G: reliable ? 0 : t1,
    H: t64,
    // §17.2.1: "timer I is set to fire in T4 seconds for unreliable transports, and zero seconds
    // for reliable transports"
    I: reliable ? 0 : t4,
    // §17.2.2: "timer J ... 64*T1 seconds for unreliable transports, and zero seconds for reliable"
    J: reliable ? 0 : t64,
    // §17.1.2.2: "timer K ... T4 seconds for unreliable transports, and zero seconds for reliable"
    K: reliable ? 0 : t4,
    // RFC 6026 §8.7 / §8.4: Timers L and M are 64*T1 on every transport.
    L: t64,
    M: t64,
  })
}
