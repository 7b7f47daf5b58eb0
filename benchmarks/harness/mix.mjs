#!/usr/bin/env node
// The production-mix load harness (issues 8 and 17). See docs/benchmarks.md.
//
//   node benchmarks/harness/mix.mjs              the standard comparison: sipedge (workers: 2), sipedge
//                                                (default workers) and Kamailio, S = 1 and 20, 3 interleaved
//                                                repeats, medians and ratios, then the step run (~40 min)
//   node benchmarks/harness/mix.mjs --quick      the same, shortened (S=1, 1 repeat, one step; ~4 min)
//   node benchmarks/harness/mix.mjs --workers 1 --s 5 --no-step     one target you name, one scale
//   node benchmarks/harness/mix.mjs --targets sipedge:2,kamailio --step-only --steps 5,10,20
//
// It starts the node under test (pinned with taskset), the phones and application servers (piscina
// worker threads, pinned to the other CPUs), pre-registers the phones, warms up, measures a steady
// window, and writes benchmarks/results/mix-<date>-<tag>.{json,md,svg}.
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs'
import { tmpdir, availableParallelism } from 'node:os'
import { join, dirname, basename } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Piscina } from 'piscina'
import {
  ROOT, hookExit, killAll, startSipedge, startKamailio, stopNode, kamailioAvailable, kamailioPids,
  sampleCpu, cpuDelta, sampleMem, scrape, metricSum, ensureDir,
} from './procs.mjs'
import { aggregate, summarize, ratios, MIX_PER_MIN, METHODS } from './aggregate.mjs'
import { STANDARD_TARGETS, parseTargets, rotate, machine, load, pinSelf } from './common.mjs'
import { writeReports, reportBase } from './report.mjs'
import { flameProfiles } from '../flame.mjs'

export { MIX_PER_MIN, METHODS }
const PROF_CJS = fileURLToPath(new URL('./prof.cjs', import.meta.url))

// Flows per second at S = 1 (see docs/benchmarks.md for the decomposition):
//   answered calls 600/min: INVITE, ACK, BYE each; INFO in 1/2, REFER (+ NOTIFY) in 1/6, and in 2/3
//     the application server's 200 is retransmitted once, which the phone ACKs again (+400 ACK);
//   cancelled calls 600/min: INVITE, 180, CANCEL, 200, 487, ACK;
//   out-of-dialog NOTIFY (message-summary) from application servers via lookup: 3,200 - 100 = 3,100/min;
//   REGISTER 5,000/min: 5,000 phones refreshing every 60 s.
const FLOWS_PER_S = { answered: 600 / 60, cancelled: 600 / 60, notify: 3100 / 60, register: 5000 / 60 }

