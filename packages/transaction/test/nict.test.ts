import t from 'tap'
import type { SipMessage } from '@sipedge/sip'
import { NonInviteClientTransaction, TransactionLayer } from '@sipedge/transaction'
import type { ClientTransaction, TimeoutReason } from '@sipedge/transaction'
import { BOB, BOB_TCP, Harness, outboundText, response } from './fixtures/messages.js'

const BR = 'z9hG4bKproxyopt1'

function start(h: Harness, dest = BOB, method = 'OPTIONS') {
  const log: number[] = []
  const timeouts: TimeoutReason[] = []
  let terminatedAt = -1
  const tx = h.layer.createClient({
    request: [Buffer.from(outboundText({ branch: BR, method }))],
    method,
    branch: BR,
    dest,
    onResponse: (m: SipMessage) => log.push(m.status),
    onTimeout: (_tx: ClientTransaction, r: TimeoutReason) => timeouts.push(r),
    onTerminated: () => { terminatedAt = h.t },
  })
  return { tx, log, timeouts, terminatedAt: () => terminatedAt }
}

t.test('Timer E doubles from T1 and is capped at T2 in Trying; Timer F at 64*T1', async t => {
  const h = new Harness()
  const c = start(h)
  t.ok(c.tx instanceof NonInviteClientTransaction)
  t.equal(c.tx.state, 'Trying')
  h.advance(40_000)
  // intervals 500, 1000, 2000, 4000 (T2), 4000, ... : 0.5, 1.5, 3.5, 7.5, 11.5, ... 31.5
  t.same(h.times('OPTIONS'), [0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500])
  t.same(c.timeouts, ['timeout'])
  t.equal(c.terminatedAt(), 32_000)
  t.equal(h.layer.stats().retransmissions.requests, 10)
})

t.test('Proceeding: Timer E restarts at T2 (§17.1.2.2), Timer F still fires', async t => {
  const h = new Harness()
  const c = start(h, BOB, 'REGISTER')
  h.advance(600) // retransmitted at 500, next due at 1500
  h.layer.receiveResponse(response({ status: 100, branch: BR, method: 'REGISTER', toTag: null }), BOB)
  t.equal(c.tx.state, 'Proceeding')
  h.advance(40_000)
  // the pending Timer E (1500) still fires; from then on every T2
  t.same(h.times('REGISTER'), [0, 500, 1500, 5500, 9500, 13500, 17500, 21500, 25500, 29500])
  t.same(c.timeouts, ['timeout'])
  t.equal(c.terminatedAt(), 32_000)
  t.same(c.log, [100])
})

t.test('final response -> Completed, retransmissions absorbed, Timer K = T4 on UDP', async t => {
  const h = new Harness()
  const c = start(h)
  h.advance(200)
  h.layer.receiveResponse(response({ status: 200, branch: BR, method: 'OPTIONS' }), BOB)
  t.equal(c.tx.state, 'Completed')
  t.equal(c.tx.request, null, 'request bytes released')
  h.advance(1000)
  h.layer.receiveResponse(response({ status: 200, branch: BR, method: 'OPTIONS' }), BOB)
  t.same(c.log, [200], 'passed up once')
  h.advance(10_000)
  t.equal(c.terminatedAt(), 200 + 5000, 'Timer K = T4')
  t.same(h.times('OPTIONS'), [0])
  t.same(c.timeouts, [])
})

t.test('Trying -> Proceeding -> Completed', async t => {
  const h = new Harness()
  const c = start(h)
  h.layer.receiveResponse(response({ status: 180, branch: BR, method: 'OPTIONS' }), BOB)
  h.layer.receiveResponse(response({ status: 404, branch: BR, method: 'OPTIONS' }), BOB)
  t.equal(c.tx.state, 'Completed')
  t.same(c.log, [180, 404])
})

