// OPTIONS probing and failover with sipp backends (ports 20100-20199): a stopped backend is
// marked down by the probes (interval 1 s, 2 failures) and calls go to the other one with no
// failed call, also while the outage is still being detected (Timer B / passive suspicion);
// when it is back, probes re-activate it and it gets calls again.
import t from 'tap'
import { startProxy } from '../dist/sipp.js'
import { startBackend, stopBackends, runUac, sleep, type Backend } from '../dist/dispatch.js'

const PROXY = '127.0.0.1:20100'
const BP = 20110
const config = `
workers: 2
listen: [udp:127.0.0.1:20100]
domains: [127.0.0.1]
timers: { t1: 100ms, t2: 1s, t4: 1s }
dialog: { mirror: false }
dispatcher:
  sets:
    apps:
      algorithm: round-robin
      probe: { interval: 1s, timeout: 400ms, failures_down: 2, successes_up: 2 }
      failover: { on_timeout: true, codes: [500, 503], max_attempts: 2 }
      destinations: ["sip:127.0.0.2:${BP}", "sip:127.0.0.3:${BP}"]
routes:
  - { match: { method: INVITE }, action: { dispatch: apps } }
`

const { engine } = await startProxy(config)
const backends: Backend[] = ['127.0.0.2', '127.0.0.3'].map(ip => startBackend(ip, BP))
t.teardown(async () => { await stopBackends(backends); await engine.stop() })
await sleep(1500)
const [a, b] = backends as [Backend, Backend]

t.test('both up: both get calls', async t => {
  const r = await runUac({ proxy: PROXY, port: 20120, calls: 40, rate: 40 })
  t.equal(r.successful, 40, 'all calls', { log: r.log })
  await sleep(400)
  t.ok(a.seen().invites.length >= 15 && b.seen().invites.length >= 15, 'both used')
})

t.test('backend stopped: calls fail over with no failed call, probes mark it down', async t => {
  await b.stop()
  const bBefore = b.seen().invites.length
  // Right away: the first calls towards it time out (Timer B) and fail over.
  const r1 = await runUac({ proxy: PROXY, port: 20121, calls: 20, rate: 20, limit: 50, timeoutS: 40 })
  t.equal(r1.failed, 0, 'no failed call during detection', { log: r1.log })
  t.equal(r1.successful, 20)
  await sleep(2500) // >= failures_down probes
  const aBefore = a.seen().invites.length
  const t0 = Date.now()
  const r2 = await runUac({ proxy: PROXY, port: 20122, calls: 40, rate: 40 })
  t.equal(r2.successful, 40, 'all calls once it is down', { log: r2.log })
  t.ok(Date.now() - t0 < 6000, 'no Timer B wait: the down backend is not tried')
  await sleep(300)
  t.equal(a.seen().invites.length - aBefore, 40, 'everything to the live backend')
  t.equal(b.seen().invites.length, bBefore)
})

t.test('backend back: probes re-activate it', async t => {
  b.restart()
  await sleep(3500) // successes_up probes
  const bBefore = b.seen().invites.length
  const r = await runUac({ proxy: PROXY, port: 20123, calls: 40, rate: 40 })
  t.equal(r.successful, 40, 'all calls', { log: r.log })
  await sleep(400)
  t.ok(b.seen().invites.length - bBefore >= 15, `re-activated backend gets calls again (${b.seen().invites.length - bBefore})`)
})
