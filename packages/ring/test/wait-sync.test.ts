// Ring.waitSync: the blocking (Atomics.wait) consumer wait a worker uses while traffic flows.
// Same sleeping-flag protocol as waitForData: no lost wake-up when the producer publishes exactly
// as the consumer falls asleep, a timeout takes the flag back, wake() ends it from any thread.
import t from 'tap'
import { Worker } from 'node:worker_threads'
import { Ring, createFrameMeta } from '@sipedge/ring'

const meta = createFrameMeta({ family: 4, address: '127.0.0.1', port: 5060 })

t.test('data already there: returns at once without sleeping; nothing there: times out and takes the flag back', async (t) => {
  const ring = new Ring(Ring.allocate(4096))
  ring.tryPush(meta, new Uint8Array([1]))
  t.equal(ring.waitSync(1000), true)
  t.equal(ring.stats().notifies, 0)
  t.equal(ring.drain(() => {}), 1)
  t.equal(ring.waitSync(5), false, 'timed out')
  t.notOk(ring.consumerSleeping(), 'flag taken back: the producer will not notify a thread that is not waiting')
  ring.wake()
  t.equal(ring.waitSync(1000), true, 'a wake requested before the wait ends it at once')
})

t.test('race across threads: the producer publishes exactly as the consumer blocks', async (t) => {
  const rounds = 3000
  const budgetMs = 15000
  const sab = Ring.allocate(4096)
  const ctlSab = new SharedArrayBuffer(4)
  const ctl = new Int32Array(ctlSab)
  const ring = new Ring(sab)
  const w = new Worker(new URL('./fixtures/race-producer.mjs', import.meta.url),
    { workerData: { sab, ctlSab, rounds, deadlineMs: budgetMs, seed: 0x5eed5 } })
  const ready = new Promise((res, rej) => { w.once('message', res); w.once('error', rej) })
  t.equal(await Promise.race([ready, new Promise((r) => setTimeout(() => r('no ready'), 30000).unref())]), 'ready')
  const done = new Promise<{ sent: number }>((res, rej) => { w.once('message', res); w.once('error', rej) })
  const t0 = performance.now()
  let lost = 0
  let wrong = 0
  let i = 1
  for (; i <= rounds && performance.now() - t0 < budgetMs; i++) {
    Atomics.store(ctl, 0, i)
    Atomics.notify(ctl, 0)
    // the producer publishes round i somewhere around this call
    if (!ring.waitSync(2000)) {
      lost++
      t.comment(`round ${i}: blocked for the whole 2 s; data there: ${ring.hasData()}`)
    }
    let got = 0
    for (let k = 0; k < 1000 && got === 0; k++) {
      got = ring.drain((_m, p) => { if ((p[0]! | (p[1]! << 8) | (p[2]! << 16) | (p[3]! << 24)) !== i) wrong++ })
      if (got === 0) ring.waitSync(100)
    }
    if (got !== 1) { wrong++; break }
  }
  const res = await done
  await w.terminate()
  const st = ring.stats()
  t.equal(lost, 0, 'no lost wake-up (a wait that needed the 2 s timeout)')
  t.equal(wrong, 0, 'each round delivers exactly its frame')
  t.equal(res.sent, i - 1)
  t.ok(i - 1 >= 200, `rounds done: ${i - 1}`)
  t.equal(st.pushed, st.drained)
  t.comment(`rounds ${i - 1}, wakeups ${st.wakeups}, notifies ${st.notifies}`)
})