t.test('reliable transport: no Timer E, Timer K zero', async t => {
  const h = new Harness()
  const c = start(h, BOB_TCP)
  h.advance(3000)
  t.same(h.times('OPTIONS'), [0])
  h.layer.receiveResponse(response({ status: 200, branch: BR, method: 'OPTIONS' }), BOB_TCP)
  t.equal(c.tx.state, 'Terminated')
  t.equal(c.terminatedAt(), 3000)
})

t.test('reliable transport: Timer F still fires at 64*T1', async t => {
  const h = new Harness()
  const c = start(h, BOB_TCP)
  h.advance(40_000)
  t.same(c.timeouts, ['timeout'])
  t.equal(c.terminatedAt(), 32_000)
})

t.test('transport error', async t => {
  const h = new Harness()
  const c = start(h)
  h.layer.transportError(c.tx)
  t.same(c.timeouts, ['transport-error'])
  t.equal(c.tx.state, 'Terminated')
  t.equal(h.layer.stats().active.nict, 0)
})

t.test('transitions are asserted', async t => {
  const h = new Harness()
  const c = start(h)
  h.layer.receiveResponse(response({ status: 200, branch: BR, method: 'OPTIONS' }), BOB)
  t.throws(() => (c.tx as unknown as { enter(s: string): void }).enter('Proceeding'), { code: 'ERR_TX_BAD_TRANSITION' })
})

t.test('the native driver sleeps until the next pending timer, not every tick (issue 17)', async t => {
  // A real native timer (manualTimers off) with a clock that stands still: each time the driver
  // fires, it finds nothing due and arms itself for the wheel's next pending tick.
  const clock = { t: 0 }
  const layer = new TransactionLayer({ send: () => {}, clock: { now: () => clock.t }, t1: 20, t4: 100 })
  t.teardown(() => layer.close())
  t.equal(layer.wakeAt, -1, 'no transaction: no timer')
  const tx = layer.createClient({
    request: [Buffer.from(outboundText({ branch: BR }))], method: 'OPTIONS', branch: BR, dest: BOB,
    onResponse: () => {}, onTimeout: () => {},
  })
  // tick = T1/10 = 2 ms; Timer E at 20 ms = tick 10
  t.equal(layer.wakeAt, 10, 'armed for Timer E')
  layer.receiveResponse(response({ status: 200, branch: BR, method: 'OPTIONS' }), BOB)
  t.equal(tx.state, 'Completed')
  // Timer E is cancelled; the driver still wakes at tick 10 once, then sleeps until Timer K (T4 = 100 ms = tick 50)
  const deadline = Date.now() + 5_000
  while (layer.wakeAt !== 50 && Date.now() < deadline) await new Promise(r => setTimeout(r, 5))
  t.equal(layer.wakeAt, 50, 'next wake-up is Timer K, not the next tick')
  clock.t = 100
  layer.tick()
  t.equal(tx.state, 'Terminated')
  t.equal(layer.wakeAt, -1, 'nothing pending: no timer')
})

t.test('the native driver sleeps at most 1 s: a clock that jumps is caught up within it', async t => {
  // RFC default timers: Timer F fires 32 s after the request. The clock jumps 40 s at once (a
  // stepped clock, or a test clock); the driver armed for 32 s of real time must not wait that.
  const clock = { t: Date.now() }
  const layer = new TransactionLayer({ send: () => {}, clock: { now: () => clock.t } })
  t.teardown(() => layer.close())
  const timeouts: TimeoutReason[] = []
  const tx = layer.createClient({
    request: [Buffer.from(outboundText({ branch: BR }))], method: 'OPTIONS', branch: BR, dest: BOB_TCP,
    onResponse: () => {}, onTimeout: (_tx: ClientTransaction, r: TimeoutReason) => timeouts.push(r),
  })
  clock.t += 40_000
  const deadline = Date.now() + 3_000
  while (tx.state !== 'Terminated' && Date.now() < deadline) await new Promise(r => setTimeout(r, 50))
  t.equal(tx.state, 'Terminated', 'Timer F fired without a manual tick')
  t.same(timeouts, ['timeout'], 'reported as a timeout (Timer F)')
})

