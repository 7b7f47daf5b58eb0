// The outbound path over real sockets: UDP from the listener a request came in on, stream frames
// over the named connection or one reused/opened to address:port, close-after-send, batches, and
// transport-error reports to the worker that sent the frames: connect refused, TLS handshake
// failed, reset with frames unwritten, open refused; never for an idle connection's reset.
import t, { type Test } from 'tap'
import { createServer, type Socket, type Server } from 'node:net'
import { createServer as createTlsServer } from 'node:tls'
import { createSocket } from 'node:dgram'
import { mkdtempSync, rmSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  Outbound, UdpListeners, StreamListeners, ConnectionTable, Counters, DEFAULT_LIMITS, createLogger,
  UDP, TCP, TLS, WS, FLAG_OPEN_CONNECTION, FLAG_CLOSE_AFTER_SEND, FLAG_TRANSPORT_ERROR,
  type FrameMeta, type EngineLimits, type OutboundTlsOptions,
} from '@sipedge/transport'
import { execFileSync } from 'node:child_process'
import { until } from './fixtures/net.js'

const quiet = createLogger({ level: 'silent' })

interface Report { worker: number; meta: FrameMeta; at: number }

function setup(t: Test, o: { limits?: Partial<EngineLimits>; outboundTls?: OutboundTlsOptions } = {}) {
  const table = new ConnectionTable()
  const counters = new Counters()
  const state = { draining: false }
  const reports: Report[] = []
  const common = { table, counters, limits: { ...DEFAULT_LIMITS, ...o.limits }, log: quiet, state }
  const udp = new UdpListeners(quiet, () => {})
  let out: Outbound | null = null
  const streams = new StreamListeners({ ...common, onMessage: () => {}, onError: conn => out!.connectionFailed(conn) })
  out = new Outbound({ ...common, udp, streams, ...(o.outboundTls !== undefined ? { outboundTls: o.outboundTls } : {}) })
  out.target = {
    deliver: () => true,
    transportError: (worker, meta) => { reports.push({ worker, meta: { ...meta }, at: Date.now() }); return true },
  }
  t.teardown(() => { for (const c of [...table.values()]) streams.destroy(c); udp.close() })
  return { out, udp, streams, table, counters, state, reports }
}

const frame = (over: Partial<FrameMeta>): FrameMeta => ({ transport: TCP, socketId: 0, connId: 0, family: 4, address: '127.0.0.1', port: 0, recvTime: 0, flags: FLAG_OPEN_CONNECTION, ...over })
const bytes = (s: string) => Buffer.from(s, 'latin1')

/** A TCP server recording what each connection received. */
async function peer(t: Test, onConn?: (s: Socket) => void): Promise<{ port: number; socks: Socket[]; data: string[]; server: Server }> {
  const socks: Socket[] = []
  const data: string[] = []
  const server = createServer(s => {
    socks.push(s)
    const i = socks.length - 1
    data[i] = ''
    s.setEncoding('latin1')
    s.on('data', d => { data[i] += d })
    s.on('error', () => {})
    onConn?.(s)
  })
  await new Promise<void>(r => server.listen(0, '127.0.0.1', r))
  t.teardown(() => { for (const s of socks) s.destroy(); server.close() })
  return { port: (server.address() as { port: number }).port, socks, data, server }
}

/** A port on 127.0.0.1 with nothing listening (bound, then closed). */
async function closedPort(): Promise<number> {
  const s = createServer()
  await new Promise<void>(r => s.listen(0, '127.0.0.1', r))
  const port = (s.address() as { port: number }).port
  await new Promise<void>(r => s.close(() => r()))
  return port
}

t.test('UDP: sent from the listener named by socketId; copied out of the ring view', async t => {
  const { out, udp, counters } = setup(t)
  await udp.bind(0, '127.0.0.1', 0)
  await udp.bind(1, '127.0.0.2', 0)
  const rx = createSocket('udp4')
  await new Promise<void>(r => rx.bind(0, '127.0.0.1', r))
  t.teardown(() => rx.close())
  const got: Array<[string, string]> = []
  rx.on('message', (m, r) => got.push([m.toString(), r.address]))
  const view = bytes('from-ring')
  t.ok(out.send(frame({ transport: UDP, socketId: 1, port: rx.address().port, flags: 0 }), view, true))
  view.fill(0) // the ring reuses its memory as soon as the callback returns
  t.ok(out.send(frame({ transport: UDP, socketId: 0, port: rx.address().port, flags: 0 }), [bytes('gather-'), bytes('list')], false))
  t.ok(await until(() => got.length === 2))
  t.same(got.sort(), [['from-ring', '127.0.0.2'], ['gather-list', '127.0.0.1']])
  t.equal(counters.udpOut, 2)
  t.ok(await until(() => out.udpPending === 0))
  t.notOk(out.send(frame({ transport: UDP, family: 6, address: '::1', port: 9, flags: 0 }), bytes('x'), false), 'no IPv6 listener')
  t.equal(counters.sendNoConnection, 1)
  t.notOk(out.send(frame({ transport: 9 }), bytes('x'), false))
  t.equal(counters.sendUnsupported, 1)
})

