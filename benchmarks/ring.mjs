// Ring micro-benchmark: @sipedge/ring between two threads.
//   throughput: producer in a worker_threads Worker, consumer (batch drain) in the main thread,
//               300-byte and 1,500-byte frames; frames/s and MB/s (payload bytes).
//   wake-up latency: the consumer sleeps in waitForData(); the producer publishes; time from
//               just before tryPush to the consumer's callback (median/p99).
//   baseline, same run: the same traffic over a MessagePort (postMessage of a Uint8Array).
// Figures are medians of several runs. Writes benchmarks/results/ring-<date>.json and .md.
// Usage: node ring.mjs [--runs N] [--quick] [--no-write]
import { Worker, isMainThread, parentPort, workerData, MessageChannel } from 'node:worker_threads'
import { writeFileSync, mkdirSync } from 'node:fs'
import os from 'node:os'
import { setImmediate as yieldToLoop } from 'node:timers/promises'
import { Ring, createFrameMeta, TransportKind } from '@sipedge/ring'

const hr = () => Number(process.hrtime.bigint()) // ns, monotonic, same clock in every thread

// ------------------------------------------------------------------------------- worker side
if (!isMainThread) {
  const { mode } = workerData
  const meta = createFrameMeta({ transport: TransportKind.UDP, socketId: 1, connId: 0, family: 4,
    address: '203.0.113.77', port: 5060, recvTime: 0, flags: 0 })
  if (mode === 'ring-throughput') {
    const { sab, frames, size, deadlineMs } = workerData
    const ring = new Ring(sab)
    const payload = new Uint8Array(size).fill(0x61)
    parentPort.once('message', () => {
      const deadline = performance.now() + deadlineMs
      let full = 0
      let i = 0
      for (; i < frames; i++) {
        payload[0] = i & 0xff
        meta.recvTime = i
        if (!ring.tryPush(meta, payload)) {
          full++
          i--
          if ((full & 0xfff) === 0 && performance.now() > deadline) break
        }
      }
      parentPort.postMessage({ sent: i, full })
    })
    parentPort.postMessage('ready')
  } else if (mode === 'ring-latency') {
    const { sab, samples, gapUs, deadlineMs } = workerData
    const ring = new Ring(sab)
    const nap = new Int32Array(new SharedArrayBuffer(4))
    const payload = new Uint8Array(300)
    const deadline = performance.now() + deadlineMs
    let sent = 0
    for (let i = 0; i < samples && performance.now() < deadline; i++) {
      // wait (bounded) until the consumer has announced its sleep, then let it really sleep
      while (!ring.consumerSleeping() && performance.now() < deadline) Atomics.wait(nap, 0, 0, 0.02)
      Atomics.wait(nap, 0, 0, gapUs / 1000)
      meta.recvTime = hr()
      ring.tryPush(meta, payload)
      sent++
    }
    parentPort.postMessage({ sent })
  } else if (mode === 'port-throughput') {
    const { port, frames, size } = workerData
    const payload = new Uint8Array(size).fill(0x61)
    parentPort.once('message', () => {
      for (let i = 0; i < frames; i++) port.postMessage(payload)
    })
    parentPort.postMessage('ready')
  } else if (mode === 'port-latency') {
    const { port, samples, gapUs } = workerData
    const nap = new Int32Array(new SharedArrayBuffer(4))
    const payload = new Uint8Array(300)
    let i = 0
    port.on('message', () => { // consumer is idle again: wait, then send the next sample
      if (i++ >= samples) { port.close(); return }
      Atomics.wait(nap, 0, 0, gapUs / 1000)
      port.postMessage({ t: hr(), payload })
    })
  }
}

// ------------------------------------------------------------------------------- main side
function median(a) { const s = [...a].sort((x, y) => x - y); return s[Math.floor((s.length - 1) / 2)] }
function pct(a, p) { const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(p * s.length))] }

