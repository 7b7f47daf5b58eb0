import t from 'tap'
import { Worker } from 'node:worker_threads'
import { Ring, createFrameMeta } from '@sipedge/ring'

const meta = createFrameMeta({ family: 4, address: '127.0.0.1', port: 5060 })
const one = new Uint8Array([1])

/** Resolve 'woke' when p settles, 'timeout' after ms: a lost wakeup shows up as 'timeout'. */
function within(p: Promise<void>, ms: number): Promise<'woke' | 'timeout'> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    p.then(() => 'woke' as const),
    new Promise<'timeout'>((res) => { timer = setTimeout(() => res('timeout'), ms) }),
  ]).finally(() => clearTimeout(timer))
}

t.test('waitForData resolves at once when data is there', async (t) => {
  const ring = new Ring(Ring.allocate(4096))
  ring.tryPush(meta, one)
  t.equal(await within(ring.waitForData(), 1000), 'woke')
  t.notOk(ring.consumerSleeping())
  t.equal(ring.stats().notifies, 0, 'no notify when nobody sleeps')
})

t.test('producer notifies a sleeping consumer once, and counts it', async (t) => {
  const ring = new Ring(Ring.allocate(4096))
  const w = ring.waitForData()
  t.ok(ring.consumerSleeping())
  t.equal(ring.waitForData(), w, 'concurrent waits share one promise')
  ring.tryPush(meta, one)
  ring.tryPush(meta, one)
  t.notOk(ring.consumerSleeping())
  t.equal(await within(w, 2000), 'woke')
  const st = ring.stats()
  t.equal(st.notifies, 1, 'one notify for a burst')
  t.equal(st.wakeups, 1)
  t.equal(ring.drain(() => {}), 2)
})

t.test('race, deterministic: frame published right after the sleeping flag is set', async (t) => {
  const ring = new Ring(Ring.allocate(4096))
  ring._waitHook = (phase) => { if (phase === 1) ring.tryPush(meta, one) }
  t.equal(await within(ring.waitForData(), 2000), 'woke')
  t.notOk(ring.consumerSleeping(), 'flag taken back')
  t.equal(ring.drain(() => {}), 1)
})

t.test('race, deterministic: frame published after the re-check, before waitAsync', async (t) => {
  const ring = new Ring(Ring.allocate(4096))
  ring._waitHook = (phase) => { if (phase === 2) ring.tryPush(meta, one) }
  t.equal(await within(ring.waitForData(), 2000), 'woke')
  t.equal(ring.stats().notifies, 1)
  t.equal(ring.stats().wakeups, 1, "waitAsync saw 'not-equal': counted as a wakeup")
  t.equal(ring.drain(() => {}), 1)
})

t.test('timeout ends the wait and takes the sleeping flag back', async (t) => {
  const ring = new Ring(Ring.allocate(4096))
  const t0 = performance.now()
  await ring.waitForData(30)
  t.ok(performance.now() - t0 >= 25)
  t.notOk(ring.consumerSleeping())
  t.equal(ring.stats().wakeups, 0)
  ring.tryPush(meta, one)
  t.equal(ring.stats().notifies, 0)
})

t.test('wake() ends a pending wait, and a wake before the wait makes it return at once', async (t) => {
  const ring = new Ring(Ring.allocate(4096))
  const w = ring.waitForData()
  ring.wake()
  t.equal(await within(w, 2000), 'woke')
  ring.wake()
  t.equal(await within(ring.waitForData(), 2000), 'woke')
  t.notOk(ring.consumerSleeping())
})

