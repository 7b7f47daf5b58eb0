// Regression (issue 11, "a transport error must reach the client transaction at once"): a request
// dispatched to a destination whose TCP port is closed fails over to the next destination as soon
// as the connection is refused, not after Timer F (64*T1 = 32 s here). Real sockets: a UDP UAC,
// sipedge with worker threads, a closed TCP port on 127.0.0.3 and a TCP UAS on 127.0.0.2.
// Ports 17500-17599.
import t from 'tap'
import { createServer, type Socket } from 'node:net'
import { UdpClient, TestFramer, sipRequest, uniqueCallId } from '../dist/index.js'
import { startProxy } from '../dist/sipp.js'

const PROXY_PORT = 17500
const CLOSED = 17511
const UAS_PORT = 17510

const config = `
workers: 2
listen: [udp:127.0.0.1:${PROXY_PORT}, tcp:127.0.0.1:${PROXY_PORT}]
domains: [example.com]
dispatcher:
  sets:
    apps:
      algorithm: round-robin
      probe: false
      failover: { on_timeout: true, codes: [500, 503], max_attempts: 2 }
      destinations: ["sip:127.0.0.3:${CLOSED};transport=tcp", "sip:127.0.0.2:${UAS_PORT};transport=tcp"]
routes:
  - match: { method: [MESSAGE] }
    action: { dispatch: apps }
`

// The TCP UAS: answers every request 200 on its connection.
const seen: string[] = []
const server = createServer((sock: Socket) => {
  const framer = new TestFramer()
  sock.on('data', (c: Buffer) => {
    for (const m of framer.push(c)) {
      seen.push(m)
      const lines = m.split('\r\n')
      const keep = lines.filter(l => /^(Via|From|To|Call-ID|CSeq):/i.test(l))
      sock.write(['SIP/2.0 200 OK', ...keep.map(l => (/^To:/i.test(l) ? l + ';tag=uas' : l)), 'Content-Length: 0', '', ''].join('\r\n'))
    }
  })
  sock.on('error', () => {})
})
await new Promise<void>(r => server.listen(UAS_PORT, '127.0.0.2', () => r()))
const { engine } = await startProxy(config)
const uac = new UdpClient()
await uac.bind()
t.teardown(async () => { uac.close(); await engine.stop(); server.close() })

t.test('connection refused: failover to the next destination at once, not after Timer F', async t => {
  // Round-robin: over two requests one starts at the closed port; send four so both orders occur.
  for (let i = 0; i < 4; i++) {
    const callId = uniqueCallId('refused')
    const started = Date.now()
    const r = await uac.request(sipRequest({ method: 'MESSAGE', uri: 'sip:app@example.com', callId, port: 5999 }), PROXY_PORT, '127.0.0.1', 20_000)
    const ms = Date.now() - started
    t.equal(r.status, 200, `${callId}: answered by the live destination`)
    // Timer F is 32 s; anything below a quarter of it proves the transport error was used
    // (the typical figure is a few ms; generous for a loaded 2-core machine).
    t.ok(ms < 8_000, `${callId}: answered in ${ms} ms, long before Timer F`)
  }
  t.equal(seen.length, 4, 'every request reached the UAS exactly once')
  const stats = await engine.query('all', 'stats') as Array<{ proxy: { transportErrors: number; failovers: number } }>
  const errors = stats.reduce((n, s) => n + s.proxy.transportErrors, 0)
  // At least one, at most one per worker: after a transport error the destination is suspect
  // (skipped) on that worker for a while, and the Call-IDs may all hash to one worker.
  t.ok(errors >= 1 && errors <= stats.length, `transport errors counted by the proxy (${errors}, ${stats.length} workers)`)
})
