import t from 'tap'
import { join } from 'node:path'
import { openStores } from '@sipedge/store'
import { binding, runContract } from './fixtures/contract.js'

t.test('contract: lmdb', async t => {
  runContract(t, async t => {
    const dir = t.testdir({})
    return opts => openStores(`lmdb:${join(dir, 'store')}`, opts)
  })
})

t.test('lmdb: data survives close and reopen', async t => {
  const path = join(t.testdir({}), 'persist')
  const clock = { now: () => Date.now() }
  const a = await openStores(`lmdb:${path}`, { sweepIntervalMs: 0 })
  await a.location.put('sip:p@x', binding(clock, 'sip:p1@h'))
  await a.location.put('sip:p@x', binding(clock, 'sip:p2@h'))
  await a.dialogs.put({ id: 'd', setName: 's', destination: 'sip:as', state: 'confirmed', createdAt: 1, lastActivity: 1, expiresAt: Date.now() + 60_000 })
  await a.bans.ban('198.51.100.7', Date.now() + 60_000, 'flood')
  await a.credentials.put('example.com', 'bob', { ha1Md5: 'h' })
  await a.close()

  const b = await openStores(`lmdb:${path}`, { sweepIntervalMs: 0 })
  t.teardown(() => b.close())
  t.same((await b.location.get('sip:p@x')).map(x => x.contact).sort(), ['sip:p1@h', 'sip:p2@h'], 'bindings persisted')
  t.same(await b.location.count(), { aors: 1, bindings: 2 }, 'counters persisted')
  t.equal((await b.dialogs.get('d'))?.state, 'confirmed')
  t.equal(await b.dialogs.countBySet('s'), 1)
  t.equal(await b.bans.isBanned('198.51.100.7'), true)
  t.same(await b.credentials.get('example.com', 'bob'), { ha1Md5: 'h', ha1Sha256: undefined })
})

t.test('lmdb: a path with an extension is a single file', async t => {
  const dir = t.testdir({})
  const s = await openStores(`lmdb:${join(dir, 'sub', 'store.mdb')}`, { sweepIntervalMs: 0 })
  t.teardown(() => s.close())
  await s.credentials.put('r', 'u', { ha1Md5: 'x' })
  t.same(await s.credentials.get('r', 'u'), { ha1Md5: 'x', ha1Sha256: undefined })
})

t.test('lmdb: closed store rejects with ERR_STORE_CLOSED', async t => {
  const s = await openStores(`lmdb:${join(t.testdir({}), 'c')}`, { sweepIntervalMs: 0 })
  await s.close()
  await t.rejects(s.location.put('sip:c@x', binding({ now: Date.now }, 'sip:c@h')), { code: 'ERR_STORE_CLOSED' })
})

t.test('lmdb: ?sync=commit and ?sync=Nms both persist across close and reopen', async t => {
  const clock = { now: () => Date.now() }
  const dir = t.testdir({})
  for (const q of ['?sync=commit', '?sync=5ms', '']) {
    const path = join(dir, `p${q.length}`)
    const a = await openStores(`lmdb:${path}${q}`, { sweepIntervalMs: 0 })
    await a.location.put('sip:p@x', binding(clock, 'sip:p1@h'))
    await t.rejects(a.location.update('sip:p@x', () => { throw new Error('boom') }), /boom/, `${q || 'default'}: a throwing update rejects`)
    await new Promise(r => setTimeout(r, 20)) // past a 5 ms flush
    await a.close()
    const b = await openStores(`lmdb:${path}${q}`, { sweepIntervalMs: 0 })
    t.same((await b.location.get('sip:p@x')).map(x => x.contact), ['sip:p1@h'], `${q || 'default'}: persisted, the failed update wrote nothing`)
    await b.close()
  }
})

t.test('lmdb: a binding written before the NAT flag existed (12-element tuple) is read, nat undefined', async t => {
  const path = join(t.testdir({}), 'old')
  const s0 = await openStores(`lmdb:${path}`, { sweepIntervalMs: 0 })
  await s0.close()
  const { open } = await import('lmdb')
  const { Packr } = await import('msgpackr')
  const env = open({ path, encoding: 'binary', maxDbs: 16 })
  const loc = env.openDB({ name: 'loc', encoding: 'binary' })
  const old = [1, [['sip:old@192.0.2.1:5060', null, null, 1, Date.now() + 60_000, 'cid-old', 3, [], ['udp', '192.0.2.1', 5060, 0, 0], 'ua', Date.now(), null]]]
  await loc.put('sip:old@example.com', Buffer.from(new Packr({ useRecords: false, moreTypes: false }).pack(old)))
  await env.close()
  const s = await openStores(`lmdb:${path}`, { sweepIntervalMs: 0 })
  t.teardown(() => s.close())
  const got = await s.location.get('sip:old@example.com')
  t.equal(got.length, 1)
  t.equal(got[0]!.contact, 'sip:old@192.0.2.1:5060')
  t.equal(got[0]!.cseq, 3)
  t.equal(got[0]!.nat, undefined, 'no NAT flag: undefined')
})

