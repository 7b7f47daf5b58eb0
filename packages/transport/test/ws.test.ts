// WS listener (RFC 7118) over real sockets on 127.0.0.1 / ::1, with a test client speaking raw RFC 6455.
import { once } from 'node:events'
import { connect as netConnect } from 'node:net'
import t from 'tap'
import type { Test } from 'tap'
import {
  formatRemoteAddress,
  normaliseAddressText,
  offersSipSubprotocol,
  startWsListener,
  uwsIdleTimeoutSeconds,
} from '../dist/ws.js'
import type { WsListener, WsListenerOptions } from '../dist/ws.js'
import { HandshakeRefused, RecordingSink, WsTestClient, sipRegister } from './helpers/ws-client.js'

const HOST = '127.0.0.1'

function opts(sink: RecordingSink, extra: Partial<WsListenerOptions> = {}): WsListenerOptions {
  return { proto: 'ws', address: HOST, port: 0, maxMessageSize: 64 * 1024, idleTimeoutMs: 0, sink, ...extra }
}

/** Starts a listener that the test's teardown closes. */
async function listen(tt: Test, sink: RecordingSink, extra: Partial<WsListenerOptions> = {}): Promise<WsListener> {
  const l = await startWsListener(opts(sink, extra))
  tt.teardown(() => l.close())
  return l
}

async function client(tt: Test, l: WsListener, extra: Partial<Parameters<typeof WsTestClient.connect>[0]> = {}): Promise<WsTestClient> {
  const c = await WsTestClient.connect({ host: HOST, port: l.port, ...extra })
  tt.teardown(() => c.destroy())
  return c
}

async function refusal(p: Promise<unknown>): Promise<HandshakeRefused> {
  try {
    await p
  } catch (err) {
    if (err instanceof HandshakeRefused) return err
    throw err
  }
  throw new Error('handshake unexpectedly accepted')
}

t.test('pure helpers', async tt => {
  tt.equal(uwsIdleTimeoutSeconds(0), 0, '0 disables')
  tt.equal(uwsIdleTimeoutSeconds(-5), 0)
  tt.equal(uwsIdleTimeoutSeconds(1), 8, 'below the uWS minimum -> 8 s')
  tt.equal(uwsIdleTimeoutSeconds(8000), 8)
  tt.equal(uwsIdleTimeoutSeconds(8001), 12, 'rounded up to a 4 s tick')
  tt.equal(uwsIdleTimeoutSeconds(30_000), 32)
  tt.equal(uwsIdleTimeoutSeconds(3_600_000), 960, 'clamped to the uWS maximum')

  tt.equal(formatRemoteAddress(new Uint8Array([127, 0, 0, 1])), '127.0.0.1')
  const v6 = new Uint8Array(16)
  v6[15] = 1
  tt.equal(formatRemoteAddress(v6), '::1')
  const mapped = new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 33])
  tt.equal(formatRemoteAddress(mapped.buffer), '192.0.2.33', 'IPv4-mapped IPv6 -> IPv4')
  const doc = Buffer.from('20010db8000000000001000000000001', 'hex')
  tt.equal(formatRemoteAddress(new Uint8Array(doc)), '2001:db8::1:0:0:1', 'RFC 5952: first longest zero run')
  const full = Buffer.from('20010db8000100020003000400050006', 'hex')
  tt.equal(formatRemoteAddress(new Uint8Array(full)), '2001:db8:1:2:3:4:5:6')
  const one = Buffer.from('20010db8000000010001000100010001', 'hex')
  tt.equal(formatRemoteAddress(new Uint8Array(one)), '2001:db8:0:1:1:1:1:1', 'a single zero group is not compressed')
  tt.equal(formatRemoteAddress(new Uint8Array(3)), '')

  tt.equal(normaliseAddressText('::ffff:10.1.2.3'), '10.1.2.3')
  tt.equal(normaliseAddressText('::FFFF:a00:1'), '::ffff:a00:1')
  tt.equal(normaliseAddressText('FE80::1'), 'fe80::1')

  tt.ok(offersSipSubprotocol('sip'))
  tt.ok(offersSipSubprotocol('foo, sip'))
  tt.ok(offersSipSubprotocol('sip,foo'))
  tt.notOk(offersSipSubprotocol(''))
  tt.notOk(offersSipSubprotocol('sips'))
  tt.notOk(offersSipSubprotocol('SIP'), 'subprotocol tokens are case-sensitive')
})

