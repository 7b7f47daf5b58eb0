// ClusterStore (issue 15, docs/stores.md): liveness keys with a TTL on Redis, shared dispatcher
// operator states, the onCommand metrics hook; inert on lmdb.
import t from 'tap'
import { openStores } from '@sipedge/store'
import { startRedis } from '@sipedge/test-utils'

t.test('redis: a liveness key lives for its TTL; forget removes it at once', async t => {
  const server = await startRedis(t)
  let now = Date.now()
  const s = await openStores(server.url(0), { sweepIntervalMs: 0, now: () => now })
  t.teardown(() => s.close())
  t.equal(s.cluster.shared, true)
  await s.cluster.beat('a', '{"relay":"sip:127.0.0.11:5060"}', 60_000)
  await s.cluster.beat('b', '{"relay":"sip:127.0.0.12:5060"}', 60_000)
  t.same((await s.cluster.live()).map(n => n.id).sort(), ['a', 'b'])
  t.same((await s.cluster.live()).find(n => n.id === 'a')?.info, '{"relay":"sip:127.0.0.11:5060"}')
  // b stops beating: past its expiry (the index is judged by the caller's clock) it is gone
  await s.cluster.beat('a', '{"relay":"sip:127.0.0.11:5060"}', 120_000)
  now += 90_000
  t.same((await s.cluster.live()).map(n => n.id), ['a'], 'b expired')
  await s.cluster.forget('a')
  t.same(await s.cluster.live(), [], 'a forgotten')
})

t.test('redis: the key itself expires (PX) even if the index says otherwise', async t => {
  const server = await startRedis(t)
  const s = await openStores(server.url(1), { sweepIntervalMs: 0 })
  t.teardown(() => s.close())
  await s.cluster.beat('short', '{}', 50)
  await new Promise(r => setTimeout(r, 200))
  t.same(await s.cluster.live(), [], 'gone after its TTL')
})

t.test('redis: dispatcher operator states are shared; null removes one', async t => {
  const server = await startRedis(t)
  const s1 = await openStores(server.url(2), { sweepIntervalMs: 0 })
  const s2 = await openStores(server.url(2), { sweepIntervalMs: 0 })
  t.teardown(async () => { await s1.close(); await s2.close() })
  await s1.cluster.setAdminState('apps', 'sip:127.0.0.2:5070', 'disable')
  await s1.cluster.setAdminState('apps', 'sip:127.0.0.3:5070', 'drain')
  t.same(await s2.cluster.adminStates(), { 'apps sip:127.0.0.2:5070': 'disable', 'apps sip:127.0.0.3:5070': 'drain' }, 'seen by another client')
  await s2.cluster.setAdminState('apps', 'sip:127.0.0.2:5070', null)
  t.same(await s1.cluster.adminStates(), { 'apps sip:127.0.0.3:5070': 'drain' })
})

t.test('redis: onCommand sees round trips and failures', async t => {
  const server = await startRedis(t)
  const seen: Array<[number, boolean]> = []
  const s = await openStores(server.url(3), { sweepIntervalMs: 0, commandTimeoutMs: 300, onCommand: (sec, ok) => { seen.push([sec, ok]) } })
  t.teardown(() => s.close())
  await s.cluster.live()
  t.ok(seen.some(([sec, ok]) => ok && sec > 0 && sec < 5), 'a successful command with its round trip')
  await server.kill()
  await t.rejects(s.cluster.live(), { code: 'ERR_STORE_UNAVAILABLE' })
  t.ok(seen.some(([, ok]) => !ok), 'the failure is reported')
})

t.test('lmdb: one node, nothing shared', async t => {
  const dir = t.testdir({})
  const s = await openStores(`lmdb:${dir}/db`, { sweepIntervalMs: 0 })
  t.teardown(() => s.close())
  t.equal(s.cluster.shared, false)
  await s.cluster.beat('a', '{}', 1000)
  await s.cluster.setAdminState('apps', 'sip:x', 'drain')
  t.same(await s.cluster.live(), [])
  t.same(await s.cluster.adminStates(), {})
})

t.test('redis+sentinel://: the store finds the primary through Sentinel (ioredis support)', async t => {
  const { spawn } = await import('node:child_process')
  const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs')
  const { tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  const { connect } = await import('node:net')
  const server = await startRedis(t)
  const dir = mkdtempSync(join(tmpdir(), 'sipedge-sentinel-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  // a free port for the sentinel: the redis helper's range, next to the server's
  const port = server.port + 1000
  const conf = join(dir, 'sentinel.conf')
  writeFileSync(conf, `port ${port}\nbind 127.0.0.1\ndir ${dir}\nsentinel monitor sipedgetest 127.0.0.1 ${server.port} 1\n`)
  const child = spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' })
  t.teardown(() => { child.kill('SIGKILL') })
  // ready when it answers PING (bounded)
  const pong = (): Promise<boolean> => new Promise(resolve => {
    const s = connect(port, '127.0.0.1')
    s.setTimeout(500, () => { s.destroy(); resolve(false) })
    s.on('error', () => resolve(false))
    s.on('connect', () => s.write('PING\r\n'))
    s.on('data', d => { s.destroy(); resolve(d.toString().startsWith('+PONG')) })
  })
  let up = false
  for (let i = 0; i < 50 && !up && child.exitCode === null; i++) { up = await pong(); if (!up) await new Promise(r => setTimeout(r, 100)) }
  if (!up) { t.skip('redis-server --sentinel did not start here'); return }
  const s = await openStores(`redis+sentinel://127.0.0.1:${port}/sipedgetest/5?prefix=sn:`, { sweepIntervalMs: 0, connectTimeoutMs: 5000 })
  t.teardown(() => s.close())
  t.equal(s.backend, 'redis')
  await s.cluster.beat('n1', '{}', 10_000)
  t.same((await s.cluster.live()).map(n => n.id), ['n1'], 'written and read through the primary Sentinel named')
  const direct = await openStores(`${server.url(5)}?prefix=sn:`, { sweepIntervalMs: 0 })
  t.teardown(() => direct.close())
  t.same((await direct.cluster.live()).map(n => n.id), ['n1'], 'the same data as on the primary itself')
})