// ------------------------------------------------------------------------------ options
function parseArgs(argv) {
  const o = {
    scales: null, repeats: null, stepRepeats: 1, step: true, stepOnly: false, allSteps: false, budgetS: null,
    steps: [2, 5, 10, 20, 30, 40, 50, 60, 80],
    window: 40, warmup: 5, drain: 3, stepWindow: 12, stepWarmup: 3,
    targets: null, kamailio: null, kamailioOnly: false, noKamailio: false, workers: null,
    pin: availableParallelism() >= 2, proxyCpus: '0', loadCpus: null,
    threads: null, children: 4, backends: 4, holdMs: 4000, ringMs: 500, answerMs: 0, dupMs: 20,
    refreshS: 60, aors: null, store: 'lmdb', nodeArgs: [], sipedgeYaml: null, port: 25060, metricsPort: 25090, ringSample: false, profile: false,
    out: join(ROOT, 'benchmarks', 'results'), tag: null, capture: null, captureMax: 3000, json: null, quiet: false, quick: false,
  }
  if (argv.includes('--quick')) {
    // The standard comparison, shortened to check the whole chain end to end in a few minutes.
    Object.assign(o, { quick: true, scales: [1], repeats: 1, window: 10, warmup: 3, drain: 2, holdMs: 2000, steps: [2], stepWindow: 8, stepWarmup: 3, budgetS: 600 })
  }
  const list = (s) => s.split(',').map(Number)
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const v = () => argv[++i]
    switch (a) {
      case '--': case '--quick': break // pnpm passes `--` through (`pnpm bench:mix -- --quick`)
      case '--s': o.scales = list(v()); break
      case '--repeats': o.repeats = Number(v()); break
      case '--step-repeats': o.stepRepeats = Number(v()); break
      case '--step': o.step = true; break
      case '--no-step': o.step = false; break
      case '--step-only': o.stepOnly = true; o.step = true; break
      case '--all-steps': o.allSteps = true; break
      case '--budget': o.budgetS = Number(v()); break
      case '--steps': o.steps = list(v()); break
      case '--window': o.window = Number(v()); break
      case '--warmup': o.warmup = Number(v()); break
      case '--drain': o.drain = Number(v()); break
      case '--step-window': o.stepWindow = Number(v()); break
      case '--step-warmup': o.stepWarmup = Number(v()); break
      case '--targets': o.targets = parseTargets(v()); break
      case '--workers': o.workers = Number(v()); break
      case '--kamailio': o.kamailio = true; break
      case '--no-kamailio': case '--sipedge-only': o.noKamailio = true; break
      case '--kamailio-only': o.kamailio = true; o.kamailioOnly = true; break
      case '--pin': o.pin = true; break
      case '--no-pin': o.pin = false; break
      case '--proxy-cpus': o.proxyCpus = v(); break
      case '--load-cpus': o.loadCpus = v(); break
      case '--threads': o.threads = Number(v()); break
      case '--children': o.children = Number(v()); break
      case '--backends': o.backends = Number(v()); break
      case '--hold': o.holdMs = Number(v()) * 1000; break
      case '--refresh': o.refreshS = Number(v()); break
      case '--aors': o.aors = Number(v()); break
      case '--store': o.store = v(); break
      case '--node-args': o.nodeArgs = v().split(' ').filter(Boolean); break // e.g. '--cpu-prof --cpu-prof-dir /tmp/prof'
      case '--sipedge-yaml': o.sipedgeYaml = v(); break // top-level keys added to sipedge's config, e.g. 'helper_thread_nice: 10'
      case '--profile': o.profile = true; break
      case '--ring-sample': o.ringSample = true; break
      case '--port': case '--port-base': o.port = Number(v()); break
      case '--out': o.out = v(); break
      case '--tag': o.tag = v(); break
      case '--capture': o.capture = v(); break
      case '--capture-max': o.captureMax = Number(v()); break
      case '--json': o.json = v(); break
      case '--quiet': o.quiet = true; break
      case '--render': o.render = v(); break
      case '--plan': o.plan = true; break
      case '--help': case '-h':
        process.stdout.write(readFileSync(new URL(import.meta.url), 'utf8').split('\n').slice(1, 14).map(l => l.replace(/^\/\/ ?/, '')).join('\n') + '\nSee docs/benchmarks.md for every option.\n')
        process.exit(0)
        break
      default: throw new Error(`unknown option ${a} (see docs/benchmarks.md)`)
    }
  }
  // Targets: the standard three unless you name them (--targets, --workers, --kamailio, --kamailio-only);
  // named targets run once each unless --repeats says otherwise. --no-kamailio drops Kamailio from either.
  const named = o.targets !== null || o.workers !== null || o.kamailio !== null
  o.standard = !named
  const n = availableParallelism()
  if (o.targets === null) {
    if (!named) o.targets = STANDARD_TARGETS.map(t => ({ ...t }))
    else {
      o.targets = []
      if (!o.kamailioOnly) o.targets.push({ label: 'sipedge', kind: 'sipedge', workers: o.workers ?? (o.pin ? 1 : Math.min(2, n)) })
      if (o.kamailio) o.targets.push({ label: 'kamailio', kind: 'kamailio' })
    }
  }
  if (o.noKamailio) o.targets = o.targets.filter(t => t.kind !== 'kamailio')
  o.scales ??= o.standard ? [1, 20] : [1]
  o.repeats ??= o.standard ? 3 : 1
  o.budgetS ??= o.standard ? 5400 : 540
  if (o.scales.length > 10 || o.scales.some(x => !(x > 0 && x <= 200))) throw new Error('--s: at most 10 values in (0, 200]')
  if (o.steps.length > 20 || o.steps.some(x => !(x > 0 && x <= 200))) throw new Error('--steps: at most 20 values in (0, 200]')
  if (!(o.repeats >= 1 && o.repeats <= 9) || !(o.stepRepeats >= 1 && o.stepRepeats <= 9)) throw new Error('--repeats / --step-repeats must be in 1..9')
  if (o.window > 600 || o.stepWindow > 600) throw new Error('--window at most 600 s')
  if (!(o.port >= 1024 && o.port <= 65000)) throw new Error('--port-base must be in 1024..65000')
  o.metricsPort = o.port + 30
  if (o.loadCpus === null) o.loadCpus = n >= 2 ? `1-${n - 1}` : '0'
  if (o.threads === null) o.threads = o.pin ? Math.max(1, Math.min(4, n - 1)) : Math.max(1, Math.min(4, n))
  return o
}