t.test('option validation', async tt => {
  const sink = new RecordingSink()
  await tt.rejects(startWsListener({ ...opts(sink), proto: 'wss' }), { code: 'ERR_WS_OPTIONS' }, 'wss without tls')
  await tt.rejects(startWsListener({ ...opts(sink), port: 70000 }), { code: 'ERR_WS_OPTIONS' })
  await tt.rejects(startWsListener({ ...opts(sink), maxMessageSize: 0 }), { code: 'ERR_WS_OPTIONS' })
  await tt.rejects(startWsListener({ ...opts(sink), path: 'ws' }), { code: 'ERR_WS_OPTIONS' })
})

t.test('SIP both ways: text and binary, sink callbacks, remote address', async tt => {
  const sink = new RecordingSink()
  const l = await listen(tt, sink)
  tt.ok(l.port > 0 && l.port < 65536, `port 0 reads back the real port (${l.port})`)
  tt.equal(l.proto, 'ws')

  const c = await client(tt, l)
  tt.equal(c.protocol, 'sip', 'server selected the sip subprotocol')
  await sink.waitFor(() => sink.count('open') === 1, 'onOpen')
  const open = sink.events[0]!
  tt.match(open, { type: 'open', connId: 1, remoteAddress: '127.0.0.1', transport: 'ws' })
  tt.equal(open.type === 'open' && open.remotePort, 0, 'uWS 20.30 cannot report the remote port: 0')

  const reg = sipRegister(1)
  c.send(reg)
  const echoed = await c.nextMessage()
  tt.equal(echoed.text, reg, 'text message echoed intact')
  tt.equal(echoed.binary, false, 'answered in a text frame because the client used text')
  const msg = sink.events.find(e => e.type === 'message')
  tt.ok(msg && msg.type === 'message' && msg.connId === 1 && msg.data.toString() === reg, 'sink got the whole message')

  // Binary frame: the server answers in binary.
  const bin = Buffer.from(sipRegister(2), 'latin1')
  c.send(bin, true)
  const echoedBin = await c.nextMessage()
  tt.equal(echoedBin.binary, true)
  tt.same(echoedBin.data, bin)

  // A client message in three fragments reaches the sink as one message (RFC 7118 §5).
  const reg3 = sipRegister(3)
  c.sendFragmented(reg3, 3, false)
  tt.equal((await c.nextMessage()).text, reg3)
  tt.equal(sink.count('message'), 3, 'one onMessage per WebSocket message')

  // The data given to the sink is a private copy: still intact after later traffic.
  const first = sink.events.find(e => e.type === 'message')
  tt.equal(first?.type === 'message' && first.data.toString(), reg, 'copied out of the uWS buffer')

  // Server -> client: a Buffer[] is one WS message; pooled (offset) Buffers are sent correctly.
  const conn = sink.conns.get(1)!
  tt.equal(conn.send([Buffer.from('SIP/2.0 200 OK\r\n'), Buffer.from('Content-Length: 0\r\n\r\n')]), true)
  tt.equal((await c.nextMessage()).text, 'SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n')
  tt.equal(conn.send(Buffer.from('OPTIONS sip:x SIP/2.0\r\n\r\n')), true)
  tt.equal((await c.nextMessage()).text, 'OPTIONS sip:x SIP/2.0\r\n\r\n')
  // Bytes that are not UTF-8 never go in a text frame (RFC 6455 §8.1).
  const latin = Buffer.from([0x53, 0x49, 0x50, 0xe9, 0x0d, 0x0a])
  tt.equal(conn.send(latin), true)
  const m = await c.nextMessage()
  tt.equal(m.binary, true, 'non-UTF-8 payload sent as binary')
  tt.same(m.data, latin)

  // RFC 5626 keep-alive: CRLFCRLF is answered with CRLF and not handed to the sink.
  c.send('\r\n\r\n')
  tt.equal((await c.nextMessage()).text, '\r\n')
  tt.equal(sink.count('message'), 3, 'keep-alive not passed on')
  tt.equal(l.stats.keepalives, 1)

  tt.equal(c.errors.length, 0, 'no protocol violations from the server')
  await c.close()
  await sink.waitFor(() => sink.count('close', 1) === 1, 'onClose')
  tt.equal(conn.closed, true)
  tt.equal(conn.send(Buffer.from('late')), false, 'send after close returns false')
  conn.close()
  tt.match(l.stats, { connections: 0, opened: 1, closed: 1, messagesIn: 3, messagesOut: 6 })
})

