import t from 'tap'
import { openStores, type StoreStatus } from '@sipedge/store'
import { binding } from './fixtures/contract.js'
import { startRedis } from '@sipedge/test-utils'

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  for (let waited = 0; waited < ms && !cond(); waited += 20) await new Promise(r => setTimeout(r, 20))
  return cond()
}

t.test('redis SIGKILLed and restarted: fail fast with ERR_STORE_UNAVAILABLE, then recover', async t => {
  const server = await startRedis(t)
  const statuses: StoreStatus[] = []
  const s = await openStores(server.url(0), {
    sweepIntervalMs: 50, commandTimeoutMs: 500, onStatus: st => statuses.push(st),
  })
  t.teardown(() => s.close())
  const emitted: string[] = []
  s.on('unavailable', err => emitted.push(`unavailable:${err.code}`))
  s.on('available', () => emitted.push('available'))
  const clock = { now: () => Date.now() }
  await s.location.put('sip:a@x', binding(clock, 'sip:a@h'))
  t.equal((await s.location.get('sip:a@x')).length, 1)
  t.equal(s.isAvailable(), true)

  // operations in flight when the server dies settle (no hang), each ok or UNAVAILABLE
  const inflight = Array.from({ length: 50 }, (_, i) =>
    s.location.put(`sip:f${i}@x`, binding(clock, `sip:f${i}@h`)).then(() => 'ok', (e: { code?: string }) => e.code ?? String(e)))
  await server.kill()
  const settled = await Promise.all(inflight)
  t.same([...new Set(settled.filter(r => r !== 'ok'))].filter(c => c !== 'ERR_STORE_UNAVAILABLE'), [], 'only ERR_STORE_UNAVAILABLE')

  t.ok(await until(() => emitted.length > 0, 5000), "'unavailable' emitted")
  t.same(emitted, ['unavailable:ERR_STORE_UNAVAILABLE'])
  t.equal(s.isAvailable(), false)

  const t0 = Date.now()
  await t.rejects(s.location.get('sip:a@x'), { code: 'ERR_STORE_UNAVAILABLE' })
  await t.rejects(s.location.put('sip:b@x', binding(clock, 'sip:b@h')), { code: 'ERR_STORE_UNAVAILABLE' })
  await t.rejects(s.location.count(), { code: 'ERR_STORE_UNAVAILABLE' })
  await t.rejects(s.location.list(null, 10), { code: 'ERR_STORE_UNAVAILABLE' })
  await t.rejects(s.dialogs.get('d'), { code: 'ERR_STORE_UNAVAILABLE' })
  await t.rejects(s.bans.isBanned('192.0.2.1'), { code: 'ERR_STORE_UNAVAILABLE' })
  await t.rejects(s.credentials.get('r', 'u'), { code: 'ERR_STORE_UNAVAILABLE' })
  await t.rejects(s.sweepExpired(), { code: 'ERR_STORE_UNAVAILABLE' })
  // Queued operations would each wait for the 500 ms command timeout: 8 in a row, >= 4 s. Half
  // of that leaves room for a stalled process on a loaded host and still tells the two apart.
  const took = Date.now() - t0
  t.ok(took < 2000, `8 operations rejected in ${took} ms (no queueing: that would take >= 4000 ms)`)

  await server.restart()
  t.ok(await until(() => s.isAvailable(), 10_000), 'reconnected on its own')
  t.same(emitted, ['unavailable:ERR_STORE_UNAVAILABLE', 'available'])
  t.same(statuses, ['available', 'unavailable', 'available'], 'onStatus also saw the first connection')

  // the restarted server is empty (no persistence); scripts are reloaded transparently
  await s.location.put('sip:a@x', binding(clock, 'sip:a2@h'))
  t.same((await s.location.get('sip:a@x')).map(b => b.contact), ['sip:a2@h'])
  await s.dialogs.put({ id: 'd', setName: 's', destination: 'sip:as', state: 'early', createdAt: 1, lastActivity: 1, expiresAt: Date.now() + 10_000 })
  t.equal(await s.dialogs.countBySet('s'), 1)
  await s.bans.ban('192.0.2.1', Date.now() + 10_000, 'x')
  t.equal(await s.bans.isBanned('192.0.2.1'), true)
})

t.test('redis down for a while: repeated failures, still no crash, then recovery', async t => {
  const server = await startRedis(t)
  const s = await openStores(server.url(1), { sweepIntervalMs: 20, commandTimeoutMs: 300 })
  t.teardown(() => s.close())
  await server.kill()
  t.ok(await until(() => !s.isAvailable(), 5000))
  let failures = 0
  for (let i = 0; i < 20; i++) {
    await s.location.get('sip:x@x').catch((e: { code?: string }) => {
      if (e.code === 'ERR_STORE_UNAVAILABLE') failures++
    })
    await new Promise(r => setTimeout(r, 25))
  }
  t.equal(failures, 20, 'every call during the outage rejects with ERR_STORE_UNAVAILABLE')
  await server.restart()
  t.ok(await until(() => s.isAvailable(), 10_000), 'back')
  t.same(await s.location.get('sip:x@x'), [])
})
