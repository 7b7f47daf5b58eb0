// Turning the generator threads' counts into one run's figures (aggregate), and several
// interleaved repeats of one (target, S) into medians with their spread (summarize), and the
// sipedge / Kamailio ratios of a scale (ratios). See docs/benchmarks.md "What is measured".
import { HIST_SIZE, percentiles } from './sip.mjs'
import { metricSum, metricByLabel } from './procs.mjs'

export const MIX_PER_MIN = { REGISTER: 5000, NOTIFY: 3200, ACK: 1600, INVITE: 1200, BYE: 600, CANCEL: 600, INFO: 300, REFER: 100 }
export const METHODS = Object.keys(MIX_PER_MIN)

/** The clean thresholds of the issue: failures and retransmissions <= 0.5%, p99 <= 50 ms. */
export const CLEAN = { failureRate: 0.005, retransmissionRate: 0.005, p99Ms: 50 }

export function aggregate(r) {
  const { results, samp, window, S } = r
  const methods = {}
  const latAll = new Array(HIST_SIZE).fill(0)
  const kinds = {}
  const registrarCodes = {}
  const prereg = r.prereg
  const unexpected = { parseErrors: 0, strayResponses: 0, requestsAtPhone: {}, requestsAtBackend: {} }
  const regRtt = new Array(HIST_SIZE).fill(0)
  const rttAll = {}
  for (const m of METHODS) rttAll[m] = new Array(HIST_SIZE).fill(0)
  const add = (a, b) => { for (const [k2, v] of Object.entries(b)) a[k2] = (a[k2] ?? 0) + v }
  for (const m of METHODS) methods[m] = { plannedPerS: MIX_PER_MIN[m] * S / 60, offered: 0, completed: 0, failed: 0, retrans: 0, delivered: 0, fail: {}, hist: new Array(HIST_SIZE).fill(0) }
  let eldP99 = 0, eldMax = 0
  const capture = []
  for (const x of results) {
    for (const m of METHODS) {
      const a = methods[m], b = x.st[m]
      a.offered += b.offered; a.completed += b.completed; a.failed += b.failed; a.retrans += b.retrans; a.delivered += b.delivered
      add(a.fail, b.fail)
      const h = x.lat[m]
      for (let i = 0; i < HIST_SIZE; i++) { a.hist[i] += h[i]; latAll[i] += h[i] }
    }
    for (let i = 0; i < HIST_SIZE; i++) regRtt[i] += x.regRtt[i]
    for (const m of METHODS) { const h = x.rtt?.[m]; if (h !== undefined) for (let i = 0; i < HIST_SIZE; i++) rttAll[m][i] += h[i] }
    add(kinds, x.kinds); add(registrarCodes, x.registrarCodes)
    unexpected.parseErrors += x.unexpected.parseErrors; unexpected.strayResponses += x.unexpected.strayResponses
    add(unexpected.requestsAtPhone, x.unexpected.requestsAtPhone); add(unexpected.requestsAtBackend, x.unexpected.requestsAtBackend)
    eldP99 = Math.max(eldP99, x.eventLoopDelayMs.p99 ?? 0); eldMax = Math.max(eldMax, x.eventLoopDelayMs.max ?? 0)
    for (const p of x.capture) capture.push(p)
  }
  // ACK has no response: completed = delivered at the application server; the rest failed.
  const ack = methods.ACK
  ack.completed = Math.min(ack.offered, ack.delivered)
  const ackLost = Math.max(0, ack.offered - ack.delivered)
  if (ackLost > 0) { ack.failed += ackLost; ack.fail['not-delivered'] = ackLost }

  const regTotal = Object.values(registrarCodes).reduce((a, b) => a + b, 0)
  const reg200 = registrarCodes['200'] ?? 0
  const registrarOk = regTotal > 0 && reg200 / regTotal > 0.9
  const registrar = registrarOk
    ? { status: 'answered 200', codes: registrarCodes }
    : { status: regTotal === 0 ? 'no answer' : `NOT WORKING: REGISTER answered ${Object.entries(registrarCodes).map(([c, n]) => `${c} x${n}`).join(', ')} — the registrar is not wired into the running product; REGISTER and NOTIFY-via-lookup figures are reported but excluded from the failure threshold`, codes: registrarCodes }

  let offered = 0, completed = 0, failed = 0, retrans = 0, thresholdOffered = 0, thresholdFailed = 0, thresholdRetrans = 0
  const table = {}
  for (const m of METHODS) {
    const a = methods[m]
    offered += a.offered; completed += a.completed; failed += a.failed; retrans += a.retrans
    // Without a registrar REGISTER fails (501) and lookup-NOTIFYs fail (404) by construction:
    // reported, but kept out of the failure threshold (the registrar status says so).
    if (registrarOk || m !== 'REGISTER') {
      let off = a.offered, fl = a.failed
      if (!registrarOk && m === 'NOTIFY') {
        off -= kinds['NOTIFY:out-of-dialog-via-lookup'] ?? 0
        fl -= (a.fail['404'] ?? 0) + (a.fail['480'] ?? 0)
      }
      thresholdOffered += off; thresholdFailed += Math.max(0, fl); thresholdRetrans += a.retrans
    }
    const p = percentiles(a.hist)
    const q = percentiles(rttAll[m])
    table[m] = {
      plannedPerS: +a.plannedPerS.toFixed(2), offeredPerS: +(a.offered / window).toFixed(2), completedPerS: +(a.completed / window).toFixed(2),
      offered: a.offered, completed: a.completed, failed: a.failed, retransmissions: a.retrans, fail: a.fail,
      perMinAtS1: +(a.offered / window * 60 / S).toFixed(0),
      latencyMs: { samples: p.count, p50: p.p50, p95: p.p95, p99: p.p99 },
      roundTripMs: { samples: q.count, p50: q.p50, p95: q.p95, p99: q.p99 },
    }
  }
  const lp = percentiles(latAll)
  const rp = percentiles(regRtt)
  const np = percentiles(rttAll.NOTIFY)
  const plannedTotal = Object.values(MIX_PER_MIN).reduce((a, b) => a + b, 0) * S / 60
  const achieved = offered / window
  const cpuMsPer1k = offered > 0 ? samp.cpu.cpuMs / offered * 1000 : null
  const failRate = thresholdOffered > 0 ? thresholdFailed / thresholdOffered : 0
  const retransRate = thresholdOffered > 0 ? thresholdRetrans / thresholdOffered : 0
  const reasons = []
  reasons.push(...thresholdReasons(failRate, retransRate, lp.p99))
  // Generator saturation: achieved vs planned rate, generator thread CPU, its event-loop delay.
  const gen = []
  if (achieved < plannedTotal * 0.97) gen.push(`offered ${achieved.toFixed(0)}/s < 97% of planned ${plannedTotal.toFixed(0)}/s`)
  const busiest = samp.harness.threads[0]
  if (busiest !== undefined && busiest.cpuPct > 90) gen.push(`generator thread ${busiest.name} at ${busiest.cpuPct}% CPU`)
  const genWarnings = []
  if (eldP99 > 20) genWarnings.push(`generator event-loop delay p99 ${eldP99.toFixed(1)} ms: the generator itself was late (CPU contention), latency figures include that delay`)
  const m0 = samp.m0, m1 = samp.m1
  const metricsAvailable = m1 !== null
  const diff = (name, re) => { const a = metricSum(m0, name, re), b = metricSum(m1, name, re); return a === null || b === null ? null : b - a }
  // Per sipedge thread (primary, worker-N): event-loop busy time over the window, V8 heap used at its end.
  let perThread
  if (metricsAvailable && m0 !== null) {
    const b0 = metricByLabel(m0, 'sipedge_thread_busy_seconds_total', 'thread'), b1 = metricByLabel(m1, 'sipedge_thread_busy_seconds_total', 'thread')
    const hp = metricByLabel(m1, 'sipedge_thread_heap_used_bytes', 'thread')
    perThread = Object.keys(b1).map(t => ({ thread: t, busyPct: +((b1[t] - (b0[t] ?? 0)) / samp.cpu.wallS * 100).toFixed(2), heapUsedMB: hp[t] === undefined ? null : +(hp[t] / 1048576).toFixed(1) }))
  }
  const heap = metricsAvailable ? (metricSum(m1, 'sipedge_thread_heap_used_bytes') ?? metricSum(m1, 'nodejs_heap_size_used_bytes')) : null
  return {
    target: r.target, kind: r.kind, repeat: r.repeat, S, aors: r.N, refreshS: +r.refreshS.toFixed(1), expires: r.expires,
    windowS: window, warmupS: r.warmup, generatorThreads: r.W, sipedgeWorkers: r.kind === 'sipedge' ? r.workers ?? 'default' : undefined, sipedgeWorkersAlive: r.kind === 'sipedge' && metricsAvailable ? metricSum(m1, 'sipedge_workers_alive') : undefined, kamailioChildren: r.kind === 'kamailio' ? r.children : undefined,
    plannedPerS: +plannedTotal.toFixed(1), offeredPerS: +achieved.toFixed(1), completedPerS: +(completed / window).toFixed(1),
    offered, completed, failed, retransmissions: retrans,
    failureRate: +failRate.toFixed(5), retransmissionRate: +retransRate.toFixed(5),
    registrar, prereg,
    latencyMs: { what: 'one way, harness UA send -> far-end UA receive through the node (first transmissions of INVITE, ACK for 2xx, BYE, INFO, REFER, NOTIFY)', samples: lp.count, p50: lp.p50, p95: lp.p95, p99: lp.p99 },
    registerRoundTripMs: { samples: rp.count, p50: rp.p50, p95: rp.p95, p99: rp.p99 },
    notifyRoundTripMs: { what: 'NOTIFY sent by an application server -> its 200 back, through the node both ways (out-of-dialog via lookup and in-dialog after REFER), retransmissions included', samples: np.count, p50: np.p50, p95: np.p95, p99: np.p99 },
    idleCpuPct: r.idle.cpuPct,
    cpu: { msPer1kRequests: cpuMsPer1k === null ? null : +cpuMsPer1k.toFixed(2), usPerRequest: cpuMsPer1k === null ? null : +cpuMsPer1k.toFixed(2), pctOfOneCore: samp.cpu.cpuPct, ms: samp.cpu.cpuMs, threads: samp.cpu.threads.slice(0, 16) },
    sipedgeThreads: perThread,
    memory: { ...samp.mem, heapUsedMB: heap === null ? 'not available' : +(heap / 1048576).toFixed(1) },
    rings: metricsAvailable && metricSum(m1, 'sipedge_ring_capacity_bytes') !== null
      ? { maxOccupancy: samp.ringMax === null ? null : +samp.ringMax.toFixed(4), drops: diff('sipedge_ring_drops_total'), overloadReplies: diff('sipedge_overload_replies_total') }
      : (r.kind === 'sipedge' ? 'not available (metrics endpoint not answering or no ring series)' : 'n/a'),
    generator: { saturated: gen.length > 0, reasons: gen, warnings: genWarnings, cpuPct: samp.harness.cpuPct, threads: samp.harness.threads.slice(0, 8), eventLoopDelayP99Ms: +eldP99.toFixed(2), eventLoopDelayMaxMs: +eldMax.toFixed(2) },
    clean: reasons.length === 0, thresholdReasons: reasons,
    methods: table, kinds, unexpected,
    capture: capture.length > 0 ? capture : undefined,
  }
}