t.test('handshake without the sip subprotocol is refused', async tt => {
  const sink = new RecordingSink()
  const l = await listen(tt, sink)
  const none = await refusal(WsTestClient.connect({ host: HOST, port: l.port, protocols: [] }))
  tt.equal(none.statusCode, 400, 'no subprotocol: 400')
  const other = await refusal(WsTestClient.connect({ host: HOST, port: l.port, protocols: ['chat', 'sips'] }))
  tt.equal(other.statusCode, 400, 'other subprotocols only: 400')
  const version = await refusal(WsTestClient.connect({ host: HOST, port: l.port, version: '8' }))
  tt.equal(version.statusCode, 426, 'unsupported WebSocket version: 426')
  tt.equal(version.headers['sec-websocket-version'], '13')

  const c = await client(tt, l, { protocols: ['chat', 'sip'] })
  tt.equal(c.protocol, 'sip', 'sip picked from a list')
  const split = await client(tt, l, { protocols: ['chat'], extraHeaders: { 'Sec-WebSocket-Protocol': 'sip' } })
  tt.equal(split.protocol, 'sip', 'sip found in a second Sec-WebSocket-Protocol header line')

  // Plain HTTP on the WebSocket port.
  const s = netConnect({ host: HOST, port: l.port })
  tt.teardown(() => s.destroy())
  await once(s, 'connect')
  s.write(`GET / HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`)
  const [data] = (await once(s, 'data')) as [Buffer]
  tt.match(data.toString('latin1'), /^HTTP\/1\.1 426 /, 'plain HTTP: 426 Upgrade Required')

  tt.equal(sink.count('open'), 2, 'refused handshakes never reach the sink')
  tt.equal(l.stats.rejected, 4)
})

t.test('path option', async tt => {
  const sink = new RecordingSink()
  const l = await listen(tt, sink, { path: '/sip' })
  const wrong = await refusal(WsTestClient.connect({ host: HOST, port: l.port, path: '/other' }))
  tt.equal(wrong.statusCode, 404)
  const c = await client(tt, l, { path: '/sip' })
  c.send(sipRegister(1))
  tt.equal((await c.nextMessage()).text, sipRegister(1))
})

t.test('a message larger than maxMessageSize closes the connection', async tt => {
  const sink = new RecordingSink()
  const l = await listen(tt, sink, { maxMessageSize: 1024 })
  const c = await client(tt, l)
  c.send('x'.repeat(1024))
  tt.equal((await c.nextMessage()).data.length, 1024, 'exactly maxMessageSize passes')
  c.send('y'.repeat(1025))
  const info = await c.waitClosed()
  tt.pass(`closed (code ${info.code})`)
  await sink.waitFor(() => sink.count('close') === 1, 'onClose')
  tt.equal(sink.count('message'), 1, 'the oversize message never reached the sink')
  // Fragments add up: a fragmented message over the limit is refused too.
  const c2 = await client(tt, l)
  c2.sendFragmented('z'.repeat(3000), 4)
  await c2.waitClosed()
  await sink.waitFor(() => sink.count('close') === 2, 'onClose for the fragmented one')
})

t.test('connection closed by the server', async tt => {
  const sink = new RecordingSink()
  const l = await listen(tt, sink)
  const c = await client(tt, l)
  await sink.waitFor(() => sink.count('open') === 1, 'onOpen')
  const conn = sink.conns.get(1)!
  conn.close()
  tt.equal(sink.count('close', 1), 1, 'onClose ran synchronously inside close()')
  tt.equal(conn.closed, true)
  tt.equal(conn.send(Buffer.from(sipRegister(1))), false, 'send after close returns false')
  conn.close()
  tt.equal(sink.count('close', 1), 1, 'close() is idempotent, onClose once')
  const info = await c.waitClosed()
  tt.equal(info.closeFrameReceived, true)
  tt.equal(info.code, 1000)
  tt.equal(l.stats.connections, 0)
})

t.test('peer vanishes: onClose once, send afterwards is harmless', async tt => {
  const sink = new RecordingSink()
  const l = await listen(tt, sink)
  const c = await client(tt, l)
  await sink.waitFor(() => sink.count('open') === 1, 'onOpen')
  const conn = sink.conns.get(1)!
  c.destroy()
  await sink.waitFor(() => sink.count('close') === 1, 'onClose')
  for (let i = 0; i < 10; i++) tt.equal(conn.send(Buffer.from('x')), false)
  conn.close()
  tt.equal(sink.count('close'), 1)
  tt.equal(l.stats.connections, 0)
})

t.test('closing from inside onOpen', async tt => {
  const sink = new RecordingSink()
  sink.onOpenHook = conn => conn.close()
  const l = await listen(tt, sink)
  const c = await client(tt, l)
  await c.waitClosed()
  await sink.waitFor(() => sink.count('close') === 1, 'onClose')
  tt.same(sink.events.map(e => `${e.type}:${e.connId}`), ['open:1', 'close:1'], 'onClose gets the id onOpen returned')
  tt.equal(l.stats.connections, 0)
})

