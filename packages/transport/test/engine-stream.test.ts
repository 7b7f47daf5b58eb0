// The engine's stream and datagram handling over real sockets, in-process (workers: 0) with a
// test handler: framing at every split offset, several messages per segment, keep-alives,
// the primary's own 400, and every limit with its counter.
import t from 'tap'
import { createServer, type Socket } from 'node:net'
import { Engine, createLogger, type EngineOptions } from '@sipedge/transport'
import { Client, handlerUrl, req, sleep, udpExchange, until } from './fixtures/net.js'

const quiet = createLogger({ level: 'silent' })

async function engine(t: Tap.Test, extra: Partial<EngineOptions> = {}): Promise<{ e: Engine; tcp: number; udp: number }> {
  const e = new Engine({
    listeners: [{ transport: 'udp', address: '127.0.0.1', port: 0 }, { transport: 'tcp', address: '127.0.0.1', port: 0 }],
    workers: 0, handlerUrl, logger: quiet, ...extra,
  })
  await e.start()
  t.teardown(() => e.stop())
  return { e, udp: e.listeners[0]!.port, tcp: e.listeners[1]!.port }
}
declare namespace Tap { type Test = typeof t }

t.test('TCP: a message split at every byte offset is framed and answered once', async t => {
  const { e, tcp } = await engine(t)
  const c = await Client.tcp(tcp)
  t.teardown(() => c.close())
  const msg = req({ callId: 'split', body: 'v=0\r\n' })
  for (let i = 1; i < msg.length; i++) {
    c.write(msg.slice(0, i))
    await sleep(0)
    c.write(msg.slice(i))
    await c.wait(i)
  }
  t.equal(c.msgs.length, msg.length - 1)
  t.ok(c.msgs.every(m => m.includes('Call-ID: split')))
  t.equal(e.counters.streamIn, msg.length - 1)
  t.equal(e.counters.connBadStream, 0)
})

t.test('TCP: several messages in one segment, answered in order', async t => {
  const { tcp } = await engine(t)
  const c = await Client.tcp(tcp)
  t.teardown(() => c.close())
  const ids = Array.from({ length: 20 }, (_, i) => `multi-${i}`)
  c.write(ids.map(id => req({ callId: id })).join(''))
  const got = await c.wait(20)
  t.same(got.map(m => /Call-ID: (\S+)/.exec(m)![1]), ids)
  t.ok(got.every(m => /X-Transport: 2/.test(m) && /X-Conn: [1-9]/.test(m)), 'frames carry TCP and a connId')
})

t.test('TCP: CRLFCRLF keep-alive answered with CRLF (RFC 5626)', async t => {
  const { e, tcp } = await engine(t)
  const c = await Client.tcp(tcp)
  t.teardown(() => c.close())
  c.write('\r\n\r\n')
  await c.wait(1)
  t.equal(c.msgs[0], '\r\n')
  t.equal(e.counters.keepalivePings, 1)
})

t.test('TCP: no Call-ID -> 400 from the primary; UDP: dropped and counted', async t => {
  const { e, tcp, udp } = await engine(t)
  const c = await Client.tcp(tcp)
  t.teardown(() => c.close())
  c.write(req({ callId: null }))
  const [r] = await c.wait(1)
  t.match(r, /^SIP\/2\.0 400 /)
  t.equal(e.counters.streamNoCallId, 1)
  // No answer comes (the wait is a bound, the counter is the evidence); the counter is read once
  // the engine has read the datagram: after a stall the timer can fire before the socket is read.
  t.equal(await udpExchange(udp, req({ callId: null }), '127.0.0.1', 300), null)
  t.ok(await until(() => e.counters.udpNoCallId === 1), 'dropped and counted')
  t.equal(e.counters.udpNoCallId, 1)
  t.equal(await udpExchange(udp, '\r\n\r\n', '127.0.0.1', 100), null)
  t.ok(await until(() => e.counters.keepalivePings === 1), 'keep-alive counted')
  t.equal(e.counters.keepalivePings, 1, 'a CRLF datagram is a keep-alive, not an error')
})

t.test('UDP: answered from the receiving socket; oversize dropped and counted', async t => {
  const { e, udp } = await engine(t, { limits: { maxMessageSize: 1000 } })
  const r = await udpExchange(udp, req({ callId: 'u1' }))
  t.match(r, /Call-ID: u1/)
  t.match(r, /X-Transport: 1/)
  t.equal(await udpExchange(udp, req({ callId: 'u2', body: 'x'.repeat(1200) }), '127.0.0.1', 300), null)
  t.ok(await until(() => e.counters.udpOversize === 1), 'oversize datagram read and counted')
  t.equal(e.counters.udpOversize, 1)
})

t.test('limit: message over max size closes the stream connection (connOversize)', async t => {
  const { e, tcp } = await engine(t, { limits: { maxMessageSize: 1000 } })
  const c = await Client.tcp(tcp)
  t.teardown(() => c.close())
  c.write(req({ callId: 'big', body: 'x'.repeat(5000) }))
  t.ok(await c.waitClosed(), 'closed')
  t.equal(e.counters.connOversize, 1)
  t.equal(e.table.size, 0)
})