async function ringThroughput(size, frames, capacity, batch) {
  const sab = Ring.allocate(capacity)
  const ring = new Ring(sab)
  const w = new Worker(new URL(import.meta.url), { workerData: { mode: 'ring-throughput', sab, frames, size, deadlineMs: 20000 } })
  await new Promise((res) => w.once('message', res))
  let got = 0
  let bytes = 0
  let expect = 0
  let misordered = 0
  const onFrame = (m, p) => { bytes += p.length; if (m.recvTime !== expect) misordered++; expect = m.recvTime + 1 }
  const done = new Promise((res) => w.once('message', res))
  let producer = null
  done.then((r) => { producer = r })
  const t0 = performance.now()
  w.postMessage('go')
  const deadline = t0 + 25000
  let drains = 0
  while (got < frames && performance.now() < deadline) {
    const n = ring.drain(onFrame, batch)
    got += n
    drains++
    // The consumer loop a worker runs: drain a batch, then yield to the event loop (timers,
    // control port) before the next one; sleep in waitForData only when the ring is empty.
    if (n === 0) {
      if (producer !== null && !ring.hasData()) break // producer gave up (deadline)
      await ring.waitForData(50)
    } else {
      await yieldToLoop()
    }
  }
  const secs = (performance.now() - t0) / 1000
  await done
  await w.terminate()
  const st = ring.stats()
  return { frames: got, secs, fps: got / secs, mbps: bytes / secs / 1e6, misordered, refused: st.refused,
    wakeups: st.wakeups, avgBatch: got / drains }
}

// CPU cost of the ring itself, independent of a second core: push a batch, drain it, same thread.
function ringSingleThread(size, frames, capacity, batch) {
  const ring = new Ring(Ring.allocate(capacity))
  const meta = createFrameMeta({ transport: TransportKind.UDP, socketId: 1, family: 4, address: '203.0.113.77', port: 5060 })
  const payload = new Uint8Array(size).fill(0x61)
  let bytes = 0
  const onFrame = (m, p) => { bytes += p.length }
  const t0 = performance.now()
  let pushNs = 0
  let done = 0
  while (done < frames) {
    const a = performance.now()
    let k = 0
    while (k < batch && ring.tryPush(meta, payload)) k++
    pushNs += performance.now() - a
    ring.drain(onFrame)
    done += k
  }
  const ms = performance.now() - t0
  return { fps: done / (ms / 1000), nsPerFrame: (ms * 1e6) / done, pushNsPerFrame: (pushNs * 1e6) / done }
}

async function ringLatency(samples, gapUs) {
  const sab = Ring.allocate(1 << 16)
  const ring = new Ring(sab)
  const w = new Worker(new URL(import.meta.url), { workerData: { mode: 'ring-latency', sab, samples, gapUs, deadlineMs: 20000 } })
  const lat = []
  const onFrame = (m) => { lat.push((hr() - m.recvTime) / 1000) }
  const deadline = performance.now() + 25000
  while (lat.length < samples && performance.now() < deadline) {
    await ring.waitForData(1000)
    ring.drain(onFrame)
  }
  await w.terminate()
  return { samples: lat.length, medianUs: median(lat), p99Us: pct(lat, 0.99), wakeups: ring.stats().wakeups }
}

async function portThroughput(size, frames) {
  const { port1, port2 } = new MessageChannel()
  const w = new Worker(new URL(import.meta.url), { workerData: { mode: 'port-throughput', port: port2, frames, size }, transferList: [port2] })
  await new Promise((res) => w.once('message', res))
  let got = 0
  let bytes = 0
  const t0 = performance.now()
  await new Promise((res) => {
    const timer = setTimeout(res, 25000)
    port1.on('message', (p) => { bytes += p.length; if (++got === frames) { clearTimeout(timer); res() } })
    w.postMessage('go')
  })
  const secs = (performance.now() - t0) / 1000
  port1.close()
  await w.terminate()
  return { frames: got, secs, fps: got / secs, mbps: bytes / secs / 1e6 }
}

