// WS listener, the engine's side: a WebSocket connection enters the connection table, each
// message goes to the inbound path whole (RFC 7118 §5), close leaves the table; refusals.
import t, { type Test } from 'tap'
import { WebSocketListeners, StreamListeners, ConnectionTable, Counters, DEFAULT_LIMITS, createLogger, WS, type StreamConn, type EngineLimits } from '@sipedge/transport'
import { WsTestClient } from '../helpers/ws-client.js'
import { req, until } from '../fixtures/net.js'

const quiet = createLogger({ level: 'silent' })

function setup(t: Test, limits: Partial<EngineLimits> = {}) {
  const table = new ConnectionTable()
  const counters = new Counters()
  const state = { draining: false }
  const messages: Array<{ conn: StreamConn; text: string }> = []
  const common = { table, counters, limits: { ...DEFAULT_LIMITS, ...limits }, log: quiet, state }
  const streams = new StreamListeners({ ...common, onMessage: () => {}, onError: () => {} })
  const w = new WebSocketListeners({
    ...common,
    onMessage: (conn, buf) => messages.push({ conn, text: buf.toString('latin1') }),
    onClosed: conn => streams.closed(conn),
  })
  t.teardown(() => w.close())
  return { w, streams, table, counters, state, messages }
}

t.test('a WS connection is in the table; each message goes in whole; close leaves the table', async t => {
  const { w, table, counters, messages } = setup(t)
  const port = await w.listen(5, WS, '127.0.0.1', 0)
  const c = await WsTestClient.connect({ host: '127.0.0.1', port })
  t.teardown(() => c.destroy())
  t.ok(await until(() => table.size === 1))
  c.send(req({ callId: 'ws-1' }))
  t.ok(await until(() => messages.length === 1))
  t.match(messages[0]!.text, /Call-ID: ws-1/)
  t.match(messages[0]!.conn, { kind: WS, socketId: 5, address: '127.0.0.1', outbound: false })
  t.notOk(messages[0]!.conn.ws === null, 'the connection sends through uWS')
  t.equal(counters.connAccepted, 1)
  c.destroy()
  t.ok(await until(() => table.size === 0), 'closed')
  t.equal(counters.connClosed, 1)
})

t.test('refused over the connection limit and while draining', async t => {
  const { w, table, counters, state } = setup(t, { maxConnections: 1 })
  const port = await w.listen(0, WS, '127.0.0.1', 0)
  const a = await WsTestClient.connect({ host: '127.0.0.1', port })
  t.teardown(() => a.destroy())
  t.ok(await until(() => table.size === 1))
  const b = await WsTestClient.connect({ host: '127.0.0.1', port })
  t.teardown(() => b.destroy())
  await b.waitClosed()
  t.equal(counters.connRefused, 1)
  a.destroy()
  t.ok(await until(() => table.size === 0))
  state.draining = true
  const c = await WsTestClient.connect({ host: '127.0.0.1', port })
  t.teardown(() => c.destroy())
  await c.waitClosed()
  t.equal(counters.connRefused, 2)
})

t.test('options: a WSS listener needs a certificate; only WS kinds', async t => {
  const { w } = setup(t)
  await t.rejects(w.listen(0, 5, '127.0.0.1', 0), { code: 'ERR_TRANSPORT_OPTIONS' })
  await t.rejects(w.listen(0, 2, '127.0.0.1', 0), { code: 'ERR_TRANSPORT_OPTIONS' })
})
