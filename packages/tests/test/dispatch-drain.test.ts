// Draining for maintenance with long calls (ports 20200-20299): the admin action
// `dispatcher-admin drain` (what POST /api/dispatcher/<set>/<uri>/drain sends) stops new calls to
// the backend while every call it already has ends with its BYE delivered there; then a config
// reload (SIGHUP path) with `state: draining` on the other backend: the file wins, the admin
// override ends.
import t from 'tap'
import { parseConfig, type FrozenConfig } from '@sipedge/config'
import { startProxy } from '../dist/sipp.js'
import { startBackend, stopBackends, startUac, runUac, sleep, type Backend } from '../dist/dispatch.js'

const PROXY = '127.0.0.1:20200'
const BP = 20210
const yaml = (stateA: string): string => `
workers: 2
listen: [udp:127.0.0.1:20200]
domains: [127.0.0.1]
dialog: { mirror: false }
dispatcher:
  sets:
    apps:
      algorithm: round-robin
      probe: false
      destinations: [{ uri: "sip:127.0.0.2:${BP}", state: ${stateA} }, "sip:127.0.0.3:${BP}"]
routes:
  - { match: { method: INVITE }, action: { dispatch: apps } }
`

const { engine } = await startProxy(yaml('active'))
const backends: Backend[] = ['127.0.0.2', '127.0.0.3'].map(ip => startBackend(ip, BP))
t.teardown(async () => { await stopBackends(backends); await engine.stop() })
await sleep(300)
const [a, b] = backends as [Backend, Backend]

t.test('drain during a stream of long calls: no new calls, existing calls end there', async t => {
  const uac = startUac({ proxy: PROXY, port: 20220, calls: 40, rate: 10, limit: 100, holdMs: 3000, timeoutS: 40 })
  await sleep(1500)
  engine.control({ type: 'dispatcher-admin', set: 'apps', uri: `sip:127.0.0.3:${BP}`, action: 'drain' })
  const atDrain = b.seen().invites.length
  const r = await uac.done
  await uac.stop(); uac.cleanup()
  t.equal(r.failed, 0, 'no failed call', { log: r.log })
  t.equal(r.successful, 40, 'all 40 calls completed')
  await sleep(500)
  const sb = b.seen()
  const sa = a.seen()
  t.ok(atDrain >= 4, `the drained backend had calls up (${atDrain})`)
  t.ok(sb.invites.length <= atDrain + 1, `no new calls after the drain (${atDrain} -> ${sb.invites.length}; one may have been in flight)`)
  t.equal(sa.invites.length + sb.invites.length, 40)
  const byesB = new Set(sb.byes)
  t.ok(sb.invites.every(c => byesB.has(c)), 'every call of the drained backend got its BYE there')
  const byesA = new Set(sa.byes)
  t.ok(sa.invites.every(c => byesA.has(c)), 'and the other backend too')
})

t.test('reload: the file state wins, the admin override ends', async t => {
  engine.updateConfig(parseConfig(yaml('draining')) as FrozenConfig)
  await sleep(300)
  const a0 = a.seen().invites.length
  const b0 = b.seen().invites.length
  const r = await runUac({ proxy: PROXY, port: 20221, calls: 20, rate: 40 })
  t.equal(r.successful, 20, 'all calls', { log: r.log })
  await sleep(400)
  t.equal(a.seen().invites.length - a0, 0, 'draining in the file: no new calls')
  t.equal(b.seen().invites.length - b0, 20, 'the previously drained backend is active again')
})