t.test('a pending wait keeps a worker alive until a frame comes', async (t) => {
  const sab = Ring.allocate(4096)
  const ring = new Ring(sab)
  const w = new Worker(new URL('./fixtures/idle-consumer.mjs', import.meta.url), { workerData: { sab } })
  const msgs: string[] = []
  let exited = false
  w.on('message', (m: string) => msgs.push(m))
  const exit = new Promise<number>((res) => w.on('exit', (code) => { exited = true; res(code) }))
  const deadline = performance.now() + 10000
  while (!ring.consumerSleeping() && performance.now() < deadline) await new Promise((r) => setTimeout(r, 5))
  await new Promise((r) => setTimeout(r, 200))
  t.notOk(exited, 'worker still alive while waiting')
  t.ok(ring.tryPush(meta, Buffer.from('hello')))
  t.equal(await Promise.race([exit, new Promise<number>((r) => setTimeout(() => r(-1), 5000).unref())]), 0)
  t.same(msgs, ['waiting', 'hello'])
})

t.test('race across threads: consumer falls asleep exactly as the producer publishes', async (t) => {
  const rounds = 5000
  const budgetMs = 15000
  const sab = Ring.allocate(4096)
  const ctlSab = new SharedArrayBuffer(4)
  const ctl = new Int32Array(ctlSab)
  const ring = new Ring(sab)
  const w = new Worker(new URL('./fixtures/race-producer.mjs', import.meta.url),
    { workerData: { sab, ctlSab, rounds, deadlineMs: budgetMs, seed: 0x5eed } })
  // worker start-up (module loading) can take seconds on a loaded machine: not part of the race
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
    const r = await within(ring.waitForData(), 2000)
    if (r === 'timeout') {
      lost++
      t.comment(`round ${i}: wait timed out; data there: ${ring.hasData()}, sleeping flag: ${ring.consumerSleeping()}, ` +
        `stats ${JSON.stringify(ring.stats())}`)
      ring.wake()
      await ring.waitForData()
    }
    let got = 0
    // the wait may end before the frame is visible only if it ended for another reason; poll briefly
    for (let k = 0; k < 1000 && got === 0; k++) {
      got = ring.drain((_m, p) => { if ((p[0]! | (p[1]! << 8) | (p[2]! << 16) | (p[3]! << 24)) !== i) wrong++ })
      if (got === 0) await ring.waitForData(100)
    }
    if (got !== 1) { wrong++; break }
  }
  const res = await done
  await w.terminate()
  const st = ring.stats()
  t.equal(lost, 0, 'no lost wakeup (a wait that needed the 2 s timeout)')
  t.equal(wrong, 0, 'each round delivers exactly its frame')
  t.equal(res.sent, i - 1)
  t.ok(i - 1 >= 200, `rounds done: ${i - 1}`)
  t.equal(st.pushed, st.drained)
  t.comment(`rounds ${i - 1}, wakeups ${st.wakeups}, notifies ${st.notifies}, immediate ${i - 1 - st.wakeups}`)
})

t.test('deferNotifications: one wake-up at the end of the turn; at once when half full', async (t) => {
  const ring = new Ring(Ring.allocate(4096))
  ring.deferNotifications(true)
  const w = ring.waitForData()
  ring.tryPush(meta, one)
  ring.tryPush(meta, one)
  t.ok(ring.consumerSleeping(), 'not woken inside the turn')
  t.equal(ring.stats().notifies, 0)
  t.equal(await within(w, 2000), 'woke', 'woken at the end of the turn')
  t.equal(ring.stats().notifies, 1, 'one notify for the turn')
  t.equal(ring.drain(() => {}), 2)

  const w2 = ring.waitForData()
  const big = new Uint8Array(ring.maxPayload)
  t.ok(ring.tryPush(meta, big))
  t.notOk(ring.consumerSleeping(), 'more than half full: woken at once')
  t.equal(await within(w2, 2000), 'woke')
  t.equal(ring.stats().notifies, 2)
  t.equal(ring.drain(() => {}), 1)

  const w3 = ring.waitForData()
  ring.tryPush(meta, one)
  ring.deferNotifications(false)
  t.notOk(ring.consumerSleeping(), 'turning it off flushes a pending wake-up')
  t.equal(await within(w3, 2000), 'woke')
  t.equal(ring.drain(() => {}), 1)
})