async function portLatency(samples, gapUs) {
  const { port1, port2 } = new MessageChannel()
  const w = new Worker(new URL(import.meta.url), { workerData: { mode: 'port-latency', port: port2, samples, gapUs }, transferList: [port2] })
  const lat = []
  await new Promise((res) => {
    const timer = setTimeout(res, 25000)
    port1.on('message', (m) => {
      lat.push((hr() - m.t) / 1000)
      if (lat.length >= samples) { clearTimeout(timer); res(); return }
      port1.postMessage(0)
    })
    port1.postMessage(0)
  })
  port1.close()
  await w.terminate()
  return { samples: lat.length, medianUs: median(lat), p99Us: pct(lat, 0.99) }
}

async function main() {
  const args = process.argv.slice(2)
  const quick = args.includes('--quick')
  const ri = args.indexOf('--runs')
  const runs = ri >= 0 ? Number(args[ri + 1]) : quick ? 1 : 5
  const write = !args.includes('--no-write')
  const capacity = 1 << 20
  const batch = 1024
  const scale = quick ? 0.2 : 1
  const cases = [
    { size: 300, frames: Math.round(3_000_000 * scale) },
    { size: 1500, frames: Math.round(1_000_000 * scale) },
  ]
  const result = {
    benchmark: 'ring',
    date: new Date().toISOString(),
    machine: { cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length, node: process.version,
      platform: `${os.platform()} ${os.release()} ${os.arch()}`, memGiB: Math.round(os.totalmem() / 2 ** 30),
      loadavgAtStart: os.loadavg().map((x) => +x.toFixed(2)) },
    config: { runs, capacity, batch },
    throughput: [],
    latency: null,
    baseline: { throughput: [], latency: null },
  }
  result.singleThread = []
  for (const c of cases) {
    const ss = []
    for (let r = 0; r < runs; r++) ss.push(ringSingleThread(c.size, c.frames, capacity, batch))
    const srow = { size: c.size, fps: median(ss.map((x) => x.fps)), nsPerFrame: median(ss.map((x) => x.nsPerFrame)),
      pushNsPerFrame: median(ss.map((x) => x.pushNsPerFrame)) }
    result.singleThread.push(srow)
    console.log(`ring ${c.size} B one thread (push batch + drain): ${(srow.fps / 1e6).toFixed(2)} M frames/s, ${srow.nsPerFrame.toFixed(0)} ns/frame (push ${srow.pushNsPerFrame.toFixed(0)} ns)`)
  }
  for (const c of cases) {
    const rs = []
    for (let r = 0; r < runs; r++) rs.push(await ringThroughput(c.size, c.frames, capacity, batch))
    const ok = rs.every((x) => x.misordered === 0 && x.frames === c.frames)
    const row = { size: c.size, frames: c.frames, fps: median(rs.map((x) => x.fps)), mbps: median(rs.map((x) => x.mbps)),
      avgBatch: median(rs.map((x) => x.avgBatch)), refusedPerRun: median(rs.map((x) => x.refused)),
      wakeupsPerRun: median(rs.map((x) => x.wakeups)), allDeliveredInOrder: ok, runs: rs.map((x) => Math.round(x.fps)) }
    result.throughput.push(row)
    console.log(`ring ${c.size} B: ${(row.fps / 1e6).toFixed(2)} M frames/s, ${row.mbps.toFixed(0)} MB/s (median of ${runs}; runs ${row.runs.join(', ')}) in order: ${ok}`)
    const ps = []
    const pframes = Math.round(200_000 * scale)
    for (let r = 0; r < Math.min(runs, 3); r++) ps.push(await portThroughput(c.size, pframes))
    const prow = { size: c.size, frames: pframes, fps: median(ps.map((x) => x.fps)), mbps: median(ps.map((x) => x.mbps)) }
    result.baseline.throughput.push(prow)
    console.log(`  baseline MessagePort ${c.size} B: ${(prow.fps / 1e6).toFixed(3)} M frames/s -> ring is ${(row.fps / prow.fps).toFixed(1)}x`)
  }
  const samples = quick ? 200 : 1000
  const gapUs = 300
  const ls = []
  for (let r = 0; r < Math.min(runs, 3); r++) ls.push(await ringLatency(samples, gapUs))
  result.latency = { samples, gapUs, medianUs: median(ls.map((x) => x.medianUs)), p99Us: median(ls.map((x) => x.p99Us)),
    runs: ls.map((x) => ({ medianUs: +x.medianUs.toFixed(1), p99Us: +x.p99Us.toFixed(1), wakeups: x.wakeups })) }
  console.log(`ring wake-up latency: median ${result.latency.medianUs.toFixed(1)} us, p99 ${result.latency.p99Us.toFixed(1)} us`)
  const pl = []
  for (let r = 0; r < Math.min(runs, 3); r++) pl.push(await portLatency(samples, gapUs))
  result.baseline.latency = { samples, medianUs: median(pl.map((x) => x.medianUs)), p99Us: median(pl.map((x) => x.p99Us)) }
  console.log(`  baseline MessagePort latency: median ${result.baseline.latency.medianUs.toFixed(1)} us, p99 ${result.baseline.latency.p99Us.toFixed(1)} us`)

  if (write) {
    const day = result.date.slice(0, 10)
    const dir = new URL('./results/', import.meta.url)
    mkdirSync(dir, { recursive: true })
    writeFileSync(new URL(`ring-${day}.json`, dir), JSON.stringify(result, null, 2) + '\n')
    const md = [
      `# Ring benchmark ${day}`,
      '',
      `Machine: ${result.machine.cpu}, ${result.machine.cores} cores, ${result.machine.memGiB} GiB, ${result.machine.platform}, Node ${result.machine.node}; load average at start ${result.machine.loadavgAtStart.join(' / ')} (shared machine: other jobs ran alongside).`,
      `Ring ${capacity / 1024} KiB, drain batch ${batch}; producer in a worker thread, consumer in the main thread. Medians of ${runs} runs.`,
      '',
      '| frame | ring frames/s | ring MB/s | MessagePort frames/s | ratio | avg batch | refused/run |',
      '|---:|---:|---:|---:|---:|---:|---:|',
      ...result.throughput.map((r, i) => {
        const b = result.baseline.throughput[i]
        return `| ${r.size} B | ${(r.fps / 1e6).toFixed(2)} M | ${r.mbps.toFixed(0)} | ${(b.fps / 1e6).toFixed(3)} M | ${(r.fps / b.fps).toFixed(1)}x | ${r.avgBatch.toFixed(0)} | ${r.refusedPerRun} |`
      }),
      '',
      'Same thread (push a batch of 1024, drain it): the CPU cost of the ring itself, independent of scheduling:',
      '',
      ...result.singleThread.map((r) => `- ${r.size} B: ${(r.fps / 1e6).toFixed(2)} M frames/s, ${r.nsPerFrame.toFixed(0)} ns per frame (push ${r.pushNsPerFrame.toFixed(0)} ns, drain the rest)`),
      '',
      `Wake-up latency, idle consumer (${samples} samples, producer publishes ${gapUs} µs after the consumer sleeps):`,
      `ring median ${result.latency.medianUs.toFixed(1)} µs, p99 ${result.latency.p99Us.toFixed(1)} µs;`,
      `MessagePort median ${result.baseline.latency.medianUs.toFixed(1)} µs, p99 ${result.baseline.latency.p99Us.toFixed(1)} µs.`,
      '',
      'Target: at least 2,000,000 frames/s for 300-byte frames.',
      '',
    ].join('\n')
    writeFileSync(new URL(`ring-${day}.md`, dir), md)
    console.log(`wrote benchmarks/results/ring-${day}.json and .md`)
  }
}

if (isMainThread) await main()
