// RFC 3261 §17.1.4 over real sockets: when the primary cannot deliver a worker's frame over a
// connection it opened for it (TCP port closed, TLS handshake failed), the handler that sent it
// hears so at once through onTransportError, well before any SIP timer. With worker threads
// (the report travels on the worker's inbound ring with FLAG_TRANSPORT_ERROR) and in-process.
import t from 'tap'
import { createServer } from 'node:net'
import { createServer as createTlsServer } from 'node:tls'
import { createSocket } from 'node:dgram'
import { readFileSync } from 'node:fs'
import { Engine, createLogger } from '@sipedge/transport'
import { workerEntryUrl } from '@sipedge/workers'
import { sipRequest, uniqueCallId, parseResponse, tempDir, makeCert, type SipResponse } from '@sipedge/tests'

const handlerUrl = new URL('./fixtures/transport-error-handler.mjs', import.meta.url)
const quiet = createLogger({ level: 'silent' })

async function closedPort(): Promise<number> {
  const s = createServer()
  await new Promise<void>(r => s.listen(0, '127.0.0.1', r))
  const port = (s.address() as { port: number }).port
  await new Promise<void>(r => s.close(() => r()))
  return port
}

/** Sends one UDP request (no retransmission) and waits for its answer, bounded. */
async function ask(port: number, extra: string[], ms = 3000): Promise<{ r: SipResponse | null; ms: number }> {
  const sock = createSocket('udp4')
  await new Promise<void>(r => sock.bind(0, '127.0.0.1', () => r()))
  const callId = uniqueCallId('te')
  const t0 = performance.now()
  try {
    const r = await new Promise<SipResponse | null>(resolve => {
      const timer = setTimeout(() => resolve(null), ms)
      sock.on('message', m => {
        const res = parseResponse(m.toString('latin1'))
        if (res.callId === callId) { clearTimeout(timer); resolve(res) }
      })
      sock.send(Buffer.from(sipRequest({ method: 'INVITE', uri: 'sip:bob@127.0.0.1', callId, extraHeaders: extra }), 'latin1'), port, '127.0.0.1')
    })
    return { r, ms: performance.now() - t0 }
  } finally { sock.close() }
}

for (const workers of [1, 0]) {
  t.test(`workers: ${workers}`, async t => {
    const engine = new Engine({
      listeners: [{ transport: 'udp', address: '127.0.0.1', port: 0 }],
      workers,
      ...(workers > 0 ? { workerUrl: workerEntryUrl } : {}),
      handlerUrl,
      logger: quiet,
    })
    await engine.start()
    t.teardown(() => engine.stop())
    const udp = engine.listeners[0]!.port

    t.test('a frame to a closed TCP port comes back as onTransportError in well under a second', async t => {
      const port = await closedPort()
      const { r, ms } = await ask(udp, [`X-Send-To: ${port}`])
      t.ok(r !== null, 'answered')
      t.equal(r!.status, 503)
      t.match(r!.headers.get('x-transport-error'), new RegExp(`^transport=2;port=${port};connId=[1-9]\\d*;flags=4;worker=0;inProcess=${workers === 0}$`))
      t.ok(ms < 500, `answered after ${ms.toFixed(1)} ms (Timer B would be 32 s)`)
      t.equal(engine.stats().counters.connConnectFailed, 1)
      t.equal(engine.stats().counters.transportErrorsReported, 1)
    })

    t.test('a TLS handshake failure is reported too', async t => {
      const tmp = tempDir()
      t.teardown(tmp.cleanup)
      const cert = makeCert(tmp.dir, 'untrusted', 'untrusted.example.test')
      const server = createTlsServer({ cert: readFileSync(cert.cert), key: readFileSync(cert.key) })
      server.on('tlsClientError', () => {})
      await new Promise<void>(r => server.listen(0, '127.0.0.1', r))
      t.teardown(() => server.close())
      const port = (server.address() as { port: number }).port
      const { r, ms } = await ask(udp, [`X-Send-To: ${port}`, 'X-Send-Transport: 3'])
      t.equal(r?.status, 503)
      t.match(r?.headers.get('x-transport-error'), new RegExp(`^transport=3;port=${port};`))
      t.ok(ms < 1000, `answered after ${ms.toFixed(1)} ms`)
    })

    t.test('a frame that is delivered raises no report', async t => {
      let got = ''
      const server = createServer(s => { s.setEncoding('latin1'); s.on('data', d => { got += d }) })
      await new Promise<void>(r => server.listen(0, '127.0.0.1', r))
      t.teardown(() => server.close())
      const port = (server.address() as { port: number }).port
      const before = engine.stats().counters.transportErrorsReported
      const { r } = await ask(udp, [`X-Send-To: ${port}`], 300)
      t.equal(r, null, 'no 503')
      t.match(got, /^INVITE sip:bob@127\.0\.0\.1 SIP\/2\.0\r\n/, 'the request reached the peer')
      t.equal(engine.stats().counters.transportErrorsReported, before)
    })
  })
}
