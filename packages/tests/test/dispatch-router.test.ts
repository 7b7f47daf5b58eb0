// Router rules choosing the cluster (ports 20300-20399): domain, header, user prefix with the
// longest prefix winning across consecutive prefix rules, method; first match wins otherwise.
import t from 'tap'
import { startProxy } from '../dist/sipp.js'
import { startBackends, stopBackends, runUac, untilSeen, type Backend } from '../dist/dispatch.js'

const PROXY = '127.0.0.1:20300'
const BP = 20310
const config = `
workers: 2
listen: [udp:127.0.0.1:20300]
domains: [127.0.0.1]
dialog: { mirror: false }
dispatcher:
  sets:
    tollfree: { probe: false, destinations: ["sip:127.0.0.2:${BP}"] }
    us: { probe: false, destinations: ["sip:127.0.0.3:${BP}"] }
    world: { probe: false, destinations: ["sip:127.0.0.4:${BP}"] }
routes:
  - { name: tenant, match: { domain: tenant.example }, action: { dispatch: world } }
  - { name: vip, match: { header: { name: X-Test, regex: "^toll", ignore_case: true } }, action: { dispatch: tollfree } }
  - { name: us, match: { user_prefix: "+1" }, action: { dispatch: us } }
  - { name: tf, match: { user_prefix: ["+1800", "+1888"] }, action: { dispatch: tollfree } }
  - { name: rest, match: { method: INVITE }, action: { dispatch: world } }
`

const { engine } = await startProxy(config)
t.teardown(() => engine.stop())
const backends: Backend[] = await startBackends(['127.0.0.2', '127.0.0.3', '127.0.0.4'], BP)
t.teardown(() => stopBackends(backends))

let port = 20320
async function route(t: Tap.Test, o: { service: string; domain?: string; hdr?: string }): Promise<string> {
  const before = backends.map(b => b.seen().invites.length)
  const r = await runUac({ proxy: PROXY, port: port++, calls: 10, rate: 50, service: o.service, ...(o.domain ? { domain: o.domain } : {}), ...(o.hdr ? { hdr: o.hdr } : {}) })
  t.equal(r.successful, 10, 'calls completed', { log: r.log })
  // the 10 INVITEs in the backends' logs (bounded wait for the files)
  await untilSeen(backends, seen => seen.reduce((n, s, i) => n + s.invites.length - before[i]!, 0) >= 10)
  const got = backends.filter((b, i) => b.seen().invites.length - before[i]! === 10).map(b => b.ip)
  return got.join(',')
}
declare namespace Tap { type Test = typeof t }

t.test('longest user prefix: +1800 to the toll-free set although +1 comes first', async t => {
  t.equal(await route(t, { service: '+18005551212' }), '127.0.0.2')
  t.equal(await route(t, { service: '+18885551212' }), '127.0.0.2')
  t.equal(await route(t, { service: '+12125551212' }), '127.0.0.3')
})

t.test('domain and header rules come first; method catch-all last', async t => {
  t.equal(await route(t, { service: '+18005551212', domain: 'tenant.example' }), '127.0.0.4', 'domain rule first')
  t.equal(await route(t, { service: '+12125551212', hdr: 'TollFree' }), '127.0.0.2', 'header rule')
  t.equal(await route(t, { service: '+4930123' }), '127.0.0.4', 'no prefix: method rule')
})
