// The inbound path without sockets: Call-ID hash -> the target, the header it is given, the
// primary's own answers (400 without Call-ID on a stream, 503 on a full ring), UDP drops, drain.
import t from 'tap'
import type { RemoteInfo } from 'node:dgram'
import { Inbound, Counters, StreamConn, DEFAULT_LIMITS, createLogger, UDP, TCP, type FrameMeta, type FrameTarget, type WsConnectionLike } from '@sipedge/transport'
import { callIdHashOf } from '@sipedge/sip'
import { req } from './fixtures/net.js'

const quiet = createLogger({ level: 'silent' })

function setup(opts: { full?: boolean; maxMessageSize?: number } = {}) {
  const counters = new Counters()
  const state = { draining: false }
  const frames: Array<{ hash: number; meta: FrameMeta; text: string }> = []
  const target: FrameTarget = {
    deliver(hash, meta, payload) {
      if (opts.full === true) return false
      frames.push({ hash, meta: { ...meta }, text: Buffer.from(payload).toString('latin1') })
      return true
    },
    transportError: () => true,
  }
  const inb = new Inbound({ counters, limits: { ...DEFAULT_LIMITS, maxMessageSize: opts.maxMessageSize ?? 65535 }, log: quiet, state })
  inb.target = target
  // A stream connection whose writes are recorded (a WS-shaped connection: no socket needed).
  const written: string[] = []
  const conn = new StreamConn(TCP, 2, '192.0.2.7', 5080, false)
  conn.id = 17
  conn.ws = { transport: 'ws', remoteAddress: '192.0.2.7', remotePort: 5080, send(d: Buffer | Buffer[]) { written.push(Buffer.concat([d].flat()).toString('latin1')); return true }, close() {} } satisfies WsConnectionLike
  return { inb, counters, state, frames, conn, written }
}

const rinfo = (address = '198.51.100.9', port = 5062, family: 'IPv4' | 'IPv6' = 'IPv4'): RemoteInfo => ({ address, port, family, size: 0 })

t.test('datagram: hashed by Call-ID, header names the listener and the source', async t => {
  const { inb, frames, counters } = setup()
  inb.datagram(3, Buffer.from(req({ callId: 'abc@h' })), rinfo())
  inb.datagram(3, Buffer.from(req({ callId: 'v6' })), rinfo('2001:db8::9', 5064, 'IPv6'))
  t.equal(frames.length, 2)
  t.equal(frames[0]!.hash, callIdHashOf('abc@h'))
  t.match(frames[0]!.meta, { transport: UDP, socketId: 3, connId: 0, family: 4, address: '198.51.100.9', port: 5062, flags: 0 })
  t.ok(frames[0]!.meta.recvTime > performance.timeOrigin, 'receive time on the shared clock')
  t.match(frames[1]!.meta, { family: 6, address: '2001:db8::9' })
  t.equal(counters.udpIn, 2)
})

t.test('datagram: oversize, no Call-ID, keep-alive and full ring are counted and dropped', async t => {
  const { inb, frames, counters } = setup({ maxMessageSize: 500 })
  inb.datagram(0, Buffer.from(req({ body: 'x'.repeat(600) })), rinfo())
  inb.datagram(0, Buffer.from(req({ callId: null })), rinfo())
  inb.datagram(0, Buffer.from('\r\n\r\n'), rinfo())
  t.equal(frames.length, 0)
  t.match(counters, { udpIn: 3, udpOversize: 1, udpNoCallId: 1, keepalivePings: 1, ringFull: 0 })
  const full = setup({ full: true })
  full.inb.datagram(0, Buffer.from(req()), rinfo())
  t.equal(full.counters.ringFull, 1, 'full ring: dropped (the peer retransmits)')
})

t.test('stream message: header names the connection', async t => {
  const { inb, frames, conn, counters } = setup()
  inb.streamMessage(conn, Buffer.from(req({ callId: 's1' })))
  t.match(frames[0]!.meta, { transport: TCP, socketId: 2, connId: 17, family: 4, address: '192.0.2.7', port: 5080, flags: 0 })
  t.equal(counters.streamIn, 1)
})

t.test('stream message without Call-ID: 400 from the primary; a full ring: 503 with Retry-After', async t => {
  const a = setup()
  a.inb.streamMessage(a.conn, Buffer.from(req({ callId: null })))
  t.equal(a.frames.length, 0)
  t.match(a.written[0], /^SIP\/2\.0 400 Missing Call-ID\r\n/)
  t.equal(a.counters.streamNoCallId, 1)
  const b = setup({ full: true })
  b.inb.streamMessage(b.conn, Buffer.from(req({ callId: 'busy' })))
  t.match(b.written[0], /^SIP\/2\.0 503 Service Unavailable\r\n[\s\S]*Retry-After: 5\r\n/)
  t.match(b.counters, { ringFull: 1, ringFull503: 1 })
  b.inb.streamMessage(b.conn, Buffer.from(req({ callId: 'busy-ack', method: 'ACK' })))
  t.equal(b.written.length, 1, 'an ACK gets no 503 (RFC 3261 §17.2.1)')
  t.equal(b.counters.ringFull, 2)
})

t.test('draining: nothing new is read in', async t => {
  const { inb, frames, counters, state, conn } = setup()
  state.draining = true
  inb.datagram(0, Buffer.from(req()), rinfo())
  inb.streamMessage(conn, Buffer.from(req()))
  t.equal(frames.length, 0)
  t.equal(counters.drainDropped, 2)
  t.equal(counters.udpIn + counters.streamIn, 0)
})

t.test('onMessage: once per message taken from a peer (datagram or stream message), not while draining', async t => {
  let n = 0
  const counters = new Counters()
  const state = { draining: false }
  const inb = new Inbound({ counters, limits: DEFAULT_LIMITS, log: quiet, state, onMessage: () => { n++ } })
  inb.target = { deliver: () => true, transportError: () => true }
  inb.datagram(0, Buffer.from(req()), rinfo())
  inb.datagram(0, Buffer.from('\r\n\r\n'), rinfo()) // a keep-alive is a message from the peer too
  const conn = new StreamConn(TCP, 2, '192.0.2.7', 5080, false)
  conn.ws = { transport: 'ws', remoteAddress: '192.0.2.7', remotePort: 5080, send() { return true }, close() {} } satisfies WsConnectionLike
  inb.streamMessage(conn, Buffer.from(req()))
  t.equal(n, 3)
  state.draining = true
  inb.datagram(0, Buffer.from(req()), rinfo())
  t.equal(n, 3, 'a draining node drops before counting')
  t.equal(counters.udpIn, 2)
})
