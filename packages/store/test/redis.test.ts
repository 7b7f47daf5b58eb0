import t from 'tap'
import { openStores } from '@sipedge/store'
import { runContract } from './fixtures/contract.js'
import { startRedis } from '@sipedge/test-utils'

t.test('contract: redis', async t => {
  const server = await startRedis(t)
  let n = 0
  runContract(t, async () => {
    // a fresh key prefix per subtest is a fresh, empty store on the same server
    const prefix = `t${++n}:`
    return opts => openStores(`${server.url(0)}?prefix=${prefix}`, opts)
  })
})

t.test('redis: nothing listening -> ERR_STORE_UNAVAILABLE, fast', async t => {
  const server = await startRedis(t)
  const url = server.url(0)
  await server.stop()
  const t0 = Date.now()
  await t.rejects(openStores(url, { connectTimeoutMs: 500 }), { code: 'ERR_STORE_UNAVAILABLE' })
  t.ok(Date.now() - t0 < 3000, 'gave up within the connect timeout')
})

t.test('redis: values are msgpack and keys are prefixed', async t => {
  const server = await startRedis(t)
  const s = await openStores(`${server.url(3)}?prefix=px:`, { sweepIntervalMs: 0 })
  t.teardown(() => s.close())
  await s.credentials.put('example.com', 'alice', { ha1Md5: 'abc' })
  const { Redis } = await import('ioredis')
  const raw = new Redis({ host: '127.0.0.1', port: server.port, db: 3, lazyConnect: true })
  raw.on('error', () => undefined)
  await raw.connect()
  t.teardown(() => raw.disconnect())
  const { unpack } = await import('msgpackr')
  const buf = await raw.hgetBuffer('px:cred:example.com', 'alice')
  t.ok(buf, 'stored under the prefix, in the database of the URL')
  t.same(unpack(buf!), [1, 'abc', null])
})