t.test('TCP: open, then reuse by address; connId names the connection; close after send', async t => {
  const p = await peer(t)
  const { out, table, counters } = setup(t)
  t.ok(out.send(frame({ port: p.port }), bytes('one;'), false))
  t.ok(out.send(frame({ port: p.port }), bytes('two;'), false))
  t.ok(await until(() => p.data[0] === 'one;two;'))
  t.equal(p.socks.length, 1)
  t.match(counters, { connOpened: 1, connReused: 1, streamOut: 2 })
  const conn = table.byKey(TCP, '127.0.0.1', p.port)!
  t.ok(conn.outbound && conn.established, 'connected')
  // An id that names another peer's connection is not that connection (ids restart at 1 after a
  // restart; a stored flow may outlive its connection): never written to the stranger.
  t.notOk(out.send(frame({ port: 1, connId: conn.id, flags: 0 }), bytes('stranger'), false), 'connId of another peer: refused')
  t.ok(out.send(frame({ port: p.port, connId: conn.id, flags: FLAG_CLOSE_AFTER_SEND }), bytes('bye'), false), 'connId and its peer')
  t.ok(await until(() => table.size === 0))
  t.equal(p.data[0], 'one;two;bye')
  t.notOk(out.send(frame({ port: p.port, connId: conn.id, flags: 0 }), bytes('late'), false), 'a gone connId without FLAG_OPEN_CONNECTION')
  t.equal(counters.sendNoConnection, 2)
  t.ok(out.send(frame({ port: p.port, connId: conn.id }), bytes('reopened'), false), 'with the flag: a new connection (RFC 3261 §18.2.2)')
  t.ok(await until(() => p.data[1] === 'reopened'))
})

t.test('a ring batch is corked and written whole at its end', async t => {
  const p = await peer(t)
  const { out } = setup(t)
  out.beginBatch(0)
  for (let i = 0; i < 50; i++) out.onRingFrame(frame({ port: p.port }) as never, bytes(`m${i};`))
  out.endBatch()
  t.ok(await until(() => p.data[0]?.length === Array.from({ length: 50 }, (_, i) => `m${i};`).join('').length))
  t.equal(p.data[0], Array.from({ length: 50 }, (_, i) => `m${i};`).join(''))
})

t.test('connect refused: each worker that sent frames is told once, within well under a second', async t => {
  const port = await closedPort()
  const { out, counters, reports, table } = setup(t)
  const t0 = Date.now()
  out.beginBatch(1)
  out.onRingFrame(frame({ port }) as never, bytes('a'))
  out.onRingFrame(frame({ port }) as never, bytes('b'))
  out.endBatch()
  out.beginBatch(0)
  out.onRingFrame(frame({ port }) as never, bytes('c'))
  out.endBatch()
  t.ok(await until(() => reports.length >= 2, 2000), 'reported')
  t.ok(reports[reports.length - 1]!.at - t0 < 500, `after ${reports[reports.length - 1]!.at - t0} ms`)
  t.same(reports.map(r => r.worker).sort(), [0, 1], 'one report per worker, not per frame')
  t.match(reports[0]!.meta, { transport: TCP, family: 4, address: '127.0.0.1', port, flags: FLAG_TRANSPORT_ERROR })
  t.ok(reports[0]!.meta.connId > 0, 'names the connection that failed')
  t.equal(counters.connConnectFailed, 1)
  t.equal(counters.transportErrorsReported, 2)
  t.ok(await until(() => table.size === 0))
  await new Promise(r => setTimeout(r, 50))
  t.equal(reports.length, 2, 'no second report for the same failure')
})

