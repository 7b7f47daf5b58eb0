#!/usr/bin/env node
// The idle benchmark (issue 17, "no cost when idle"): what a node costs when nothing happens.
// Each target is started with its listener (UDP) and dispatcher health probes every 5 s to one
// application server that answers them (played here), and nothing else; after a settling time its
// CPU is measured over a window (60 s): % of one core for the whole process (sipedge: all threads;
// Kamailio: all processes) from the scheduler's ns counters, per thread with wake-ups per second.
//
//   node benchmarks/harness/idle.mjs                     sipedge (workers 2, default), Kamailio; 60 s each
//   node benchmarks/harness/idle.mjs --seconds 20 --targets sipedge:2
//
// Writes benchmarks/results/idle-<date>[-tag].{json,md}. Loopback only, bounded in time.
import { createSocket } from 'node:dgram'
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs'
import { tmpdir, availableParallelism } from 'node:os'
import { join } from 'node:path'
import { hookExit, killAll, startSipedge, startKamailio, stopNode, kamailioAvailable, kamailioPids, scrape, metricByLabel, metricSum, ROOT } from './procs.mjs'
import { sampleThreads, threadDelta } from './procfs.mjs'
import { STANDARD_TARGETS, parseTargets, rotate, machine, load, pinSelf } from './common.mjs'
import { parse, response } from './sip.mjs'

const IDLE_TARGET_PCT = 0.1

function parseArgs(argv) {
  const o = { seconds: 60, settle: 10, probeS: 5, repeats: 1, targets: null, pin: availableParallelism() >= 2, proxyCpus: '0', loadCpus: null, children: 4, port: 26160, out: join(ROOT, 'benchmarks', 'results'), tag: null, json: null }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const v = () => argv[++i]
    switch (a) {
      case '--': break
      case '--seconds': o.seconds = Number(v()); break
      case '--settle': o.settle = Number(v()); break
      case '--probe': o.probeS = Number(v()); break
      case '--repeats': o.repeats = Number(v()); break
      case '--targets': o.targets = parseTargets(v()); break
      case '--no-pin': o.pin = false; break
      case '--proxy-cpus': o.proxyCpus = v(); break
      case '--load-cpus': o.loadCpus = v(); break
      case '--children': o.children = Number(v()); break
      case '--port-base': o.port = Number(v()); break
      case '--out': o.out = v(); break
      case '--tag': o.tag = v(); break
      case '--node-args': o.nodeArgs = v().split(' ').filter(Boolean); break // V8/Node flags for sipedge, e.g. '--single-threaded-gc'
      case '--json': o.json = v(); break
      default: throw new Error(`unknown option ${a} (see docs/performance.md)`)
    }
  }
  if (!(o.seconds >= 5 && o.seconds <= 600)) throw new Error('--seconds must be in 5..600')
  if (!(o.settle >= 0 && o.settle <= 120)) throw new Error('--settle must be in 0..120')
  if (!(o.repeats >= 1 && o.repeats <= 5)) throw new Error('--repeats must be in 1..5')
  if (!(o.probeS >= 1 && o.probeS <= 60)) throw new Error('--probe must be in 1..60 s')
  if (!(o.port >= 1024 && o.port <= 65000)) throw new Error('--port-base must be in 1024..65000')
  const n = availableParallelism()
  o.loadCpus ??= n >= 2 ? `1-${n - 1}` : '0'
  o.targets ??= STANDARD_TARGETS.map(t => ({ ...t }))
  return o
}

/** One application server that answers OPTIONS (the probes) with 200 and counts them. */
async function peer(ip, port) {
  const s = createSocket('udp4')
  const st = { probes: 0, other: 0 }
  s.on('message', (buf, rinfo) => {
    const m = parse(buf)
    if (m === null || !m.isReq) { st.other++; return }
    if (m.method === 'OPTIONS') st.probes++
    else st.other++
    if (m.method !== 'ACK') s.send(response(m, 200, 'OK', { toTag: 'idle' }), rinfo.port, rinfo.address)
  })
  await new Promise((resolve, reject) => { s.once('error', reject); s.bind(port, ip, resolve) })
  return { st, close: () => s.close() }
}

