// NAT keep-alives of stream connections in the primary (docs/nat.md) over real TCP connections on
// 127.0.0.1, the wheel driven by hand: a FLAG_KEEPALIVE frame puts a connection on the wheel
// (only its own peer's: ids are reused), pings are the RFC 5626 double CRLF, a pong (or any
// traffic) answers, `failuresRemove` unanswered pings close the connection and report
// FLAG_TRANSPORT_ERROR | FLAG_KEEPALIVE to every worker that asked. Phases are spread over the
// interval. And a frame for a connection that is gone (no FLAG_OPEN_CONNECTION) is reported to
// its sender at once.
import t, { type Test } from 'tap'
import { createServer, connect, type Socket } from 'node:net'
import {
  Outbound, UdpListeners, StreamListeners, StreamKeepalive, ConnectionTable, Counters, DEFAULT_LIMITS, createLogger, KEEPALIVE_TICK_MS,
  TCP, FLAG_KEEPALIVE, FLAG_TRANSPORT_ERROR, type FrameMeta, type StreamConn,
} from '@sipedge/transport'
import { until } from './fixtures/net.js'

const quiet = createLogger({ level: 'silent' })

async function setup(t: Test, intervalMs = 1000, failuresRemove = 2) {
  const table = new ConnectionTable()
  const counters = new Counters()
  const state = { draining: false }
  const reports: Array<{ worker: number; meta: FrameMeta }> = []
  const common = { table, counters, limits: { ...DEFAULT_LIMITS }, log: quiet, state }
  let clock = 0
  let out: Outbound | null = null
  // eslint-disable-next-line prefer-const
  let streams: StreamListeners
  const ka = new StreamKeepalive({
    table, manual: true, now: () => clock,
    report: (worker, meta) => { reports.push({ worker, meta: { ...meta } }); return true },
    destroy: conn => streams.destroy(conn),
  })
  ka.configure({ intervalMs, failuresRemove })
  streams = new StreamListeners({ ...common, onMessage: () => {}, onError: conn => out!.connectionFailed(conn), onAlive: c => ka.answered(c) })
  out = new Outbound({ ...common, udp: new UdpListeners(quiet, () => {}), streams, keepalive: ka })
  out.target = { deliver: () => true, transportError: (worker, meta) => { reports.push({ worker, meta: { ...meta } }); return true } }
  const port = await streams.listen(0, TCP, '127.0.0.1', 0)
  t.teardown(() => { ka.close(); for (const c of [...table.values()]) streams.destroy(c); streams.closeListeners() })
  /** A client connection; `data` collects what the primary wrote to it. */
  const client = async (): Promise<{ sock: Socket; data: string[]; conn: StreamConn }> => {
    const before = new Set([...table.values()].map(c => c.id))
    const sock = connect({ port, host: '127.0.0.1' })
    await new Promise<void>(r => sock.once('connect', () => r()))
    const data: string[] = []
    sock.setEncoding('latin1')
    sock.on('data', d => data.push(d as unknown as string))
    sock.on('error', () => {})
    t.teardown(() => sock.destroy())
    await until(() => [...table.values()].some(c => !before.has(c.id)))
    return { sock, data, conn: [...table.values()].find(c => !before.has(c.id))! }
  }
  const watchFrame = (c: StreamConn, over: Partial<FrameMeta> = {}): FrameMeta =>
    ({ transport: TCP, socketId: 0, connId: c.id, family: 4, address: c.address, port: c.port, recvTime: 0, flags: FLAG_KEEPALIVE, ...over })
  const advance = (ms: number): void => { for (let i = 0; i < ms / KEEPALIVE_TICK_MS; i++) { clock += KEEPALIVE_TICK_MS; ka.tick(clock) } }
  return { out, ka, table, counters, reports, client, watchFrame, advance }
}