t.test('background sweep: backs off while nothing expires, still removes what expires (issue 17)', async t => {
  const s = await openStores(`lmdb:${join(t.testdir({}), 'sweep')}`, { sweepIntervalMs: 10 })
  t.teardown(() => s.close())
  let sweeps = 0
  const real = s.sweepExpired.bind(s)
  s.sweepExpired = async (now?: number, max?: number) => { sweeps++; return real(now, max) }
  await new Promise(r => setTimeout(r, 600))
  // at a fixed 10 ms that would be ~60 sweeps; backing off 10, 20, 40, 80, 80, ...: about 10
  t.ok(sweeps >= 2 && sweeps <= 20, `${sweeps} sweeps in 600 ms with nothing to remove`)
  const removed: string[] = []
  s.location.onExpired(e => { for (const b of e.bindings) removed.push(b.contact) })
  await s.location.put('sip:q@x', binding({ now: Date.now }, 'sip:q1@h', 50))
  const until = Date.now() + 10_000
  while (removed.length === 0 && Date.now() < until) await new Promise(r => setTimeout(r, 10))
  t.same(removed, ['sip:q1@h'], 'the expired binding was swept')
  t.same(await s.location.count(), { aors: 0, bindings: 0 })
})

t.test('lmdb ?sync=N: the writes asked for in one turn share one commit, each settles on its own', async t => {
  const clock = { now: () => Date.now() }
  const path = join(t.testdir({}), 'group')
  const a = await openStores(`lmdb:${path}?sync=50ms`, { sweepIntervalMs: 0 })
  const before = a.commitStats()
  t.same(before, { commits: 0, writes: 0 }, 'nothing committed yet')
  // one turn: five registrations, a failing update, a dialog and a ban, none awaited in between
  const puts = ['a', 'b', 'c', 'd', 'e'].map(u => a.location.put(`sip:${u}@x`, binding(clock, `sip:${u}1@h`)))
  const bad = a.location.update('sip:a@x', () => { throw new Error('refused') })
  const second = a.location.put('sip:a@x', binding(clock, 'sip:a2@h'))
  const dlg = a.dialogs.put({ id: 'g', setName: 's', destination: 'sip:as', state: 'confirmed', createdAt: 1, lastActivity: 1, expiresAt: Date.now() + 60_000 })
  const ban = a.bans.ban('198.51.100.9', Date.now() + 60_000, 'flood')
  const settled = await Promise.allSettled([...puts, bad, second, dlg, ban])
  t.same(settled.map(s => s.status), ['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled'], 'only the throwing update rejects')
  t.match((settled[5] as PromiseRejectedResult).reason, /refused/)
  t.same(a.commitStats(), { commits: 1, writes: 9 }, 'nine write transactions, one commit')
  // in order: the second put on sip:a@x saw the first
  t.same((settled[6] as PromiseFulfilledResult<Array<{ contact: string }>>).value.map(b => b.contact).sort(), ['sip:a1@h', 'sip:a2@h'])
  t.same(await a.location.count(), { aors: 5, bindings: 6 }, 'counters in step')
  // a write awaited alone is its own commit
  await a.location.put('sip:f@x', binding(clock, 'sip:f1@h'))
  t.same(a.commitStats(), { commits: 2, writes: 10 })
  // writes asked for just before close are committed by close
  const last = a.location.put('sip:z@x', binding(clock, 'sip:z1@h'))
  await a.close()
  await last
  const b = await openStores(`lmdb:${path}?sync=50ms`, { sweepIntervalMs: 0 })
  t.teardown(() => b.close())
  t.same(await b.location.count(), { aors: 7, bindings: 8 }, 'all of it persisted')
  t.equal((await b.dialogs.get('g'))?.state, 'confirmed')
  t.equal(await b.bans.isBanned('198.51.100.9'), true)
  t.equal(b.commitStats()?.commits, 0, 'a new opener starts its own count')
})