t.test('200 connections open, talk and close cleanly', async tt => {
  const sink = new RecordingSink()
  const l = await listen(tt, sink)
  const N = 200
  const clients = await Promise.all(Array.from({ length: N }, () => client(tt, l)))
  await sink.waitFor(() => sink.count('open') === N, `${N} opens`)
  tt.equal(l.stats.connections, N)
  const replies = await Promise.all(clients.map(async (c, i) => {
    c.send(sipRegister(i + 1))
    return (await c.nextMessage()).text === sipRegister(i + 1)
  }))
  tt.equal(replies.filter(Boolean).length, N, 'every client got its own message back')
  tt.equal(new Set(sink.events.filter(e => e.type === 'open').map(e => e.connId)).size, N, 'distinct connIds')
  // Half close from the client side, half from the server side.
  const closing: Array<Promise<unknown>> = []
  for (let i = 0; i < N; i++) {
    if (i % 2 === 0) closing.push(clients[i]!.close())
    else {
      sink.conns.get(i + 1)?.close()
      closing.push(clients[i]!.waitClosed())
    }
  }
  await Promise.all(closing)
  await sink.waitFor(() => sink.count('close') === N, `${N} closes`)
  tt.equal(l.stats.connections, 0)
  tt.equal(sink.conns.size, 0)
  tt.match(l.stats, { opened: N, closed: N, messagesIn: N, messagesOut: N })
})

t.test('listener close() closes every connection and stops listening', async tt => {
  const sink = new RecordingSink()
  const l = await startWsListener(opts(sink))
  const clients = await Promise.all(Array.from({ length: 5 }, () => WsTestClient.connect({ host: HOST, port: l.port })))
  tt.teardown(() => { for (const c of clients) c.destroy() })
  await sink.waitFor(() => sink.count('open') === 5, 'opens')
  const conns = [...sink.conns.values()]
  l.close()
  tt.equal(sink.count('close'), 5, 'onClose for each, synchronously')
  l.close()
  const infos = await Promise.all(clients.map(c => c.waitClosed()))
  tt.ok(infos.every(i => i.code === 1001), 'clients see 1001 going away')
  tt.ok(conns.every(c => c.closed && !c.send(Buffer.from('x'))), 'send after listener close returns false')
  const s = netConnect({ host: HOST, port: l.port })
  const [err] = (await once(s, 'error')) as [NodeJS.ErrnoException]
  tt.equal(err.code, 'ECONNREFUSED', 'no longer listening')
})

t.test('port already in use', async tt => {
  const sink = new RecordingSink()
  const l = await listen(tt, sink)
  await tt.rejects(startWsListener(opts(sink, { port: l.port })), { code: 'ERR_WS_LISTEN' })
})

t.test('IPv6 ::1', async tt => {
  const probe = netConnect({ host: '::1', port: 1 })
  const [err] = (await once(probe, 'error')) as [NodeJS.ErrnoException]
  if (err.code === 'EADDRNOTAVAIL' || err.code === 'ENETUNREACH') {
    tt.skip('no IPv6 loopback here', () => {})
    return
  }
  const sink = new RecordingSink()
  const l = await listen(tt, sink, { address: '::1' })
  const c = await WsTestClient.connect({ host: '::1', port: l.port })
  tt.teardown(() => c.destroy())
  c.send(sipRegister(1))
  tt.equal((await c.nextMessage()).text, sipRegister(1))
  tt.match(sink.events[0], { type: 'open', remoteAddress: '::1' }, 'IPv6 remote address in RFC 5952 form')
})

t.test('slow reader: messages over maxBackpressure are dropped and counted', async tt => {
  const sink = new RecordingSink()
  const l = await listen(tt, sink, { maxBackpressure: 64 * 1024 })
  const c = await client(tt, l, { timeoutMs: 10_000 })
  await sink.waitFor(() => sink.count('open') === 1, 'onOpen')
  const conn = sink.conns.get(1)!
  c.pauseReading()
  const chunk = Buffer.alloc(4096, 0x61)
  let sent = 0
  let dropped = 0
  // Bounded: the kernel buffers a few MB on loopback before uWS has to buffer itself.
  for (let i = 0; i < 40_000 && dropped < 10; i++) {
    if (conn.send(chunk)) sent++
    else dropped++
  }
  tt.ok(dropped >= 10, `send() returned false once the peer fell behind (${sent} sent first)`)
  tt.equal(l.stats.dropped, dropped, 'drops counted')
  tt.equal(conn.closed, false, 'a slow peer is not disconnected for it')
  c.resumeReading()
  // Everything that was accepted arrives; then the connection is usable again.
  for (let i = 0; i < sent; i++) await c.nextMessage()
  tt.equal(conn.send(Buffer.from(sipRegister(9))), true, 'sending works again once drained')
  tt.equal((await c.nextMessage()).text, sipRegister(9))
})
