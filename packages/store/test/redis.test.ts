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

t.test('redis: a binding written before the NAT flag existed (12-element tuple) is read, nat undefined', async t => {
  const server = await startRedis(t)
  const s = await openStores(server.url(4), { sweepIntervalMs: 0 })
  t.teardown(() => s.close())
  const { Redis } = await import('ioredis')
  const raw = new Redis({ host: '127.0.0.1', port: server.port, db: 4, lazyConnect: true })
  raw.on('error', () => undefined)
  await raw.connect()
  t.teardown(() => raw.disconnect())
  const { Packr } = await import('msgpackr')
  const old = [1, [['sip:old@192.0.2.1:5060', null, null, 1, Date.now() + 60_000, 'cid-old', 3, [], ['udp', '192.0.2.1', 5060, 0, 0], 'ua', Date.now(), null]]]
  await raw.hset('sipedge:loc:b:sip:old@example.com', 'd', Buffer.from(new Packr({ useRecords: false, moreTypes: false }).pack(old)), 'v', 'x', 'n', 1)
  const got = await s.location.get('sip:old@example.com')
  t.equal(got.length, 1)
  t.equal(got[0]!.contact, 'sip:old@192.0.2.1:5060')
  t.equal(got[0]!.nat, undefined, 'no NAT flag: undefined')
  await s.location.update('sip:old@example.com', cur => cur.map(b => ({ ...b, nat: true })))
  t.equal((await s.location.get('sip:old@example.com'))[0]!.nat, true, 'rewritten with the flag')
})
