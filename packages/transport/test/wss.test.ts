// WSS listener: TLS via uWS SSLApp with a throw-away self-signed P-256 certificate.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import type { Test } from 'tap'
import { startWsListener } from '../dist/ws.js'
import type { WsListener, WsListenerOptions } from '../dist/ws.js'
import { HandshakeRefused, RecordingSink, WsTestClient, sipRegister } from './helpers/ws-client.js'

const HOST = '127.0.0.1'
const dir = mkdtempSync(join(tmpdir(), 'sipedge-wss-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const key = join(dir, 'key.pem')
const cert = join(dir, 'cert.pem')
execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
  '-keyout', key, '-out', cert, '-subj', '/CN=localhost', '-days', '1'], { stdio: 'ignore' })

function opts(sink: RecordingSink, extra: Partial<WsListenerOptions> = {}): WsListenerOptions {
  return { proto: 'wss', address: HOST, port: 0, tls: { cert, key }, maxMessageSize: 64 * 1024, idleTimeoutMs: 0, sink, ...extra }
}

async function listen(tt: Test, sink: RecordingSink): Promise<WsListener> {
  const l = await startWsListener(opts(sink))
  tt.teardown(() => l.close())
  return l
}

t.test('WSS carries SIP both ways', async tt => {
  const sink = new RecordingSink()
  const l = await listen(tt, sink)
  tt.equal(l.proto, 'wss')
  // Verify the chain properly this time: the client trusts exactly our certificate.
  const c = await WsTestClient.connect({ host: HOST, port: l.port, tls: true, tlsOptions: { ca: [readFileSync(cert)], rejectUnauthorized: true } })
  tt.teardown(() => c.destroy())
  tt.equal(c.protocol, 'sip')
  await sink.waitFor(() => sink.count('open') === 1, 'onOpen')
  tt.match(sink.events[0], { type: 'open', transport: 'wss', remoteAddress: '127.0.0.1' })
  tt.equal(sink.conns.get(1)?.transport, 'wss')
  for (let i = 1; i <= 20; i++) {
    c.send(sipRegister(i))
    tt.equal((await c.nextMessage()).text, sipRegister(i), `message ${i} echoed`)
  }
  // A message bigger than one TLS record (16 KiB) still arrives whole.
  const big = `${sipRegister(99).slice(0, -4)}\r\nX-Pad: ${'p'.repeat(40_000)}\r\n\r\n`
  c.send(big)
  tt.equal((await c.nextMessage()).text, big)
  tt.equal(sink.count('message'), 21)
  const conn = sink.conns.get(1)!
  conn.close()
  const info = await c.waitClosed()
  tt.equal(info.code, 1000)
  tt.equal(conn.send(Buffer.from('x')), false, 'send after close returns false')
  tt.equal(sink.count('close', 1), 1)
})

t.test('WSS handshake without sip is refused', async tt => {
  const sink = new RecordingSink()
  const l = await listen(tt, sink)
  try {
    await WsTestClient.connect({ host: HOST, port: l.port, tls: true, protocols: ['chat'] })
    tt.fail('accepted')
  } catch (err) {
    tt.ok(err instanceof HandshakeRefused)
    tt.equal((err as HandshakeRefused).statusCode, 400)
  }
  tt.equal(sink.count('open'), 0)
})

t.test('many WSS connections open and close cleanly', async tt => {
  const sink = new RecordingSink()
  const l = await listen(tt, sink)
  const N = 50
  const clients = await Promise.all(Array.from({ length: N }, () => WsTestClient.connect({ host: HOST, port: l.port, tls: true })))
  tt.teardown(() => { for (const c of clients) c.destroy() })
  await Promise.all(clients.map(async (c, i) => {
    c.send(sipRegister(i))
    await c.nextMessage()
  }))
  await sink.waitFor(() => sink.count('open') === N, 'opens')
  l.close()
  tt.equal(sink.count('close'), N, 'listener close() closed all of them')
  const infos = await Promise.all(clients.map(c => c.waitClosed()))
  tt.ok(infos.every(i => i.code === 1001))
  tt.equal(l.stats.connections, 0)
})

t.test('TLS configuration errors', async tt => {
  const sink = new RecordingSink()
  await tt.rejects(startWsListener(opts(sink, { tls: { cert: join(dir, 'missing.pem'), key } })), { code: 'ERR_WS_TLS_CONFIG' },
    'missing certificate file')
  const junk = join(dir, 'junk.pem')
  writeFileSync(junk, 'not a certificate\n')
  await tt.rejects(startWsListener(opts(sink, { tls: { cert: junk, key } })), { code: 'ERR_WS_TLS_CONFIG' }, 'unparsable certificate')
  await tt.rejects(startWsListener(opts(sink, { tls: { cert: key, key: cert } })), { code: 'ERR_WS_TLS_CONFIG' }, 'cert and key swapped')
})
