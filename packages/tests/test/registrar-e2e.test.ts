// Registrar end to end: sipedge (Engine, 2 workers, the proxy handler with the registrar) between
// sipp phones (127.0.0.1) and a sipp application server (127.0.0.2), over both stores: LMDB in a
// temp dir and a private redis-server (ports 19400-19499). sipp ports 19000-19299.
// The engine runs the product's own handler (workers/dist/proxy-handler.js), which opens the
// registrar from the configuration.
import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseConfig, type FrozenConfig } from '@sipedge/config'
import { Engine, createLogger } from '@sipedge/transport'
import { workerEntryUrl, proxyHandlerUrl } from '@sipedge/workers'
import { openStores, computeHa1, type Stores } from '@sipedge/store'
import { startSipp, scenario, type SippResult } from '../dist/sipp.js'
import { startRedis, redisInstalled } from '@sipedge/test-utils'
import { tempDir, sleep } from '../dist/index.js'

const tmp = tempDir('sipedge-registrar-e2e-')
t.teardown(() => tmp.cleanup())

writeFileSync(join(tmp.dir, 'users.txt'), `alice:example.com:${computeHa1('alice', 'example.com', 'secret')}\ncarol:example.com:${computeHa1('carol', 'example.com', 'pw')}\n`)

function configFor(storeUrl: string, port: number): FrozenConfig {
  return parseConfig(`
workers: 2
listen: [udp:127.0.0.1:${port}]
domains: [open.test, example.com]
timers: { t1: 100ms, t2: 1s, t4: 1s }
store: "${storeUrl}"
registrar: { min_expires: 1s }
auth:
  domains:
    example.com: { users_file: ${join(tmp.dir, 'users.txt')}, algorithms: [MD5], nonce_ttl: 5s }
routes:
  - { match: { method: REGISTER }, action: register }
  - { match: { domain: [open.test, example.com] }, action: lookup }
`) as FrozenConfig
}

async function startEngine(config: FrozenConfig): Promise<Engine> {
  const engine = new Engine({
    listeners: config.listen.map(l => ({ transport: l.proto, address: l.address, port: l.port })),
    workers: config.workers,
    workerUrl: workerEntryUrl,
    handlerUrl: proxyHandlerUrl,
    config,
    logger: createLogger({ level: process.env['SIPEDGE_TEST_LOG'] === '1' ? 'debug' : 'silent' }),
    shutdownTimeoutMs: 2000,
  })
  await engine.start()
  return engine
}

interface PhoneOpts { port: number; user: string; domain: string; expires?: number; holdMs?: number; sf?: string; oocsf?: string; password?: string; timeoutS?: number }
function phone(proxy: string, o: PhoneOpts): ReturnType<typeof startSipp> {
  return startSipp({
    scenario: scenario(`registrar/${o.sf ?? 'reg.xml'}`), remote: proxy, localIp: '127.0.0.1', localPort: o.port,
    service: o.user, domain: o.domain, calls: 1, timeoutS: o.timeoutS ?? 30,
    extra: [
      '-key', 'expires', String(o.expires ?? 60), '-d', String(o.holdMs ?? 100),
      ...(o.oocsf !== undefined ? ['-oocsf', scenario(`registrar/${o.oocsf}`)] : []),
      ...(o.password !== undefined ? ['-au', o.user, '-ap', o.password] : []),
    ],
  })
}
async function run(s: ReturnType<typeof startSipp>): Promise<SippResult> {
  try { return await s.done } finally { await s.stop(); s.cleanup() }
}
function as(proxy: string, sf: string, user: string, domain: string, port: number): Promise<SippResult> {
  return run(startSipp({ scenario: sf, remote: proxy, localIp: '127.0.0.2', localPort: port, service: user, domain, calls: 1, timeoutS: 15 }))
}
async function waitBinding(stores: Stores, aor: string, present: boolean, ms = 15_000): Promise<boolean> {
  const until = Date.now() + ms
  while (Date.now() < until) {
    if (((await stores.location.get(aor)).length > 0) === present) return true
    await sleep(50)
  }
  return false
}

interface Suite { name: string; url: string; base: number; stores: Stores }