t.test('limit: partial-message timeout closes a slow sender even while it trickles bytes', async t => {
  const { e, tcp } = await engine(t, { limits: { partialMessageTimeoutMs: 300 } })
  const c = await Client.tcp(tcp)
  t.teardown(() => c.close())
  const msg = req({ callId: 'slow' })
  let i = 0
  const started = Date.now()
  while (!c.closed && i < msg.length - 1 && Date.now() - started < 3000) { c.write(msg[i++]!); await sleep(20) }
  t.ok(await c.waitClosed(1000), 'closed before the message completed')
  // The trickle alone would complete the message after ~4 s: closing well before that is the
  // partial timeout (300 ms), with room for late timers on a loaded host.
  t.ok(Date.now() - started < 2500, `within about the timeout (${Date.now() - started} ms)`)
  t.equal(e.counters.connPartialTimeout, 1)
})

t.test('limit: idle timeout closes a silent connection', async t => {
  const { e, tcp } = await engine(t, { limits: { idleTimeoutMs: 200 } })
  const c = await Client.tcp(tcp)
  t.teardown(() => c.close())
  c.write(req({ callId: 'idle' }))
  await c.wait(1)
  t.ok(await c.waitClosed(), 'closed')
  t.equal(e.counters.connIdleClosed, 1)
})

t.test('limit: max connections refuses new ones and counts them', async t => {
  const { e, tcp } = await engine(t, { limits: { maxConnections: 2 } })
  const a = await Client.tcp(tcp)
  const b = await Client.tcp(tcp)
  const c = await Client.tcp(tcp)
  t.teardown(() => { a.close(); b.close(); c.close() })
  t.ok(await c.waitClosed(), 'third connection closed by the proxy')
  t.equal(e.counters.connRefused, 1)
  a.write(req({ callId: 'still-ok' }))
  await a.wait(1)
  t.match(a.msgs[0], /still-ok/, 'connections within the limit still work')
  a.close()
  await until(() => e.table.size === 1)
  const d = await Client.tcp(tcp)
  t.teardown(() => d.close())
  d.write(req({ callId: 'after' }))
  await d.wait(1)
  t.pass('a slot freed up is usable again')
})

t.test('FLAG_OPEN_CONNECTION: primary opens a connection, then reuses it (RFC 3261 §18.1.1)', async t => {
  const got: string[] = []
  const peers: Socket[] = []
  const server = createServer(s => { peers.push(s); s.setEncoding('latin1'); s.on('data', d => got.push(d)) })
  await new Promise<void>(r => server.listen(0, '127.0.0.1', r))
  t.teardown(() => { for (const p of peers) p.destroy(); server.close() })
  const port = (server.address() as { port: number }).port
  const { e, udp } = await engine(t)
  await udpExchange(udp, req({ callId: 'o1', extra: [`X-Send-To: ${port}`] }), '127.0.0.1', 100)
  await udpExchange(udp, req({ callId: 'o2', extra: [`X-Send-To: ${port}`] }), '127.0.0.1', 100)
  t.ok(await until(() => got.join('').includes('o2')), 'both frames arrived at the peer')
  t.match(got.join(''), /Call-ID: o1[\s\S]*Call-ID: o2/)
  t.equal(peers.length, 1, 'one connection')
  t.equal(e.counters.connOpened, 1)
  t.equal(e.counters.connReused, 1)
  // The peer answers on that connection: it reaches the handler with the connection's id.
  peers[0]!.write(req({ callId: 'back' }))
  t.ok(await until(() => got.join('').includes('Call-ID: back')), 'a request from the peer is answered on the same connection')
})

t.test('stop(): closes listeners and connections; idempotent', async t => {
  const e = new Engine({ listeners: [{ transport: 'tcp', address: '127.0.0.1', port: 0 }], workers: 0, handlerUrl, logger: quiet })
  await e.start()
  const c = await Client.tcp(e.listeners[0]!.port)
  await e.stop()
  await e.stop()
  t.ok(await c.waitClosed(), 'client connection closed')
  t.equal(e.state, 'stopped')
})

t.test('a message handed to send() as slices goes out as one message: one WebSocket message, one TCP write, one datagram', async t => {
  const { WsTestClient } = await import('./helpers/ws-client.js')
  const { e, tcp, udp } = await engine(t, {
    listeners: [{ transport: 'udp', address: '127.0.0.1', port: 0 }, { transport: 'tcp', address: '127.0.0.1', port: 0 }, { transport: 'ws', address: '127.0.0.1', port: 0 }],
  })
  const ws = await WsTestClient.connect({ host: '127.0.0.1', port: e.listeners[2]!.port })
  t.teardown(() => ws.destroy())
  ws.send(req({ callId: 'ws-split', extra: ['X-Split: 4'] }))
  const m = await ws.nextMessage()
  t.match(m.text, /^SIP\/2\.0 200 OK\r\nCall-ID: ws-split\r\n[\s\S]*\r\nContent-Length: 0\r\n\r\n$/, 'the whole response in one WebSocket message')
  const more = await ws.nextMessage(400).then(() => true, () => false)
  t.notOk(more, 'and no other message')

  const before = e.counters.streamOut
  const c = await Client.tcp(tcp)
  t.teardown(() => c.close())
  c.write(req({ callId: 'tcp-split', extra: ['X-Split: 3'] }))
  await c.wait(1)
  t.match(c.msgs[0], /^SIP\/2\.0 200 OK\r\nCall-ID: tcp-split\r\n/, 'the whole response over TCP')
  t.equal(e.counters.streamOut - before, 1, 'counted as one message out')

  const r = await udpExchange(udp, req({ callId: 'udp-split', extra: ['X-Split: 5'] }))
  t.match(r, /^SIP\/2\.0 200 OK\r\nCall-ID: udp-split\r\n[\s\S]*\r\n\r\n$/, 'one datagram with the whole response')
})