export function thresholdReasons(failRate, retransRate, p99) {
  const reasons = []
  if (failRate > CLEAN.failureRate) reasons.push(`failures ${(failRate * 100).toFixed(2)}% > 0.5%`)
  if (retransRate > CLEAN.retransmissionRate) reasons.push(`retransmissions ${(retransRate * 100).toFixed(2)}% > 0.5%`)
  if (p99 !== null && p99 !== undefined && p99 > CLEAN.p99Ms) reasons.push(`p99 ${p99} ms > 50 ms`)
  return reasons
}

// ------------------------------------------------------------------------------ repeats -> medians
const pick = (o, path) => path.split('.').reduce((x, k) => (x === null || x === undefined ? undefined : x[k]), o)

/** Median (the middle value; the mean of the two middle ones for an even count) of the numbers. */
export function median(xs) {
  const v = xs.filter(x => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return null
  const m = v.length >> 1
  return v.length % 2 === 1 ? v[m] : (v[m - 1] + v[m]) / 2
}

/** { median, min, max, n } of one figure over the repeats. */
export function spread(runs, path) {
  const v = runs.map(r => pick(r, path)).filter(x => typeof x === 'number' && Number.isFinite(x))
  if (v.length === 0) return { median: null, min: null, max: null, n: 0 }
  const r3 = (x) => Math.round(x * 1e6) / 1e6
  return { median: r3(median(v)), min: r3(Math.min(...v)), max: r3(Math.max(...v)), n: v.length }
}

// The figures a summary carries, by path in a run record.
const SUMMARY_PATHS = [
  'cpu.msPer1kRequests', 'cpu.pctOfOneCore', 'idleCpuPct', 'offeredPerS', 'completedPerS', 'failureRate', 'retransmissionRate',
  'latencyMs.p50', 'latencyMs.p95', 'latencyMs.p99', 'notifyRoundTripMs.p50', 'notifyRoundTripMs.p99', 'registerRoundTripMs.p50', 'registerRoundTripMs.p99',
  'memory.rssMB', 'memory.pssMB', 'memory.rssAnonMB', 'memory.rssFileMB', 'memory.heapUsedMB',
  'generator.cpuPct', 'generator.eventLoopDelayP99Ms',
]

/**
 * The repeats of one target at one S -> medians with min/max (the run-to-run spread). The clean
 * verdict is taken on the medians of failures, retransmissions and p99, so one disturbed repeat
 * on a shared machine neither makes nor breaks a step.
 */
export function summarize(runs) {
  const r0 = runs[0]
  const fig = {}
  for (const p of SUMMARY_PATHS) fig[p] = spread(runs, p)
  const methods = {}
  for (const m of METHODS) {
    methods[m] = {
      offeredPerS: spread(runs, `methods.${m}.offeredPerS`).median,
      failed: spread(runs, `methods.${m}.failed`),
      retransmissions: spread(runs, `methods.${m}.retransmissions`),
      latencyP50: spread(runs, `methods.${m}.latencyMs.p50`), latencyP99: spread(runs, `methods.${m}.latencyMs.p99`),
      roundTripP50: spread(runs, `methods.${m}.roundTripMs.p50`), roundTripP99: spread(runs, `methods.${m}.roundTripMs.p99`),
    }
  }
  const reasons = thresholdReasons(fig.failureRate.median ?? 0, fig.retransmissionRate.median ?? 0, fig['latencyMs.p99'].median)
  const saturated = runs.filter(r => r.generator.saturated)
  const registrarOk = runs.every(r => r.registrar.status === 'answered 200')
  return {
    target: r0.target, kind: r0.kind ?? r0.target, S: r0.S, aors: r0.aors, repeats: runs.length,
    sipedgeWorkers: r0.sipedgeWorkers, sipedgeWorkersAlive: r0.sipedgeWorkersAlive, kamailioChildren: r0.kamailioChildren,
    windowS: r0.windowS, plannedPerS: r0.plannedPerS,
    figures: fig, methods,
    clean: reasons.length === 0, thresholdReasons: reasons,
    generatorSaturated: saturated.length > 0, generatorReasons: saturated.flatMap(r => r.generator.reasons),
    generatorWarnings: [...new Set(runs.flatMap(r => (r.generator.warnings ?? []).map(w => w.split(':')[0])))],
    registrar: registrarOk ? 'answered 200' : runs.find(r => r.registrar.status !== 'answered 200').registrar.status,
    runs: runs.map(r => ({ repeat: r.repeat, cpuMsPer1k: pick(r, 'cpu.msPer1kRequests') ?? null, p99: pick(r, 'latencyMs.p99') ?? null, notifyRttP99: pick(r, 'notifyRoundTripMs.p99') ?? null, clean: r.clean })),
  }
}

/**
 * sipedge against Kamailio at one S, for each sipedge target: the ratio of the medians, and the
 * median of the per-repeat ratios (repeat i of sipedge next to repeat i of Kamailio: interleaved,
 * so both saw the same machine; robust to load drift during the run).
 */
export function ratios(summaries, runs, S) {
  const ka = summaries.find(x => x.kind === 'kamailio' && x.S === S)
  if (ka === undefined) return []
  const out = []
  const defs = [['cpuMsPer1k', 'cpu.msPer1kRequests'], ['p99', 'latencyMs.p99'], ['notifyRttP99', 'notifyRoundTripMs.p99'], ['rss', 'memory.rssMB'], ['pss', 'memory.pssMB']]
  for (const se of summaries.filter(x => x.kind === 'sipedge' && x.S === S)) {
    const row = { S, target: se.target, against: ka.target }
    for (const [name, path] of defs) {
      const a = se.figures[path].median, b = ka.figures[path].median
      const paired = []
      const sr = runs.filter(r => r.target === se.target && r.S === S), kr = runs.filter(r => r.target === ka.target && r.S === S)
      for (const x of sr) {
        const y = kr.find(k => k.repeat === x.repeat)
        const u = pick(x, path), v = y === undefined ? undefined : pick(y, path)
        if (typeof u === 'number' && typeof v === 'number' && v > 0) paired.push(u / v)
      }
      row[name] = { sipedge: a, kamailio: b, ratioOfMedians: a !== null && b ? +(a / b).toFixed(3) : null, medianOfPairedRatios: paired.length > 0 ? +median(paired).toFixed(3) : null }
    }
    out.push(row)
  }
  return out
}
