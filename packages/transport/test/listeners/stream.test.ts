// TCP/TLS listeners and stream connections over real sockets: accepted connections enter the
// table, messages are framed to the inbound path, keep-alives answered, socket errors reported,
// closing and the connection limit.
import t, { type Test } from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { StreamListeners, ConnectionTable, Counters, DEFAULT_LIMITS, createLogger, TCP, TLS, type StreamConn, type EngineLimits } from '@sipedge/transport'
import { Client, makeCert, req, until } from '../fixtures/net.js'

const quiet = createLogger({ level: 'silent' })

function setup(t: Test, limits: Partial<EngineLimits> = {}) {
  const table = new ConnectionTable()
  const counters = new Counters()
  const state = { draining: false }
  const messages: Array<{ conn: StreamConn; text: string }> = []
  const errors: Array<{ conn: StreamConn; err: Error }> = []
  const s = new StreamListeners({
    table, counters, limits: { ...DEFAULT_LIMITS, ...limits }, log: quiet, state,
    onMessage: (conn, buf) => messages.push({ conn, text: buf.toString('latin1') }),
    onError: (conn, err) => errors.push({ conn, err }),
  })
  t.teardown(() => { s.stopTimers(); for (const c of [...table.values()]) s.destroy(c); s.closeListeners() })
  return { s, table, counters, state, messages, errors }
}

t.test('TCP: an accepted connection is in the table; messages framed to onMessage with it', async t => {
  const { s, table, counters, messages } = setup(t)
  const port = await s.listen(4, TCP, '127.0.0.1', 0)
  const c = await Client.tcp(port)
  t.teardown(() => c.close())
  c.write(req({ callId: 'one' }) + req({ callId: 'two' }).slice(0, 20))
  t.ok(await until(() => messages.length === 1))
  c.write(req({ callId: 'two' }).slice(20))
  t.ok(await until(() => messages.length === 2))
  t.match(messages[1]!.text, /Call-ID: two/)
  const conn = messages[0]!.conn
  t.equal(messages[1]!.conn, conn)
  t.match(conn, { kind: TCP, socketId: 4, address: '127.0.0.1', port: c.sock.localPort, outbound: false, established: true })
  t.equal(table.get(conn.id), conn)
  t.equal(counters.connAccepted, 1)
})

t.test('TCP: CRLFCRLF ping answered with CRLF (RFC 5626 §4.4.1)', async t => {
  const { s, counters } = setup(t)
  const c = await Client.tcp(await s.listen(0, TCP, '127.0.0.1', 0))
  t.teardown(() => c.close())
  c.write('\r\n\r\n')
  await c.wait(1)
  t.equal(c.msgs[0], '\r\n')
  t.equal(counters.keepalivePings, 1)
})

t.test('a reset connection is reported to onError and leaves the table', async t => {
  const { s, table, errors, messages, counters } = setup(t)
  const c = await Client.tcp(await s.listen(0, TCP, '127.0.0.1', 0))
  c.write(req())
  t.ok(await until(() => messages.length === 1))
  c.sock.resetAndDestroy()
  t.ok(await until(() => errors.length === 1 && table.size === 0))
  t.equal(errors[0]!.conn, messages[0]!.conn)
  t.equal((errors[0]!.err as NodeJS.ErrnoException).code, 'ECONNRESET')
  t.equal(counters.connClosed, 1)
  t.equal(counters.connConnectFailed, 0, 'an accepted connection never counts as a failed connect')
})

t.test('end() half-closes after the data; destroy() closes at once; both leave the table once', async t => {
  const { s, table, messages, counters } = setup(t)
  const port = await s.listen(0, TCP, '127.0.0.1', 0)
  const a = await Client.tcp(port)
  const b = await Client.tcp(port)
  t.teardown(() => { a.close(); b.close() })
  a.write(req({ callId: 'a' }))
  b.write(req({ callId: 'b' }))
  t.ok(await until(() => messages.length === 2))
  const ca = messages.find(m => m.text.includes('Call-ID: a'))!.conn
  const cb = messages.find(m => m.text.includes('Call-ID: b'))!.conn
  ca.writeOwn(Buffer.from('last words\r\n'))
  s.end(ca)
  s.destroy(cb)
  t.ok(await a.waitClosed())
  t.ok(await b.waitClosed())
  t.equal(a.buf, 'last words\r\n', 'end() flushed what was written')
  t.ok(await until(() => table.size === 0))
  s.destroy(cb)
  t.equal(counters.connClosed, 2)
})

t.test('limits: max connections and draining refuse; oversize closes', async t => {
  const { s, counters, state, table } = setup(t, { maxConnections: 1, maxMessageSize: 400 })
  const port = await s.listen(0, TCP, '127.0.0.1', 0)
  const a = await Client.tcp(port)
  t.ok(await until(() => table.size === 1))
  const b = await Client.tcp(port)
  t.teardown(() => { a.close(); b.close() })
  t.ok(await b.waitClosed(), 'over the limit')
  t.equal(counters.connRefused, 1)
  a.write(req({ body: 'x'.repeat(500) }))
  t.ok(await a.waitClosed(), 'oversize closes the connection')
  t.equal(counters.connOversize, 1)
  state.draining = true
  const c = await Client.tcp(port)
  t.teardown(() => c.close())
  t.ok(await c.waitClosed(), 'draining')
  t.equal(counters.connRefused, 2)
})

t.test('TLS: accepted after the handshake; options required', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'sipedge-stream-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const cert = makeCert(dir, 's', 'stream.example.test')
  const { s, messages } = setup(t)
  await t.rejects(s.listen(0, TLS, '127.0.0.1', 0), { code: 'ERR_TRANSPORT_OPTIONS' })
  const port = await s.listen(1, TLS, '127.0.0.1', 0, { certificates: [cert], watch: false })
  const c = await Client.tls(port)
  t.teardown(() => c.close())
  c.write(req({ callId: 'tls' }))
  t.ok(await until(() => messages.length === 1))
  t.match(messages[0]!.conn, { kind: TLS, socketId: 1 })
  t.equal(s.reloadTls(), true)
})