t.test('TLS handshake failure (untrusted certificate) is reported', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'sipedge-outbound-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  // A certificate for the address we connect to (frames carry address literals, no names).
  const cert = { cert: join(dir, 'srv.crt'), key: join(dir, 'srv.key') }
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-days', '1', '-keyout', cert.key, '-out', cert.cert], { stdio: 'ignore' })
  const server = createTlsServer({ cert: readFileSync(cert.cert), key: readFileSync(cert.key) }, s => s.on('error', () => {}))
  server.on('tlsClientError', () => {})
  await new Promise<void>(r => server.listen(0, '127.0.0.1', r))
  t.teardown(() => server.close())
  const port = (server.address() as { port: number }).port
  const { out, counters, reports } = setup(t) // rejectUnauthorized: true by default
  out.beginBatch(2)
  out.onRingFrame(frame({ transport: TLS, port }) as never, bytes('INVITE'))
  out.endBatch()
  t.ok(await until(() => reports.length === 1, 2000), 'reported')
  t.match(reports[0], { worker: 2, meta: { transport: TLS, port, flags: FLAG_TRANSPORT_ERROR } })
  t.equal(counters.connConnectFailed, 1)
  // The same server, trusted: no report, the bytes arrive.
  const trusted = setup(t, { outboundTls: { ca: cert.cert } })
  let got = ''
  server.on('secureConnection', s => s.on('data', d => { got += String(d) }))
  t.ok(trusted.out.send(frame({ transport: TLS, address: '127.0.0.1', port }), bytes('hello'), false))
  t.ok(await until(() => got === 'hello'), 'delivered over a trusted TLS connection')
  t.equal(trusted.reports.length, 0)
})

t.test('a reset with frames still unwritten is reported; a reset of an idle connection is not', async t => {
  // The peer does not read: our writes fill the kernel buffers and queue in the socket.
  const p = await peer(t, s => s.pause())
  const { out, reports, table } = setup(t)
  t.ok(out.send(frame({ port: p.port }), bytes('hello'), false))
  t.ok(await until(() => p.socks.length === 1 && table.byKey(TCP, '127.0.0.1', p.port)?.established === true))
  t.ok(await until(() => table.byKey(TCP, '127.0.0.1', p.port)!.unwritten === 0), 'the first frame went out')
  const big = Buffer.alloc(256 * 1024, 0x41)
  out.beginBatch(3)
  for (let i = 0; i < 128; i++) out.onRingFrame(frame({ port: p.port }) as never, big) // 32 MiB: more than loopback buffers hold
  out.endBatch()
  const conn = table.byKey(TCP, '127.0.0.1', p.port)!
  t.ok(await until(() => conn.socket!.writableLength > 0), 'frames are queued in the socket')
  p.socks[0]!.resetAndDestroy()
  t.ok(await until(() => reports.length === 1, 3000), 'reported')
  t.match(reports[0], { worker: 3, meta: { transport: TCP, connId: conn.id, port: p.port, flags: FLAG_TRANSPORT_ERROR } })

  // Idle: everything written, then the peer resets: no frame was lost that we know of.
  const q = await peer(t)
  const idle = setup(t)
  idle.out.send(frame({ port: q.port }), bytes('x'), false)
  t.ok(await until(() => q.data[0] === 'x' && idle.table.byKey(TCP, '127.0.0.1', q.port)!.unwritten === 0))
  q.socks[0]!.resetAndDestroy()
  t.ok(await until(() => idle.table.size === 0))
  t.equal(idle.reports.length, 0)
})

t.test('a connection that cannot be opened is reported at once to the sending worker', async t => {
  const p = await peer(t)
  const { out, counters, reports, state } = setup(t, { limits: { maxConnections: 1 } })
  t.ok(out.send(frame({ port: p.port }), bytes('fills the table'), false))
  out.beginBatch(4)
  out.onRingFrame(frame({ port: p.port + 1 === 65536 ? 1 : p.port + 1 }) as never, bytes('over the limit'))
  out.onRingFrame(frame({ transport: WS, port: 8080 }) as never, bytes('WS cannot be opened'))
  out.onRingFrame(frame({ port: 0 }) as never, bytes('port 0'))
  out.endBatch()
  state.draining = true
  out.beginBatch(5)
  out.onRingFrame(frame({ port: 5090 }) as never, bytes('draining'))
  out.endBatch()
  t.same(reports.map(r => [r.worker, r.meta.transport, r.meta.connId, r.meta.flags]),
    [[4, TCP, 0, 4], [4, WS, 0, 4], [4, TCP, 0, 4], [5, TCP, 0, 4]])
  t.match(counters, { connRefused: 2, sendUnsupported: 1, sendNoConnection: 1 })
  // Ports no connection can go to: 0 fails on connect; one net.connect rejects outright (an
  // in-process handler is not limited to 16 bits) is counted and reported, never thrown at the caller.
  const free = setup(t)
  let sent = true
  t.doesNotThrow(() => { sent = free.out.send(frame({ port: 70000 }), bytes('bad port'), false) })
  t.equal(sent, false)
  t.same(free.reports.map(r => r.worker), [0], 'reported at once; in-process frames are from worker 0')
  free.out.beginBatch(6)
  free.out.onRingFrame(frame({ port: 0 }) as never, bytes('port 0'))
  free.out.endBatch()
  t.ok(await until(() => free.reports.length === 2), 'port 0: reported')
  t.equal(free.reports[1]!.worker, 6)
  t.equal(free.counters.connConnectFailed, 2)
})
