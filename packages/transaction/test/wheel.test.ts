import t from 'tap'
import { TimerEntry, TimerWheel } from '@sipedge/transaction'

class Probe extends TimerEntry {
  fired: number[] = []
  onFire: ((now: number) => void) | null = null
  override onTimer(now: number): void {
    this.fired.push(now)
    if (this.onFire !== null) this.onFire(now)
  }
}

function run(w: TimerWheel, from: number, to: number, step = 1): void {
  for (let now = from; now <= to; now += step) w.advance(now)
}

t.test('fires at the first tick boundary >= deadline, never early', async t => {
  const w = new TimerWheel({ tickMs: 50 })
  const a = new Probe()
  const b = new Probe()
  const c = new Probe()
  w.schedule(a, 500)
  w.schedule(b, 505)
  w.schedule(c, 1)
  t.equal(w.size, 3)
  run(w, 0, 1000)
  t.same(a.fired, [500], 'exact on a boundary')
  t.same(b.fired, [550], 'rounded up to the next tick')
  t.same(c.fired, [50])
  t.equal(w.size, 0)
})

t.test('cancel and reschedule are O(1) and idempotent', async t => {
  const w = new TimerWheel({ tickMs: 10, slots: 8 })
  const a = new Probe()
  const b = new Probe()
  w.schedule(a, 100)
  w.schedule(b, 100)
  t.ok(w.cancel(a))
  t.notOk(w.cancel(a))
  t.notOk(w.isScheduled(a))
  w.schedule(b, 200) // move
  t.equal(w.size, 1)
  run(w, 0, 300)
  t.same(a.fired, [])
  t.same(b.fired, [200])
})

t.test('deadlines beyond one rotation wait for their round', async t => {
  const w = new TimerWheel({ tickMs: 10, slots: 16 }) // 160 ms per rotation
  const a = new Probe()
  w.schedule(a, 1000)
  run(w, 0, 2000)
  t.same(a.fired, [1000])
})

t.test('a deadline in the past fires on the next tick', async t => {
  const w = new TimerWheel({ tickMs: 10, now: 1000 })
  const a = new Probe()
  w.schedule(a, 0)
  w.advance(1005)
  t.same(a.fired, [])
  w.advance(1010)
  t.same(a.fired, [1010])
})

t.test('a long jump fires everything due once, with the current time', async t => {
  const w = new TimerWheel({ tickMs: 10, slots: 16 })
  const ps = [5, 50, 150, 1000, 5000].map(at => { const p = new Probe(); w.schedule(p, at); return p })
  const late = new Probe()
  w.schedule(late, 100_000)
  w.advance(6000)
  t.same(ps.map(p => p.fired), [[6000], [6000], [6000], [6000], [6000]])
  t.same(late.fired, [])
  t.equal(w.size, 1)
  w.advance(100_000)
  t.same(late.fired, [100_000])
})

t.test('callbacks may reschedule themselves and cancel others in the same slot', async t => {
  const w = new TimerWheel({ tickMs: 10 })
  const a = new Probe()
  const b = new Probe()
  a.onFire = now => {
    w.cancel(b)
    if (a.fired.length < 3) w.schedule(a, now + 100)
  }
  w.schedule(b, 100)
  w.schedule(a, 100) // head of the slot: fires before b and cancels it
  run(w, 0, 1000)
  t.same(a.fired, [100, 200, 300])
  t.same(b.fired, [])
  t.equal(w.size, 0)
})

t.test('an entry scheduled for now from a callback fires on the next tick, not in a loop', async t => {
  const w = new TimerWheel({ tickMs: 10 })
  const a = new Probe()
  a.onFire = now => { if (a.fired.length < 5) w.schedule(a, now) }
  w.schedule(a, 10)
  w.advance(10)
  t.same(a.fired, [10])
  w.advance(20)
  t.same(a.fired, [10, 20])
})

t.test('bad options', async t => {
  t.throws(() => new TimerWheel({ tickMs: 0 }), RangeError)
  t.throws(() => new TimerWheel({ tickMs: 10, slots: 100 }), RangeError)
})

t.test('nextTick: the first tick with something due, one rotation ahead at most, -1 when empty', async t => {
  const w = new TimerWheel({ tickMs: 10, slots: 16 })
  t.equal(w.nextTick(), -1)
  const a = new Probe()
  const b = new Probe()
  w.schedule(a, 95) // tick 10
  w.schedule(b, 31) // tick 4
  t.equal(w.nextTick(), 4)
  w.cancel(b)
  t.equal(w.nextTick(), 10, 'a cancelled entry no longer counts')
  w.advance(100)
  t.same(a.fired, [100])
  t.equal(w.nextTick(), -1)
  // tick 50 (slot 2) is more than one rotation ahead of tick 10
  const far = new Probe()
  w.schedule(far, 500)
  t.equal(w.nextTick(), 10 + 16, 'only a later round: look again one rotation ahead')
  const near = new Probe()
  w.schedule(near, 180) // tick 18, slot 2 as well, ahead of `far` in the list
  t.equal(w.nextTick(), 18)
})

t.test('a callback that throws: onError gets it and the rest of the tick still fires', async t => {
  const errors: unknown[] = []
  const w = new TimerWheel({ tickMs: 10, onError: (err, e) => errors.push([String(err), e]) })
  const a = new Probe()
  const bad = new Probe()
  const b = new Probe()
  bad.onFire = () => { throw new Error('boom') }
  w.schedule(a, 20)
  w.schedule(bad, 20)
  w.schedule(b, 20)
  w.schedule(new Probe(), 40)
  t.equal(w.advance(20), 3)
  t.same(errors, [['Error: boom', bad]])
  t.same([a.fired, b.fired], [[20], [20]], 'the entries after it fired')
  t.equal(w.advance(40), 1, 'and later ticks go on')
})

t.test('without onError: the rest of the tick fires, then the first error is thrown; the wheel stays usable', async t => {
  const w = new TimerWheel({ tickMs: 10 })
  const bad = new Probe()
  const a = new Probe()
  bad.onFire = () => { throw new Error('boom') }
  w.schedule(bad, 20)
  w.schedule(a, 20)
  t.throws(() => w.advance(20), /boom/)
  t.same(a.fired, [20], 'the other entry of the tick fired')
  const c = new Probe()
  w.schedule(c, 30)
  t.equal(w.advance(30), 1, 'the next advance fires normally')
  t.same(c.fired, [30])
})