const log = (o, ...a) => { if (!o.quiet) process.stderr.write(a.join(' ') + '\n') }

// ------------------------------------------------------------------------------ one measurement
async function runOne(o, pool, target, S, { window, warmup, repeat = 1, profile = false }) {
  warmup = Math.max(warmup, Math.ceil(o.holdMs / 1000) + 1) // calls started in the warm-up end inside the window
  const runId = Math.random().toString(36).slice(2, 8)
  const dir = mkdtempSync(join(tmpdir(), `sipedge-mix-${target.label}-`))
  const profDir = profile ? ensureDir(join(dir, 'prof')) : null
  const W = o.threads
  const domain = 'edge.test'
  const backends = Array.from({ length: o.backends }, (_, b) => ({ index: b, ip: `127.0.2.${b + 1}`, port: o.port + 10 }))
  const N = o.aors ?? Math.max(50, Math.round(5000 * S))
  const refreshS = o.aors !== null ? N / (FLOWS_PER_S.register * S) : o.refreshS
  const expires = Math.min(7200, Math.max(600, Math.ceil(refreshS * 2))) // > refresh + the pre-registration time
  let node, result
  const t = { start: Date.now() }
  try {
    node = target.kind === 'sipedge'
      ? await startSipedge({
        dir, runId, port: o.port, metricsPort: o.metricsPort, workers: target.workers, domain, backends, cpus: o.pin ? o.proxyCpus : null,
        // The preload goes in NODE_OPTIONS, which worker threads honour even when started with
        // their own (empty) execArgv, as sipedge starts them.
        nodeArgs: o.nodeArgs, env: profDir !== null ? { SIPEDGE_PROF_DIR: profDir, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --require ${PROF_CJS}`.trim() } : undefined,
        store: o.store === 'lmdb' ? `lmdb:${join(dir, 'store')}` : o.store, extraYaml: o.sipedgeYaml,
      })
      : await startKamailio({ dir, port: o.port, children: o.children, domain, backends, cpus: o.pin ? o.proxyCpus : null })
    const pids = () => node.kind === 'kamailio' ? kamailioPids(node.pid) : [node.pid]
    // 0. the node idle for 3 s: its fixed background cost
    const i0 = sampleCpu(pids())
    await new Promise(r => setTimeout(r, 3000))
    const idle = cpuDelta(i0, sampleCpu(pids()))
    // 1. pre-registration (closed loop; not measured)
    const pr0 = Date.now()
    const pre = await Promise.all(Array.from({ length: W }, (_, k) => pool.run({
      phase: 'prereg', k, W, runId, domain, proxy: { host: '127.0.0.1', port: o.port },
      phoneSock: { ip: `127.0.1.${k + 1}`, port: o.port + 20 }, backends: [], backendCount: backends.length,
      phones: { total: N, expires, refreshS }, rates: { answered: 0, cancelled: 0, notify: 0 }, times: { winStart: 0, winEnd: 0, drainEnd: 0 },
      deadline: Date.now() + 180000, preregWindow: Math.max(8, Math.ceil(256 / W)), captureMax: o.capture !== null ? Math.ceil(o.captureMax / W) : 0,
    })))
    const prereg = { seconds: +((Date.now() - pr0) / 1000).toFixed(1), sent: 0, done: 0, retrans: 0, codes: {} }
    const preCapture = []
    for (const x of pre) {
      prereg.sent += x.prereg.sent; prereg.done += x.prereg.done; prereg.retrans += x.prereg.retrans
      for (const [c, n] of Object.entries(x.prereg.codes)) prereg.codes[c] = (prereg.codes[c] ?? 0) + n
      for (const p of x.capture) preCapture.push(p)
    }
    prereg.perS = Math.round(prereg.done / Math.max(0.001, prereg.seconds))
    log(o, `[${target.label}] S=${S} #${repeat}: ${prereg.done}/${N} phones pre-registered in ${prereg.seconds} s (${prereg.perS}/s), answers ${JSON.stringify(prereg.codes)}`)
    // 2. load: warm-up, window, drain
    const t0 = Date.now() + 500
    const times = { t0, winStart: t0 + warmup * 1000, winEnd: t0 + (warmup + window) * 1000, drainEnd: t0 + (warmup + window + o.drain) * 1000 }
    log(o, `[${target.label}] S=${S} #${repeat}: warm-up ${warmup} s, window ${window} s`)
    const tasks = []
    for (let k = 0; k < W; k++) {
      tasks.push(pool.run({
        phase: 'load', k, W, runId, domain, proxy: { host: '127.0.0.1', port: o.port },
        phoneSock: { ip: `127.0.1.${k + 1}`, port: o.port + 20 },
        backends: backends.filter(b => b.index % W === k), backendCount: backends.length,
        phones: { total: N, expires, refreshS },
        rates: { answered: FLOWS_PER_S.answered * S, cancelled: FLOWS_PER_S.cancelled * S, notify: FLOWS_PER_S.notify * S },
        times, holdMs: o.holdMs, ringMs: o.ringMs, answerMs: o.answerMs, dupMs: o.dupMs,
        captureMax: o.capture !== null ? Math.max(0, Math.ceil(o.captureMax / W) - Math.ceil(preCapture.length / W)) : 0,
      }))
    }
    // Proxy-side sampling at the window's edges. The metrics scrapes cost the node CPU, so they are
    // made outside the sampled CPU interval; ring occupancy during the window only on request.
    const sleepUntil = (ms) => new Promise(r => setTimeout(r, Math.max(0, ms - Date.now())))
    const sampling = (async () => {
      await sleepUntil(times.winStart - 300)
      const m0 = await scrape(node.metricsUrl)
      await sleepUntil(times.winStart)
      if (profDir !== null) writeFileSync(join(profDir, 'start'), '')
      const c0 = sampleCpu(pids()), h0 = sampleCpu([process.pid])
      let ringMax = null
      while (o.ringSample && Date.now() < times.winEnd - 1000) {
        await sleepUntil(Math.min(times.winEnd - 500, Date.now() + 2000))
        const txt = await scrape(node.metricsUrl)
        const used = metricSum(txt, 'sipedge_ring_used_bytes'), cap = metricSum(txt, 'sipedge_ring_capacity_bytes')
        if (used !== null && cap) ringMax = Math.max(ringMax ?? 0, used / cap)
      }
      await sleepUntil(times.winEnd)
      const c1 = sampleCpu(pids()), h1 = sampleCpu([process.pid])
      if (profDir !== null) writeFileSync(join(profDir, 'stop'), '')
      const mem = sampleMem(pids())
      const m1 = await scrape(node.metricsUrl)
      return { cpu: cpuDelta(c0, c1), harness: cpuDelta(h0, h1), mem, m0, m1, ringMax }
    })()
    const [results, samp] = await Promise.all([Promise.all(tasks), sampling])
    t.end = Date.now()
    results[0].capture = [...preCapture, ...results[0].capture]
    result = aggregate({ target: target.label, kind: target.kind, workers: target.workers, children: o.children, repeat, S, N, refreshS, expires, window, warmup, W, results, samp, node, dir, prereg, idle })
    return result
  } finally {
    if (node !== undefined) await stopNode(node)
    if (profDir !== null) {
      try {
        const base = `${o.base}-profile-${target.label}-S${S}`
        const p = await flameProfiles(profDir, o.out, base, { requests: result?.offered ?? null })
        for (const f of p.files) log(o, `wrote ${f}`)
        if (result !== undefined) {
          result.profile = { files: p.files.map(f => basename(f)), procCpuMs: result.cpu.ms, threads: p.threads, stages: p.stages }
          writeFileSync(join(o.out, `${base}-stages.md`), stagesMarkdown(result, base))
          log(o, `wrote ${join(o.out, `${base}-stages.md`)}`)
        }
      } catch (err) { log(o, `profile: ${err.message}`) }
    }
    if (process.env.SIPEDGE_MIX_KEEP !== '1') rmSync(dir, { recursive: true, force: true })
  }
}

// ------------------------------------------------------------------------------ main
/** Rough wall time of one measurement, for the time budget. */
const estimateS = (o, S, window, warmup) => 8 + Math.max(warmup, o.holdMs / 1000 + 1) + window + o.drain + (o.aors ?? 5000 * S) / 3000

async function main() {
  const o = parseArgs(process.argv.slice(2))
  if (o.render !== undefined) {
    // Re-render .md/.svg (and the targets) of an existing results JSON, e.g. after a report change.
    const run = JSON.parse(readFileSync(o.render, 'utf8'))
    o.out = dirname(o.render)
    o.tag = basename(o.render, '.json').replace(/^mix-\d{4}-\d\d-\d\d-/, '')
    for (const f of await writeReports(run, o)) log(o, `wrote ${f}`)
    return run
  }
  if (o.plan) {
    // What would run, and roughly how long the fixed-scale part takes (steps depend on where each target fails).
    const fixedS = o.stepOnly ? 0 : o.scales.reduce((a, S) => a + o.repeats * o.targets.length * estimateS(o, S, o.window, o.warmup), 0)
    process.stdout.write(JSON.stringify({
      setup: o.standard ? (o.quick ? 'standard (quick)' : 'standard') : 'custom', targets: o.targets, scales: o.stepOnly ? [] : o.scales, repeats: o.repeats,
      steps: o.step ? o.steps : [], stepRepeats: o.stepRepeats, windowS: o.window, stepWindowS: o.stepWindow, budgetS: o.budgetS, pin: o.pin ? { node: o.proxyCpus, generator: o.loadCpus } : false,
      estimatedFixedScaleMinutes: +(fixedS / 60).toFixed(1),
    }, null, 2) + '\n')
    return null
  }
  hookExit()
  if (o.pin) {
    if (!pinSelf(o.loadCpus)) { log(o, 'harness: taskset failed; not pinned'); o.pin = false }
  }
  let targets = o.targets
  if (targets.some(t => t.kind === 'kamailio') && !kamailioAvailable()) {
    log(o, 'harness: kamailio not installed (apt-get install -y kamailio); Kamailio side skipped')
    targets = targets.filter(t => t.kind !== 'kamailio')
  }
  if (targets.length === 0) throw new Error('no target to measure')
  const pool = new Piscina({ filename: new URL('./ua.mjs', import.meta.url).href, minThreads: o.threads, maxThreads: o.threads, concurrentTasksPerWorker: 1, idleTimeout: 60000 })
  hookExit()
  const started = new Date()
  o.base = reportBase(started.toISOString(), o.tag ?? targets.map(t => t.label).join('-'))
  const run = {
    date: started.toISOString(),
    machine: machine(targets.some(t => t.kind === 'kamailio')),
    loadAverage: { start: load() },
    setup: o.standard ? (o.quick ? 'standard (quick)' : 'standard') : 'custom',
    options: {
      pin: o.pin, proxyCpus: o.pin ? o.proxyCpus : null, loadCpus: o.pin ? o.loadCpus : null, generatorThreads: o.threads,
      targets, scales: o.scales, repeats: o.repeats, stepRepeats: o.stepRepeats, windowS: o.window, stepWindowS: o.stepWindow,
      sipedgeWorkers: targets.find(t => t.kind === 'sipedge')?.workers ?? null, kamailioChildren: o.children,
      backends: o.backends, holdS: o.holdMs / 1000, store: o.store, steps: o.steps, ringSample: o.ringSample, profile: o.profile, nodeArgs: o.nodeArgs, sipedgeYaml: o.sipedgeYaml,
    },
    mix: MIX_PER_MIN,
    runs: [], summaries: [], ratios: [], steps: {},
  }
  try {
    // 1. fixed scales: repeats interleaved across the targets
    if (!o.stepOnly) {
      for (const S of o.scales) {
        for (let rep = 1; rep <= o.repeats; rep++) {
          for (const target of rotate(targets, rep - 1)) {
            const r = await runOne(o, pool, target, S, { window: o.window, warmup: o.warmup, repeat: rep, profile: o.profile && rep === 1 })
            run.runs.push(r)
            log(o, summaryLine(r))
          }
        }
        for (const target of targets) run.summaries.push(summarize(run.runs.filter(r => r.target === target.label && r.S === S)))
        run.ratios.push(...ratios(run.summaries, run.runs, S))
        for (const x of run.ratios.filter(y => y.S === S)) log(o, `[${x.target} / ${x.against}] S=${S}: CPU per 1k ${x.cpuMsPer1k.ratioOfMedians} (paired ${x.cpuMsPer1k.medianOfPairedRatios}), p99 ${x.p99.ratioOfMedians}, NOTIFY RTT p99 ${x.notifyRttP99.ratioOfMedians}, PSS ${x.pss.ratioOfMedians}`)
      }
    }
    // 2. step run: every target climbs the same steps side by side until its first failing step
    if (o.step) await stepRun(o, pool, targets, run, started)
  } finally {
    await pool.destroy()
    killAll()
  }
  run.loadAverage.end = load()
  run.durationS = Math.round((Date.now() - started.getTime()) / 1000)
  const files = await writeReports(run, o)
  for (const f of files) log(o, `wrote ${f}`)
  if (o.json !== null) writeFileSync(o.json, JSON.stringify(run, null, 2))
  return run
}

async function stepRun(o, pool, targets, run, started) {
  const st = {}
  for (const t of targets) st[t.label] = { highestCleanS: null, firstFailingS: null, generatorBound: false, stoppedByBudgetBeforeS: null, steps: [], runs: [] }
  const alive = new Set(targets.map(t => t.label))
  for (const S of o.steps) {
    const live = targets.filter(t => alive.has(t.label))
    if (live.length === 0) break
    const results = new Map()
    // A step at a scale the fixed runs measured reuses their medians (longer window, more repeats).
    for (const t of live) {
      const fixed = run.summaries.find(x => x.target === t.label && x.S === S)
      if (fixed !== undefined) results.set(t.label, { ...fixed, reused: 'fixed-scale runs' })
    }
    const toRun = live.filter(t => !results.has(t.label))
    const needS = toRun.length * o.stepRepeats * estimateS(o, S, o.stepWindow, o.stepWarmup)
    const leftS = o.budgetS - (Date.now() - started.getTime()) / 1000
    if (toRun.length > 0 && needS > leftS) {
      for (const t of toRun) { st[t.label].stoppedByBudgetBeforeS = S; alive.delete(t.label) }
      log(o, `step run: S=${S} (~${Math.round(needS)} s) does not fit in the time budget (--budget ${o.budgetS} s, ${Math.round(leftS)} s left): stopped`)
      if (results.size === 0) break
    } else {
      for (let rep = 1; rep <= o.stepRepeats; rep++) {
        for (const t of rotate(toRun, rep - 1)) {
          const r = await runOne(o, pool, t, S, { window: o.stepWindow, warmup: o.stepWarmup, repeat: rep })
          delete r.capture
          st[t.label].runs.push(r)
          log(o, summaryLine(r))
        }
      }
      for (const t of toRun) results.set(t.label, summarize(st[t.label].runs.filter(r => r.S === S)))
    }
    for (const [label, x] of results) {
      const s = st[label]
      s.steps.push(x)
      if (!x.clean) { s.firstFailingS ??= S; if (!o.allSteps) alive.delete(label); continue }
      if (s.firstFailingS === null) s.highestCleanS = S
      if (x.generatorSaturated) { s.generatorBound = true; alive.delete(label) }
    }
  }
  run.steps = st
  run.stepRatios = []
  const stepSummaries = Object.values(st).flatMap(s => s.steps), stepRuns = Object.values(st).flatMap(s => s.runs)
  for (const S of o.steps) run.stepRatios.push(...ratios(stepSummaries, [...stepRuns, ...run.runs], S))
}

/** The stage table of a profiled run: where the node's CPU went, µs per request offered. */
function stagesMarkdown(r, base) {
  const p = r.profile
  const js = p.threads.reduce((a, t) => a + t.ms, 0)
  const L = [`# Where the CPU went — ${r.target}, S=${r.S} (profiled window)`, '']
  L.push(`Flame graphs: ${p.files.filter(f => f.endsWith('.svg')).join(', ')}. ${r.offered} requests offered in the window; the node's CPU over it (from /proc, all threads): ${r.cpu.ms.toFixed(0)} ms = ${r.cpu.msPer1kRequests} µs per request (profiling on: above an unprofiled run); sampled in JS isolates: ${js.toFixed(0)} ms. The rest (${(r.cpu.ms - js).toFixed(0)} ms) is kernel time (recvmsg/sendmsg, epoll, futex wake-ups) and threads with no isolate (libuv pool, V8 platform).`, '')
  L.push('| stage (all threads) | ms | share of sampled | µs per request |', '| --- | ---: | ---: | ---: |')
  for (const x of p.stages) L.push(`| ${x.stage} | ${x.ms} | ${(x.share * 100).toFixed(1)}% | ${x.usPerRequest ?? 'n/a'} |`)
  L.push('')
  for (const t of p.threads) {
    L.push(`## ${t.thread}: ${t.ms} ms sampled`, '', '| stage | ms | µs per request |', '| --- | ---: | ---: |')
    for (const x of t.stages) L.push(`| ${x.stage} | ${x.ms} | ${x.usPerRequest ?? 'n/a'} |`)
    L.push('')
  }
  L.push(`Stages are recognised by the file of the deepest frame that belongs to one (benchmarks/flame.mjs STAGES); folded stacks are in ${base}-*.folded.`, '')
  return L.join('\n')
}

function summaryLine(r) {
  return `[${r.target}] S=${r.S} #${r.repeat}: offered ${r.offeredPerS}/s of ${r.plannedPerS}/s planned, completed ${r.completedPerS}/s, fail ${(r.failureRate * 100).toFixed(2)}%, retx ${(r.retransmissionRate * 100).toFixed(2)}%, p50/p99 ${r.latencyMs.p50}/${r.latencyMs.p99} ms, NOTIFY RTT p99 ${r.notifyRoundTripMs.p99} ms, CPU ${r.cpu.msPer1kRequests} ms/1k req (${r.cpu.pctOfOneCore}% of a core; idle ${r.idleCpuPct}%), generator ${r.generator.cpuPct}%, RSS ${r.memory.rssMB} MB, PSS ${r.memory.pssMB} MB, registrar: ${r.registrar.status.slice(0, 60)}${r.generator.saturated ? ' [GENERATOR SATURATED: ' + r.generator.reasons.join('; ') + ']' : ''}${r.generator.warnings.length > 0 ? ' [' + r.generator.warnings[0].split(':')[0] + ']' : ''}${r.clean ? '' : ' [NOT CLEAN: ' + r.thresholdReasons.join('; ') + ']'}`
}

main().catch(err => { process.stderr.write(`harness: ${err?.stack ?? err}\n`); killAll(); process.exit(1) })
