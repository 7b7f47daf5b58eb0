// The auth throttle on its own (throttle.ts): thresholds, one ban report, the store fallback.
import t from 'tap'
import { AuthThrottle, MemoryCounters, type AuthBan } from '../dist/index.js'
import type { CounterStore } from '@sipedge/store'

t.test('memory counters: fixed windows, bounded', async t => {
  let now = 1000
  const m = new MemoryCounters(() => now, 3)
  t.equal(m.incr('a', 100), 1)
  t.equal(m.incr('a', 100), 2)
  now += 100
  t.equal(m.get('a'), 0, 'window over')
  t.equal(m.incr('a', 100), 1, 'new window')
  m.incr('b', 100); m.incr('c', 100); m.incr('d', 100)
  t.equal(m.size, 3, 'oldest evicted at the bound')
  t.equal(m.get('a'), 0)
})

t.test('throttle: pair lockout, ban by distinct users or by failures, each reported once', async t => {
  let now = 1000
  const bans: AuthBan[] = []
  const th = new AuthThrottle({ maxFailures: 3, windowMs: 60_000, banUsers: 4, banFailures: 6, banMs: 10_000 }, () => now, b => bans.push(b))
  t.equal(th.failed('r', 'u1', '192.0.2.1'), 1)
  t.equal(th.failed('r', 'u1', '192.0.2.1'), 2)
  t.notOk(th.locks(th.failuresOf('r', 'u1', '192.0.2.1') as number))
  t.equal(th.failed('r', 'u1', '192.0.2.1'), 3)
  t.ok(th.locks(th.failuresOf('r', 'u1', '192.0.2.1') as number), 'locked at maxFailures')
  for (let u = 2; u <= 6; u++) th.failed('r', 'u' + u, '192.0.2.1')
  t.equal(bans.length, 1, 'one report')
  t.match(bans[0], { address: '192.0.2.1', users: 4, until: 11_000, durationMs: 10_000 })
  // Failures alone (one user, many tries): banned at banFailures.
  for (let i = 0; i < 8; i++) th.failed('r', 'solo', '192.0.2.2')
  t.equal(bans.length, 2)
  t.match(bans[1], { address: '192.0.2.2', users: 1, failures: 6 })
  th.succeeded('r', 'u1', '192.0.2.1', 3)
  t.equal(th.failuresOf('r', 'u1', '192.0.2.1'), 0, 'the right password resets the pair')
  now += 60_000
  t.equal(th.failuresOf('r', 'solo', '192.0.2.2'), 0, 'window over')
})

t.test('throttle: a store that fails is replaced by this worker\'s memory, counted', async t => {
  const broken: CounterStore = {
    incr: () => Promise.reject(Object.assign(new Error('down'), { code: 'ERR_STORE_UNAVAILABLE' })),
    get: () => Promise.reject(Object.assign(new Error('down'), { code: 'ERR_STORE_UNAVAILABLE' })),
    reset: () => Promise.reject(new Error('down')),
    sweepExpired: async () => 0,
  }
  const warned: string[] = []
  const th = new AuthThrottle({ maxFailures: 2 }, () => 1000, () => undefined, { debug() {}, info() {}, warn: m => warned.push(m), error() {} })
  th.useStore(broken)
  t.equal(await th.failed('r', 'u', 's'), 1)
  t.equal(await th.failed('r', 'u', 's'), 2)
  t.ok(th.locks(await th.failuresOf('r', 'u', 's')), 'still locks')
  t.ok(th.storeErrors > 0)
  t.equal(warned.length, 1, 'logged once per 10 s')
})
