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
