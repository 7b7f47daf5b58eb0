// Failover and timeouts with sipp peers over UDP (ports 17200-17299): a destination that never
// answers (nothing listens on 127.0.0.3:17211) — Timer B (64*T1 = 6.4 s with T1 = 100 ms) then the
// next destination of the set; with only silent destinations the UAC gets 408.
import t from 'tap'
import { startProxy, runFlow } from '../dist/sipp.js'

const PROXY = '127.0.0.1:17200'
const UAS = 17210
const SILENT = 17211
const UAC = 17220

const config = `
workers: 2
listen: [udp:127.0.0.1:17200]
domains: [127.0.0.1]
timers: { t1: 100ms, t2: 1s, t4: 1s }
dispatcher:
  sets:
    pair:
      algorithm: hash-callid
      probe: false
      failover: { on_timeout: true, codes: [500, 503], max_attempts: 2 }
      destinations: ["sip:127.0.0.3:${SILENT}", "sip:127.0.0.2:${UAS}"]
    dead:
      probe: false
      destinations: ["sip:127.0.0.3:${SILENT + 1}"]
routes:
  - match: { user_prefix: dead }
    action: { dispatch: dead }
  - match: { method: [INVITE] }
    action: { dispatch: pair }
`

const { engine } = await startProxy(config)
t.teardown(() => engine.stop())

t.test('first destination silent: calls fail over and complete', async t => {
  const r = await runFlow({ uas: 'uas-call.xml', uac: 'uac-call.xml', proxy: PROXY, uasPort: UAS, uacPort: UAC, transport: 'u1', calls: 10, rate: 10, timeoutS: 30 })
  t.equal(r.uac.code, 0, 'sipp UAC exit code 0', { log: r.uac.log })
  t.equal(r.uac.successful, 10, '10 successful calls')
  t.equal(r.uac.failed, 0, 'no failed call')
})

t.test('only silent destinations: 408 after Timer B', async t => {
  const r = await runFlow({ uas: null, uac: 'uac-expect-408.xml', proxy: PROXY, uasPort: UAS, uacPort: UAC, transport: 'u1', calls: 3, rate: 10, timeoutS: 20, service: 'dead1' })
  t.equal(r.uac.code, 0, 'sipp UAC exit code 0', { log: r.uac.log })
  t.equal(r.uac.successful, 3, '3 calls got 408 and ACKed')
})
