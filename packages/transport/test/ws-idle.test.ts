// Idle timeout and automatic pings (uWS works in 4 s ticks, minimum 8 s): a live client is
// pinged and kept, a silent one that does not answer pings is closed. Takes ~20 s.
import t from 'tap'
import { startWsListener } from '../dist/ws.js'
import { RecordingSink, WsTestClient } from './helpers/ws-client.js'

t.test('idle connections are pinged; dead ones are closed', async tt => {
  const sink = new RecordingSink()
  const l = await startWsListener({ proto: 'ws', address: '127.0.0.1', port: 0, maxMessageSize: 4096, idleTimeoutMs: 8000, sink })
  tt.teardown(() => l.close())
  const live = await WsTestClient.connect({ host: '127.0.0.1', port: l.port, timeoutMs: 40_000 })
  const dead = await WsTestClient.connect({ host: '127.0.0.1', port: l.port, autoPong: false, timeoutMs: 40_000 })
  tt.teardown(() => { live.destroy(); dead.destroy() })
  const t0 = Date.now()
  const info = await dead.waitClosed(40_000)
  const after = Date.now() - t0
  // uWS pings at about half the timeout and closes on the next tick without an answer; its
  // clock has 4 s granularity, so only a lower bound of one tick is certain.
  tt.ok(after >= 3900, `silent client closed after ${after} ms`)
  tt.ok(after <= 20_000, 'and not much later than the idle timeout')
  tt.ok(dead.pings.length >= 1, 'it was pinged first')
  tt.pass(`close code ${info.code}`)
  tt.ok(live.pings.length >= 1, `live client was pinged too (${live.pings.length})`)
  tt.equal(live.isClosed, false, 'a client that answers pings stays connected')
  await sink.waitFor(() => sink.count('close') === 1, 'one onClose')
  await live.close()
})
