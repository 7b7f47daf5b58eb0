import t from 'tap'
import { DEFAULT_TIMERS, TransactionLayer, timerValues } from '@sipedge/transaction'

t.test('RFC 3261 Table 4 values at the defaults', async t => {
  const udp = timerValues(DEFAULT_TIMERS, false)
  const tcp = timerValues(DEFAULT_TIMERS, true)
  t.match(udp, { T1: 500, T2: 4000, T4: 5000, A: 500, B: 32000, C: 180000, D: 32000, E: 500, F: 32000, G: 500, H: 32000, I: 5000, J: 32000, K: 5000, L: 32000, M: 32000 })
  t.match(tcp, { A: 0, B: 32000, C: 180000, D: 0, E: 0, F: 32000, G: 0, H: 32000, I: 0, J: 0, K: 0, L: 32000, M: 32000 })
  t.ok(Object.isFrozen(udp))
})

t.test('derived from T1/T2/T4', async t => {
  const v = timerValues({ t1: 100, t2: 1000, t4: 2000, timerC: 0 }, false)
  t.match(v, { A: 100, B: 6400, C: 0, D: 32000, E: 100, F: 6400, H: 6400, I: 2000, J: 6400, K: 2000 })
  t.equal(timerValues({ t1: 1000, t2: 4000, t4: 5000 }, false).D, 64000, 'D stays >= 64*T1')
})

t.test('invalid configuration', async t => {
  t.throws(() => timerValues({ t1: 0, t2: 4000, t4: 5000 }, false), { code: 'ERR_TX_BAD_CONFIG' })
  t.throws(() => timerValues({ t1: 500, t2: 100, t4: 5000 }, false), { code: 'ERR_TX_BAD_CONFIG' })
  t.throws(() => new TransactionLayer({ send: () => {}, t4: -1 }), { code: 'ERR_TX_BAD_CONFIG' })
})

t.test('tick follows T1: 50 ms at the default, smaller for a small T1', async t => {
  t.equal(new TransactionLayer({ send: () => {}, manualTimers: true }).wheel.tickMs, 50)
  t.equal(new TransactionLayer({ send: () => {}, manualTimers: true, t1: 20, t2: 200 }).wheel.tickMs, 2)
})

t.test('Timer B and F may be set apart from 64*T1 (config timers.timer_b / timer_f)', async t => {
  const v = timerValues({ t1: 500, t2: 4000, t4: 5000, timerB: 8000, timerF: 6000 }, false)
  t.equal(v.B, 8000)
  t.equal(v.F, 6000)
  t.equal(v.A, 500, 'retransmissions still start at T1')
  const d = timerValues({ t1: 500, t2: 4000, t4: 5000 }, false)
  t.equal(d.B, 32000, 'default 64*T1')
  t.equal(d.F, 32000)
  t.throws(() => timerValues({ t1: 500, t2: 4000, t4: 5000, timerB: 0 }, false), { code: 'ERR_TX_BAD_CONFIG' })
})