async function measure(o, target, repeat) {
  const dir = mkdtempSync(join(tmpdir(), `sipedge-idle-${target.label}-`))
  const backends = [{ index: 0, ip: '127.0.2.1', port: o.port + 10 }]
  const app = await peer(backends[0].ip, backends[0].port)
  let node
  try {
    const cpusArg = o.pin ? o.proxyCpus : null
    node = target.kind === 'sipedge'
      ? await startSipedge({ dir, runId: 'idle', port: o.port, metricsPort: o.port + 30, workers: target.workers, domain: 'edge.test', backends, cpus: cpusArg, probe: `${o.probeS}s`, store: `lmdb:${join(dir, 'store')}`, nodeArgs: o.nodeArgs })
      : await startKamailio({ dir, port: o.port, children: o.children, domain: 'edge.test', backends, cpus: cpusArg, probeS: o.probeS })
    const pids = () => node.kind === 'kamailio' ? kamailioPids(node.pid) : [node.pid]
    await new Promise(r => setTimeout(r, o.settle * 1000))
    const p0 = app.st.probes
    const a = sampleThreads(pids())
    await new Promise(r => setTimeout(r, o.seconds * 1000))
    const b = sampleThreads(pids())
    const probes = app.st.probes - p0
    const d = threadDelta(a, b)
    // After the window (a scrape costs the node CPU): sipedge's own view of its threads.
    let sipedgeThreads
    if (node.metricsUrl !== null) {
      const txt = await scrape(node.metricsUrl)
      const heap = metricByLabel(txt, 'sipedge_thread_heap_used_bytes', 'thread')
      if (heap !== null) sipedgeThreads = { heapUsedMB: Object.fromEntries(Object.entries(heap).map(([k, v]) => [k, +(v / 1048576).toFixed(1)])), workersAlive: metricSum(txt, 'sipedge_workers_alive') }
    }
    return {
      target: target.label, kind: target.kind, workers: target.kind === 'sipedge' ? target.workers ?? 'default' : undefined, repeat,
      windowS: d.wallS, cpuPct: d.cpuPct, cpuPctFrom: d.cpuPctFrom, cpuPctTicks: d.cpuPctTicks, wakeupsPerS: d.wakeupsPerS,
      probesAnswered: probes, probesExpected: Math.floor(o.seconds / o.probeS) * backends.length, otherRequestsAtPeer: app.st.other,
      threads: d.threads.slice(0, 40), sipedgeThreads,
      met: d.cpuPct < IDLE_TARGET_PCT,
    }
  } finally {
    if (node !== undefined) await stopNode(node)
    app.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

function markdown(run) {
  const L = [`# Idle benchmark — ${run.date.slice(0, 10)}`, '']
  L.push('Generated by `benchmarks/harness/idle.mjs` (docs/performance.md). Each node runs with its UDP listener and dispatcher OPTIONS probes every ' +
    `${run.options.probeS} s to one application server that answers them, and no other traffic; after ${run.options.settleS} s of settling, its CPU is measured over ${run.options.seconds} s.`, '')
  const m = run.machine
  L.push(`- Machine: ${m.cpu}, ${m.cores} cores, Linux ${m.kernel}, Node ${m.node}${m.kamailio ? `, ${m.kamailio}` : ''}; load average ${run.loadAverage.start.join(' ')} → ${run.loadAverage.end.join(' ')} (shared machine)`)
  L.push(`- Pinning: ${run.options.pin ? `node on CPU ${run.options.proxyCpus}, harness on CPU ${run.options.loadCpus}` : 'none'}`, '')
  L.push('| node | # | CPU % of a core | target < 0.1% | wake-ups /s | probes answered (≈ expected) | busiest threads (% of a core, wake-ups/s) |', '| --- | ---: | ---: | --- | ---: | ---: | --- |')
  for (const r of run.results) {
    L.push(`| ${r.target}${r.workers !== undefined ? ` (workers ${r.workers}${r.sipedgeThreads?.workersAlive !== undefined && r.sipedgeThreads?.workersAlive !== null ? ` = ${r.sipedgeThreads.workersAlive}` : ''})` : ` (children ${run.options.children})`} | ${r.repeat} | ${r.cpuPct.toFixed(3)} | ${r.met ? 'met' : `missed (${(r.cpuPct / IDLE_TARGET_PCT).toFixed(1)}×)`} | ${r.wakeupsPerS} | ${r.probesAnswered} (${r.probesExpected}) | ${r.threads.filter(t => t.cpuMs > 0).slice(0, 6).map(t => `${t.name} ${t.cpuPct.toFixed(3)} (${t.wakeupsPerS})`).join(', ')} |`)
  }
  L.push('', 'CPU: the scheduler\'s runtime counters (/proc/PID/task/*/schedstat, ns) summed over the threads alive at both ends of the window (sipedge: all threads of the process; Kamailio: all its processes); the 100 Hz tick figure from /proc/PID/stat is in the JSON (`cpuPctTicks`). Wake-ups: voluntary context switches (a thread that slept and was woken), the usual cause of idle CPU: timers, polls, probes.', '')
  const se = run.results.filter(r => r.kind === 'sipedge'), ka = run.results.filter(r => r.kind === 'kamailio')
  if (se.length > 0 && ka.length > 0) {
    const kmed = ka.map(r => r.cpuPct).sort((x, y) => x - y)[ka.length >> 1]
    for (const label of [...new Set(se.map(r => r.target))]) {
      const xs = se.filter(r => r.target === label).map(r => r.cpuPct).sort((x, y) => x - y)
      L.push(`- ${label} / Kamailio idle CPU: ${kmed > 0 ? (xs[xs.length >> 1] / kmed).toFixed(2) : 'n/a (Kamailio 0)'} (${xs[xs.length >> 1].toFixed(3)}% vs ${kmed.toFixed(3)}%)`)
    }
    L.push('')
  }
  return L.join('\n')
}

async function main() {
  const o = parseArgs(process.argv.slice(2))
  hookExit()
  if (o.pin && !pinSelf(o.loadCpus)) o.pin = false
  let targets = o.targets
  if (targets.some(t => t.kind === 'kamailio') && !kamailioAvailable()) {
    process.stderr.write('idle: kamailio not installed; Kamailio side skipped\n')
    targets = targets.filter(t => t.kind !== 'kamailio')
  }
  const started = new Date()
  const run = {
    date: started.toISOString(), machine: machine(targets.some(t => t.kind === 'kamailio')), loadAverage: { start: load() },
    options: { seconds: o.seconds, settleS: o.settle, probeS: o.probeS, repeats: o.repeats, pin: o.pin, proxyCpus: o.proxyCpus, loadCpus: o.loadCpus, children: o.children, nodeArgs: o.nodeArgs ?? [], targets },
    results: [],
  }
  try {
    for (let rep = 1; rep <= o.repeats; rep++) {
      for (const t of rotate(targets, rep - 1)) {
        process.stderr.write(`[${t.label}] idle #${rep}: settle ${o.settle} s, measure ${o.seconds} s\n`)
        const r = await measure(o, t, rep)
        run.results.push(r)
        process.stderr.write(`[${t.label}] idle #${rep}: ${r.cpuPct.toFixed(3)}% of a core (${r.cpuPctFrom}; ticks ${r.cpuPctTicks}%), ${r.wakeupsPerS} wake-ups/s, probes ${r.probesAnswered}/${r.probesExpected}\n`)
      }
    }
  } finally { killAll() }
  run.loadAverage.end = load()
  run.durationS = Math.round((Date.now() - started.getTime()) / 1000)
  mkdirSync(o.out, { recursive: true })
  const base = join(o.out, `idle-${run.date.slice(0, 10)}${o.tag ? `-${o.tag}` : ''}`)
  writeFileSync(`${base}.json`, JSON.stringify(run, null, 2) + '\n')
  writeFileSync(`${base}.md`, markdown(run))
  if (o.json !== null) writeFileSync(o.json, JSON.stringify(run, null, 2))
  process.stderr.write(`wrote ${base}.json\nwrote ${base}.md\n`)
}

main().catch(err => { process.stderr.write(`idle: ${err?.stack ?? err}\n`); killAll(); process.exit(1) })