t.test('a timeout callback that throws goes to onTimerError; the other transactions time out as usual', async t => {
  const errors: string[] = []
  const h = new Harness({ onTimerError: err => errors.push(String(err)) })
  const timeouts: string[] = []
  for (const [branch, bad] of [['z9hG4bKbad1', true], ['z9hG4bKgood1', false]] as const) {
    h.layer.createClient({
      request: [Buffer.from(outboundText({ branch, method: 'OPTIONS' }))],
      method: 'OPTIONS',
      branch,
      dest: BOB,
      onResponse: () => {},
      onTimeout: () => { if (bad) throw new Error(`failover bug in ${branch}`); timeouts.push(branch) },
      onTerminated: () => {},
    })
  }
  h.advance(40_000)
  t.same(errors, ['Error: failover bug in z9hG4bKbad1'])
  t.same(timeouts, ['z9hG4bKgood1'])
  t.equal(h.layer.stats().active.total, 0, 'both transactions are gone')
})

/** A layer on the native driver whose ticks are counted (the driver calls layer.tick()). */
function countedLayer(opts: ConstructorParameters<typeof TransactionLayer>[0]): { layer: TransactionLayer; ticks: () => number } {
  const layer = new TransactionLayer(opts)
  let n = 0
  const tick = layer.tick.bind(layer)
  layer.tick = () => { n++; return tick() }
  return { layer, ticks: () => n }
}

function farTimerF(layer: TransactionLayer, branch: string, timeouts: TimeoutReason[]): ClientTransaction {
  // over TCP no Timer E: the only timer pending is Timer F, 2.5 s away
  return layer.createClient({
    request: [Buffer.from(outboundText({ branch }))], method: 'OPTIONS', branch, dest: BOB_TCP,
    onResponse: () => {}, onTimeout: (_tx: ClientTransaction, r: TimeoutReason) => timeouts.push(r),
  })
}

t.test('on a monotonic clock the native driver sleeps until the timer is due, not 1 s at a time (idle wake-ups)', async t => {
  const mono = countedLayer({ send: () => {}, timerF: 2_500 }) // no clock given: performance.now(), monotonic
  const given = countedLayer({ send: () => {}, timerF: 2_500, clock: { now: () => performance.now() } }) // a clock that may jump
  t.teardown(() => { mono.layer.close(); given.layer.close() })
  t.equal(mono.layer.maxSleepMs, 60_000)
  t.equal(given.layer.maxSleepMs, 1_000)
  const timeouts: TimeoutReason[] = []
  const a = farTimerF(mono.layer, 'z9hG4bKmono1', timeouts)
  const b = farTimerF(given.layer, 'z9hG4bKgiven1', timeouts)
  const deadline = Date.now() + 6_000
  while ((a.state !== 'Terminated' || b.state !== 'Terminated') && Date.now() < deadline) await new Promise(r => setTimeout(r, 50))
  t.same(timeouts, ['timeout', 'timeout'], 'Timer F fired on both')
  t.equal(mono.ticks(), 1, 'monotonic: one wake-up, when Timer F was due')
  t.ok(given.ticks() >= 3, `a given clock: a wake-up every second until then (${given.ticks()})`)
})

t.test('maxSleepMs: a host that says its clock is monotonic gets the long sleep; below 1 ms is refused', async t => {
  const l = new TransactionLayer({ send: () => {}, clock: { now: () => performance.now() }, maxSleepMs: 60_000 })
  t.teardown(() => l.close())
  t.equal(l.maxSleepMs, 60_000)
  t.throws(() => new TransactionLayer({ send: () => {}, maxSleepMs: 0 }), RangeError)
})