t.test('pinged once per interval with a double CRLF; a pong keeps it; silence closes it and tells every worker that asked', async t => {
  const s = await setup(t, 1000, 2)
  const a = await s.client()
  const b = await s.client()
  s.out.beginBatch(1)
  t.ok(s.out.send(s.watchFrame(a.conn), Buffer.alloc(0), false), 'watched')
  s.out.endBatch()
  s.out.beginBatch(0)
  t.ok(s.out.send(s.watchFrame(b.conn), Buffer.alloc(0), false))
  t.ok(s.out.send(s.watchFrame(b.conn), Buffer.alloc(0), false), 'twice is once')
  s.out.endBatch()
  s.out.beginBatch(1)
  s.out.send(s.watchFrame(b.conn), Buffer.alloc(0), false) // a second worker asks for b too
  s.out.endBatch()
  t.notOk(s.out.send(s.watchFrame(a.conn, { port: 1 }), Buffer.alloc(0), false), 'an id with another peer is not watched')
  t.equal(s.counters.streamOut, 0, 'a watch frame writes nothing')
  t.equal(s.ka.stats().watched, 2)

  s.advance(1000)
  await until(() => a.data.join('') === '\r\n\r\n' && b.data.join('') === '\r\n\r\n')
  t.pass('each got one RFC 5626 ping in the first interval')
  a.sock.write('\r\n') // a's pong; b stays silent
  await until(() => s.ka.stats().answered[1] === 1)
  s.advance(1000)
  await until(() => a.data.join('') === '\r\n\r\n\r\n\r\n')
  t.equal(s.ka.stats().failed[1], 1, "b's first ping failed")
  a.sock.write('OPTIONS sip:x SIP/2.0\r\n') // any traffic answers too (the primary sees bytes)
  await until(() => s.ka.stats().answered[1] === 2)
  s.advance(1000)
  await until(() => b.sock.destroyed || b.sock.readyState === 'closed' || s.reports.length > 0)
  const rep = s.reports.filter(r => (r.meta.flags & FLAG_KEEPALIVE) !== 0)
  t.same(rep.map(r => r.worker).sort(), [0, 1], 'both workers that asked for b are told')
  t.ok(rep.every(r => r.meta.connId === b.conn.id && (r.meta.flags & FLAG_TRANSPORT_ERROR) !== 0), 'TRANSPORT_ERROR | KEEPALIVE for b')
  await until(() => b.conn.closed)
  t.ok(b.conn.closed, 'b is closed')
  t.notOk(a.conn.closed, 'a answered and stays')
  t.same(s.ka.stats().closed, 1)
  t.equal(s.ka.stats().watched, 1)
  const st = s.ka.stats()
  t.equal(st.sent[1], 5, 'pings counted on tcp (a: 3, b: 2)')
  t.ok(st.seconds[1]! > 0, 'and their cost')
})

t.test('phases: many connections are spread evenly over the interval', async t => {
  const s = await setup(t, 2000, 3)
  const clients = []
  for (let i = 0; i < 12; i++) clients.push(await s.client())
  for (const c of clients) s.out.send(s.watchFrame(c.conn), Buffer.alloc(0), false)
  const perTick: number[] = []
  for (let i = 0; i < 20; i++) {
    const before = s.ka.stats().sent[1]!
    s.advance(KEEPALIVE_TICK_MS)
    perTick.push(s.ka.stats().sent[1]! - before)
  }
  t.equal(perTick.reduce((a, b) => a + b, 0), 12, 'each pinged once per interval')
  t.ok(Math.max(...perTick) <= 2, `at most 2 in one 100 ms slot (${perTick.join(' ')})`)
  const perSecond = [perTick.slice(0, 10).reduce((a, b) => a + b, 0), perTick.slice(10).reduce((a, b) => a + b, 0)]
  t.ok(Math.abs(perSecond[0]! - perSecond[1]!) <= 2, `the same in each second (${perSecond.join(', ')})`)
})

t.test('a frame for a connection that is gone is reported to its sender at once (no new connection)', async t => {
  const s = await setup(t)
  const a = await s.client()
  const id = a.conn.id
  const port = a.conn.port
  a.sock.destroy()
  await until(() => s.table.get(id) === undefined)
  s.out.beginBatch(1)
  t.notOk(s.out.send({ transport: TCP, socketId: 0, connId: id, family: 4, address: '127.0.0.1', port, recvTime: 0, flags: 0 }, Buffer.from('INVITE'), false))
  s.out.endBatch()
  t.equal(s.counters.connOpened, 0, 'no connection opened towards it')
  t.same(s.reports.map(r => [r.worker, r.meta.connId, r.meta.flags]), [[1, id, FLAG_TRANSPORT_ERROR]])
})
