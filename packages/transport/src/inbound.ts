// The inbound path: a datagram or a whole stream message -> find and hash the Call-ID bytes ->
// hand the frame to the worker for that hash (FrameTarget: the worker pool's inbound rings, or
// the handler itself with workers: 0). Per message: one Call-ID scan, one header written into a
// reused FrameMeta, one push. The primary parses a message only to answer it itself (400
// without Call-ID on a stream, 503 when the ring is full); see docs/architecture.md steps 1-3.
import type { RemoteInfo } from 'node:dgram'
import { UDP, nameOf, createFrameMeta, type FrameMeta } from '@sipedge/frame'
import { callIdHash, answerFor } from './sip-subset.js'
import { RateLimitedLog, type Logger } from './log.js'
import type { Counters } from './counters.js'
import type { StreamConn } from './connections.js'
import type { EngineLimits, RunState } from './options.js'
import { Pike } from './pike.js'

/** Where frames for the workers go: the worker pool, or the in-process handler. */
export interface FrameTarget {
  /** Hand an inbound frame to the worker for `hash`; false = no room now (ring full). */
  deliver(hash: number, meta: FrameMeta, payload: Uint8Array): boolean
  /**
   * Tell worker `worker` that frames it sent could not be delivered: `meta` names the
   * destination and carries FLAG_TRANSPORT_ERROR. false = the report could not be queued.
   */
  transportError(worker: number, meta: FrameMeta): boolean
}

/** Until start() sets the real one: nothing is delivered. */
export const NO_TARGET: FrameTarget = { deliver: () => false, transportError: () => false }

function isKeepaliveDatagram(b: Buffer): boolean {
  // RFC 5626 §3.5.1 / common practice: a bare CRLF (or CRLFCRLF) datagram keeps a NAT binding open.
  if (b.length > 4) return false
  for (let i = 0; i < b.length; i++) if (b[i] !== 13 && b[i] !== 10 && b[i] !== 0) return false
  return true
}

export interface InboundOptions { counters: Counters; limits: EngineLimits; log: Logger; state: RunState; pike?: Pike; onMessage?: (() => void) | undefined }

export class Inbound {
  target: FrameTarget = NO_TARGET
  readonly #c: Counters
  readonly #limits: EngineLimits
  readonly #state: RunState
  readonly #pike: Pike
  readonly #scratch: FrameMeta = createFrameMeta()
  readonly #rlOversize: RateLimitedLog
  readonly #rlNoCallId: RateLimitedLog
  readonly #rlRingFull: RateLimitedLog
  readonly #onMessage: () => void

  constructor(o: InboundOptions) {
    this.#onMessage = o.onMessage ?? noop
    this.#c = o.counters
    this.#limits = o.limits
    this.#state = o.state
    this.#pike = o.pike ?? new Pike()
    this.#rlOversize = new RateLimitedLog(o.log, 'warn')
    this.#rlNoCallId = new RateLimitedLog(o.log, 'warn')
    this.#rlRingFull = new RateLimitedLog(o.log, 'warn')
  }

  /** One UDP datagram received on listener `socketId`. */
  datagram(socketId: number, msg: Buffer, rinfo: RemoteInfo): void {
    const c = this.#c
    if (this.#state.draining) { c.drainDropped++; return }
    c.udpIn++
    this.#onMessage()
    if (this.#pike.check(rinfo.address, msg)) return // pike: banned source, dropped before any parsing
    if (msg.length > this.#limits.maxMessageSize) {
      c.udpOversize++
      this.#rlOversize.hit('UDP datagram over max message size dropped', { remote: rinfo.address, size: msg.length, max: this.#limits.maxMessageSize })
      return
    }
    const h = callIdHash(msg)
    if (h === -1) {
      if (isKeepaliveDatagram(msg)) { c.keepalivePings++; return }
      c.udpNoCallId++ // a UDP peer gets no 400 (it may be spoofed); counted and dropped
      this.#rlNoCallId.hit('UDP message without Call-ID dropped', { remote: rinfo.address, port: rinfo.port })
      return
    }
    const m = this.#scratch
    m.transport = UDP
    m.socketId = socketId
    m.connId = 0
    m.family = rinfo.family === 'IPv6' ? 6 : 4
    m.address = rinfo.address
    m.port = rinfo.port
    m.recvTime = performance.timeOrigin + performance.now()
    m.flags = 0
    if (!this.target.deliver(h, m, msg)) {
      c.ringFull++ // UDP: dropped, the peer retransmits (RFC 3261 §17.1.2.2)
      this.#rlRingFull.hit('worker ring full: UDP message dropped', { transport: 'udp' })
    }
  }

  /** One whole SIP message from a stream connection (TCP/TLS framed, or one WS message). */
  streamMessage(conn: StreamConn, buf: Buffer): void {
    const c = this.#c
    if (this.#state.draining) { c.drainDropped++; return }
    c.streamIn++
    this.#onMessage()
    if (this.#pike.check(conn.address, buf)) return // pike: banned (its connections are being closed)
    conn.sipSeen = true
    const h = callIdHash(buf)
    if (h === -1) {
      c.streamNoCallId++
      this.#rlNoCallId.hit('stream message without Call-ID answered 400', { transport: nameOf(conn.kind), remote: conn.address })
      const r = answerFor(buf, 400, 'Missing Call-ID')
      if (r !== null) conn.writeOwn(r)
      return
    }
    const m = this.#scratch
    m.transport = conn.kind
    m.socketId = conn.socketId
    m.connId = conn.id
    m.family = conn.family
    m.address = conn.address
    m.port = conn.port
    m.recvTime = performance.timeOrigin + performance.now()
    m.flags = 0
    if (!this.target.deliver(h, m, buf)) {
      c.ringFull++
      this.#rlRingFull.hit('worker ring full: stream request answered 503', { transport: nameOf(conn.kind) })
      const r = answerFor(buf, 503, 'Service Unavailable', [['Retry-After', '5']])
      if (r !== null) { c.ringFull503++; conn.writeOwn(r) }
    }
  }
}
function noop(): void {}