function suite(s: Suite, extra: (t: Tap.Test, proxy: string, engine: { current: Engine }) => void): void {
  const proxy = `127.0.0.1:${s.base}`
  const P = (n: number): number => s.base + n
  t.test(`${s.name}: registrar end to end`, async t => {
    const config = configFor(s.url, s.base)
    const engine = { current: await startEngine(config) }
    t.teardown(() => engine.current.stop())

    t.test('REGISTER; INVITE and NOTIFY from the application server reach the phone; unknown user 480', async t => {
      const alice = phone(proxy, { port: P(10), user: 'alice', domain: 'open.test', holdMs: 8000, oocsf: 'phone-answer.xml' })
      const bob = phone(proxy, { port: P(11), user: 'bob', domain: 'open.test', holdMs: 8000, oocsf: 'phone-notify.xml' })
      t.teardown(async () => { await alice.stop(); alice.cleanup(); await bob.stop(); bob.cleanup() })
      t.ok(await waitBinding(s.stores, 'sip:alice@open.test', true), 'alice registered')
      t.ok(await waitBinding(s.stores, 'sip:bob@open.test', true), 'bob registered')
      const call = await as(proxy, 'uac-call.xml', 'alice', 'open.test', P(40))
      t.equal(call.code, 0, 'INVITE/180/200/ACK/BYE between the AS and the registered phone', { log: call.log })
      const notify = await as(proxy, scenario('registrar/as-notify.xml'), 'bob', 'open.test', P(41))
      t.equal(notify.code, 0, 'NOTIFY to the registered phone answered 200', { log: notify.log })
      const miss = await as(proxy, scenario('registrar/uac-expect-480.xml'), 'nobody', 'open.test', P(42))
      t.equal(miss.code, 0, 'unknown user: 480 (the same as a known one without a binding)', { log: miss.log })
      const a = await alice.done
      t.equal(a.code, 0, 'the phone registered (200 with Contact;expires and Date)', { log: a.log })
    })

    t.test('re-registration and un-registration', async t => {
      const r = await run(phone(proxy, { port: P(12), user: 'dave', domain: 'open.test', sf: 'reg-unreg.xml' }))
      t.equal(r.code, 0, 'REGISTER 200, REGISTER Expires: 0 200 without the contact', { log: r.log })
      t.ok(await waitBinding(s.stores, 'sip:dave@open.test', false), 'no binding left')
      const miss = await as(proxy, scenario('registrar/uac-expect-480.xml'), 'dave', 'open.test', P(43))
      t.equal(miss.code, 0, 'INVITE to the unregistered AOR: 480', { log: miss.log })
    })

    t.test('digest auth: right password 200, wrong password re-challenged, expired nonce stale=true', async t => {
      const [ok, wrong] = await Promise.all([
        run(phone(proxy, { port: P(13), user: 'alice', domain: 'example.com', sf: 'reg-auth.xml', password: 'secret' })),
        run(phone(proxy, { port: P(14), user: 'carol', domain: 'example.com', sf: 'reg-auth-wrong.xml', password: 'wrong' })),
      ])
      t.equal(ok.code, 0, '401 then 200', { log: ok.log })
      t.equal(wrong.code, 0, '401 then 401 again (not stale)', { log: wrong.log })
      const stale = await run(phone(proxy, { port: P(15), user: 'alice', domain: 'example.com', sf: 'reg-auth-stale.xml', password: 'secret', holdMs: 5600 }))
      t.equal(stale.code, 0, 'after nonce_ttl: 401 stale=true, then 200', { log: stale.log })
    })

    t.test('expiry: a short registration disappears (480 in an open domain and for a known user)', async t => {
      const [a, b] = await Promise.all([
        run(phone(proxy, { port: P(16), user: 'erin', domain: 'open.test', expires: 1 })),
        run(phone(proxy, { port: P(17), user: 'carol', domain: 'example.com', sf: 'reg-auth.xml', password: 'pw', expires: 1 })),
      ])
      t.equal(a.code, 0, { log: a.log })
      t.equal(b.code, 0, { log: b.log })
      // past the expiry (and one sweep of worker 0): both bindings gone from the store
      t.ok(await waitBinding(s.stores, 'sip:erin@open.test', false), 'gone from the store')
      t.ok(await waitBinding(s.stores, 'sip:carol@example.com', false), 'gone from the store (known user)')
      const r480open = await as(proxy, scenario('registrar/uac-expect-480.xml'), 'erin', 'open.test', P(44))
      t.equal(r480open.code, 0, '480 in the open domain', { log: r480open.log })
      const r480 = await as(proxy, scenario('registrar/uac-expect-480.xml'), 'carol', 'example.com', P(45))
      t.equal(r480.code, 0, '480 for a user of the users file', { log: r480.log })
    })

    extra(t, proxy, engine)
  })
}

const lmdb = await openStores(`lmdb:${join(tmp.dir, 'loc')}`, { sweepIntervalMs: 0 })
t.teardown(() => lmdb.close())
suite({ name: 'lmdb', url: `lmdb:${join(tmp.dir, 'loc')}`, base: 19000, stores: lmdb }, (t, proxy, engine) => {
  t.test('restart keeps the bindings (LMDB is persistent)', async t => {
    const frank = phone(proxy, { port: 19020, user: 'frank', domain: 'open.test', holdMs: 12_000, oocsf: 'phone-answer.xml' })
    t.teardown(async () => { await frank.stop(); frank.cleanup() })
    t.ok(await waitBinding(lmdb, 'sip:frank@open.test', true), 'registered')
    await engine.current.stop()
    engine.current = await startEngine(configFor(`lmdb:${join(tmp.dir, 'loc')}`, 19000))
    const call = await as(proxy, 'uac-call.xml', 'frank', 'open.test', 19046)
    t.equal(call.code, 0, 'after the restart the AOR is still found and called', { log: call.log })
  })
})

if (!redisInstalled()) {
  t.skip('redis suite: redis-server not installed')
} else {
  const redis = await startRedis(t, { ports: [19400, 19499] })
  const rstores = await openStores(redis.url(0), { sweepIntervalMs: 0 })
  t.teardown(() => rstores.close())
  suite({ name: 'redis', url: redis.url(0), base: 19100, stores: rstores }, (t, proxy) => {
    t.test('Redis killed: REGISTER 503 with Retry-After meanwhile, works again when it is back', async t => {
      await redis.kill()
      await sleep(300)
      const down = await run(phone(proxy, { port: 19120, user: 'gina', domain: 'open.test', sf: 'reg-expect-503.xml' }))
      t.equal(down.code, 0, '503 (or 500) while Redis is down', { log: down.log })
      await redis.restart()
      let up: SippResult | undefined
      for (let i = 0; i < 10; i++) {
        await sleep(500)
        up = await run(phone(proxy, { port: 19121, user: 'gina', domain: 'open.test', timeoutS: 5 }))
        if (up.code === 0) break
      }
      t.equal(up?.code, 0, 'REGISTER 200 after Redis is back', { log: up?.log })
    })
  })
}
