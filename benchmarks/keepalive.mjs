// NAT keep-alive benchmark (issue 12): N bindings registered from behind "NAT" by one client
// process (keepalive-client.mjs), sipedge pinging every one of them each `interval`, for
// `rounds` intervals. Per transport it reports the CPU of the sipedge process per 1,000 pings
// (above its idle baseline, and from its own sipedge_nat_keepalive_seconds_total), and the largest
// 1-second CPU bucket over the mean of the window (target < 2.0: no spike), plus the client's CPU
// (it must not be the bottleneck). Writes benchmarks/results/keepalive-<date>.{json,md,svg}.
//
//   node benchmarks/keepalive.mjs [--n 19000] [--transports tls,tcp,ws,udp] [--interval 30] [--rounds 3]
//
// N is bounded by the file-descriptor limit (`ulimit -n`): sipedge and the client each hold one
// descriptor per stream connection. Everything stays on 127.0.0.0/8.
import { fork, execFileSync } from 'node:child_process'
import { writeFileSync, mkdtempSync, rmSync, readFileSync, readdirSync } from 'node:fs'
import { tmpdir, cpus } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { spawn } from 'node:child_process'
import { openSync } from 'node:fs'
import { CLI, hookExit, killAll, scrape, metricSum, ensureDir } from './harness/procs.mjs'

const here = dirname(fileURLToPath(import.meta.url))
const arg = (name, def) => { const i = process.argv.indexOf(`--${name}`); return i > 0 ? process.argv[i + 1] : def }
const N = Number(arg('n', '19000'))
const NODE_ARGS = (arg('node-args', '') ?? '').split(' ').filter(Boolean)
const TRANSPORTS = arg('transports', 'tls,tcp,ws,udp').split(',')
const INTERVAL_S = Number(arg('interval', '30'))
const ROUNDS = Number(arg('rounds', '3'))
const BASELINE_S = Number(arg('baseline', '30'))
const SIP_PORT = 19850
const METRICS_PORT = 19859
const live = new Set()
const stopLive = () => { for (const c of live) { try { process.kill(-c.pid, 'SIGKILL') } catch { /* gone */ } } }
hookExit(stopLive)
process.on('exit', stopLive)

const sleep = ms => new Promise(r => setTimeout(r, ms))

/**
 * CPU time of every thread of `pid` in ms, from /proc/<pid>/task/<tid>/schedstat (nanoseconds on
 * a CPU): /proc/<pid>/stat counts in 10 ms ticks, too coarse for 1-second buckets of a few ms.
 * Threads that exited are lost, which is why the same process is sampled throughout.
 */
function cpuMsOf(pid) {
  let ns = 0
  const threads = new Map()
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const t = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0])
      ns += t
      threads.set(tid, { name: String(tid) === String(pid) ? 'primary' : `${readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim()}/${tid}`, ms: t / 1e6 })
    } catch { /* exited */ }
  }
  return { at: performance.now(), ms: ns / 1e6, threads }
}

/** Per thread name, the CPU ms between two samples (where a spike went). */
function byThread(a, b) {
  const out = {}
  for (const [tid, t] of b.threads) {
    const d = t.ms - (a.threads.get(tid)?.ms ?? 0)
    if (d >= 1) out[t.name] = +((out[t.name] ?? 0) + d).toFixed(1)
  }
  return out
}
const TINDEX = { udp: 0, tcp: 1, tls: 2, ws: 3, wss: 4 }

function config(dir, transport, cert) {
  const proto = transport
  return `workers: 1
listen: [udp:127.0.0.1:${SIP_PORT}${proto === 'udp' ? '' : `, ${proto}:127.0.0.1:${SIP_PORT + 1}`}]
${cert ? `tls: { certificates: [{ cert: ${cert.cert}, key: ${cert.key} }] }` : ''}
domains: [example.com]
store: "lmdb:${join(dir, 'store')}"
registrar: { min_expires: 60, max_expires: 7200 }
limits: { max_connections: ${N + 1000}, idle_timeout: 1h }
nat: { keepalive: { enabled: true, interval: ${INTERVAL_S}s, method: auto, failures_remove: 3 } }
logging: { level: info }
metrics: { listen: 127.0.0.1:${METRICS_PORT} }
routes:
  - { match: { method: REGISTER }, action: register }
`
}

async function startSipedge(dir, transport, cert) {
  const cfg = join(dir, 'sipedge.yaml')
  writeFileSync(cfg, config(dir, transport, cert))
  const log = join(dir, 'sipedge.log')
  const out = openSync(log, 'a')
  const c = spawn(process.execPath, [...NODE_ARGS, CLI, '--config', cfg], { stdio: ['ignore', out, out], detached: true })
  live.add(c)
  c.on('exit', () => live.delete(c))
  const until = Date.now() + 20000
  while (!readFileSync(log, 'utf8').includes('"ready"')) {
    if (c.exitCode !== null || Date.now() > until) throw new Error(`sipedge did not start: ${readFileSync(log, 'utf8').slice(-2000)}`)
    await sleep(100)
  }
  return { proc: c, pid: c.pid, log }
}

function natMetrics(text, t) {
  const lab = r => new RegExp(`transport="${t}".*result="${r}"|result="${r}".*transport="${t}"`)
  return {
    sent: metricSum(text, 'sipedge_nat_keepalives_total', lab('sent')) ?? 0,
    answered: metricSum(text, 'sipedge_nat_keepalives_total', lab('answered')) ?? 0,
    failed: metricSum(text, 'sipedge_nat_keepalives_total', lab('failed')) ?? 0,
    seconds: metricSum(text, 'sipedge_nat_keepalive_seconds_total', new RegExp(`transport="${t}"`)) ?? 0,
  }
}

/** CPU ms of `pid` in each second of `seconds` (fixed grid; a late wake-up makes a longer bucket, normalised). */
async function perSecond(pid, seconds) {
  const series = []
  const spikes = []
  let prev = cpuMsOf(pid)
  const start = prev
  for (let s = 0; s < seconds; s++) {
    await sleep(Math.max(0, start.at + (s + 1) * 1000 - performance.now()))
    const cur = cpuMsOf(pid)
    series.push((cur.ms - prev.ms) / ((cur.at - prev.at) / 1000))
    spikes.push(byThread(prev, cur))
    prev = cur
  }
  return { series, spikes, wallS: (prev.at - start.at) / 1000, cpuMs: prev.ms - start.ms }
}

const peakOverMean = xs => { const m = xs.reduce((a, b) => a + b, 0) / xs.length; return m > 0 ? +(Math.max(...xs) / m).toFixed(2) : 0 }

async function run(transport, index) {
  const dir = mkdtempSync(join(tmpdir(), `sipedge-ka-${transport}-`))
  let cert = null
  if (transport === 'tls') {
    cert = { cert: join(dir, 'edge.crt'), key: join(dir, 'edge.key') }
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=edge.bench',
      '-days', '1', '-keyout', cert.key, '-out', cert.cert], { stdio: 'ignore' })
  }
  const node = await startSipedge(dir, transport, cert)
  try {
    process.stderr.write(`${transport}: sipedge pid ${node.pid}, log kept in ${join(tmpdir(), `sipedge-keepalive-${transport}.log`)}\n`)
    // Idle baseline: the same process, warmed up, with nothing registered.
    await sleep(5000)
    const idleSeries = await perSecond(node.pid, BASELINE_S)
    const idleMsPerS = idleSeries.cpuMs / idleSeries.wallS
    process.stderr.write(`${transport}: idle ${idleMsPerS.toFixed(2)} ms/s; registering ${N}\n`)

    const client = fork(join(here, 'keepalive-client.mjs'), [JSON.stringify({
      transport, n: N, port: transport === 'udp' ? SIP_PORT : SIP_PORT + 1, host: '127.0.0.1', localAddress: `127.0.${10 + index}.1`, concurrency: transport === 'tls' ? 32 : 64,
    })], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    const reg = await new Promise((resolve, reject) => {
      client.on('message', m => { if (m.type === 'registered') resolve(m) })
      client.once('exit', code => reject(new Error(`client exited ${code}`)))
    })
    process.stderr.write(`${transport}: ${reg.n} registered (${reg.failed} failed) in ${reg.ms} ms; measuring ${ROUNDS} x ${INTERVAL_S} s\n`)
    // One interval to let every binding reach its phase, then the measured window.
    await sleep(INTERVAL_S * 1000)
    const ask = () => new Promise(resolve => { client.once('message', m => resolve(m)); client.send({ type: 'stats' }) })
    const m0 = natMetrics(await scrape(`http://127.0.0.1:${METRICS_PORT}/metrics`), transport)
    const c0 = await ask()
    const measured = await perSecond(node.pid, ROUNDS * INTERVAL_S)
    const { series, spikes } = measured
    const window = { wallS: measured.wallS, cpuMs: measured.cpuMs }
    const m1 = natMetrics(await scrape(`http://127.0.0.1:${METRICS_PORT}/metrics`), transport)
    const c1 = await ask()
    client.send({ type: 'exit' })
    const sent = m1.sent - m0.sent
    const answered = m1.answered - m0.answered
    const cpuMs = window.cpuMs
    const mean = series.reduce((a, b) => a + b, 0) / series.length
    const clientCpuMs = ((c1.cpu.user + c1.cpu.system) - (c0.cpu.user + c0.cpu.system)) / 1000
    const r = {
      transport, bindings: reg.n, registerFailed: reg.failed, registerMs: reg.ms, windowS: +window.wallS.toFixed(1),
      pingsSent: sent, pingsAnswered: answered, pingsFailed: m1.failed - m0.failed,
      pingsPerS: +(sent / window.wallS).toFixed(1),
      cpuMsWindow: +cpuMs.toFixed(1), idleMsPerS: +idleMsPerS.toFixed(2),
      cpuMsPer1kPings: +(((cpuMs - idleMsPerS * window.wallS) / sent) * 1000).toFixed(2),
      cpuMsPer1kPingsRaw: +((cpuMs / sent) * 1000).toFixed(2),
      pingThreadMsPer1k: +(((m1.seconds - m0.seconds) * 1000 / sent) * 1000).toFixed(3),
      cpuPct: +(cpuMs / 10 / window.wallS).toFixed(2),
      peakOverMean: +(Math.max(...series) / mean).toFixed(2),
      clientCpuPct: +(clientCpuMs / 10 / window.wallS).toFixed(2),
      idlePeakOverMean: peakOverMean(idleSeries.series),
      pingsPerSecondPeakOverMean: peakOverMean(c1.perSecond.slice(-ROUNDS * INTERVAL_S)),
      perSecondMs: series.map(x => +x.toFixed(2)),
      idlePerSecondMs: idleSeries.series.map(x => +x.toFixed(2)),
      pingsPerSecond: c1.perSecond.slice(-ROUNDS * INTERVAL_S),
      /** The three largest buckets and where their CPU went, by thread name. */
      largest: series.map((v, i) => ({ second: i, ms: +v.toFixed(1), threads: spikes[i] })).sort((x, y) => y.ms - x.ms).slice(0, 3),
    }
    process.stderr.write(`${transport}: ${JSON.stringify({ ...r, perSecondMs: undefined })}\n`)
    return r
  } finally {
    try { process.kill(-node.pid, 'SIGTERM') } catch { /* gone */ }
    await sleep(1500)
    stopLive()
    killAll()
    try { writeFileSync(join(tmpdir(), `sipedge-keepalive-${transport}.log`), readFileSync(node.log)) } catch { /* no log */ }
    rmSync(dir, { recursive: true, force: true })
  }
}

function svg(results) {
  const W = 900, H = 420, L = 60, R = 20, T = 30, B = 50
  const len = Math.max(...results.map(r => r.perSecondMs.length))
  const max = Math.max(1, ...results.flatMap(r => r.perSecondMs)) * 1.1
  const x = i => L + (i / Math.max(1, len - 1)) * (W - L - R)
  const y = v => H - B - (v / max) * (H - T - B)
  const colors = { tls: '#c0392b', tcp: '#2980b9', ws: '#27ae60', wss: '#8e44ad', udp: '#e67e22' }
  let out = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">\n<rect width="100%" height="100%" fill="white"/>\n`
  out += `<text x="${L}" y="18">sipedge CPU per second while keeping ${results[0]?.bindings ?? 0} NATed bindings alive (interval ${INTERVAL_S} s)</text>\n`
  out += `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="black"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="black"/>\n`
  for (let k = 0; k <= 4; k++) { const v = (max * k) / 4; out += `<text x="${L - 6}" y="${y(v) + 4}" text-anchor="end">${v.toFixed(0)}</text>\n` }
  out += `<text x="14" y="${(H - B + T) / 2}" transform="rotate(-90 14 ${(H - B + T) / 2})" text-anchor="middle">CPU ms per second</text>\n`
  out += `<text x="${(W + L) / 2}" y="${H - 12}" text-anchor="middle">seconds into the measured window</text>\n`
  results.forEach((r, j) => {
    const c = colors[r.transport] ?? 'black'
    out += `<polyline fill="none" stroke="${c}" stroke-width="1.5" points="${r.perSecondMs.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ')}"/>\n`
    out += `<text x="${W - R - 220}" y="${T + 16 * (j + 1)}" fill="${c}">${r.transport}: ${r.cpuMsPer1kPings} ms / 1k pings, peak/mean ${r.peakOverMean}</text>\n`
  })
  return out + '</svg>\n'
}

const results = []
for (let i = 0; i < TRANSPORTS.length; i++) results.push(await run(TRANSPORTS[i], i))
const date = new Date().toISOString().slice(0, 10)
const outDir = ensureDir(join(here, 'results'))
const base = join(outDir, `keepalive-${date}${arg('tag', '') ? `-${arg('tag', '')}` : ''}`)
const machine = { cpus: cpus().length, model: cpus()[0]?.model, node: process.version, date: new Date().toISOString() }
writeFileSync(`${base}.json`, JSON.stringify({ machine, n: N, intervalS: INTERVAL_S, rounds: ROUNDS, results }, null, 2) + '\n')
writeFileSync(`${base}.svg`, svg(results))
const md = [
  `# NAT keep-alives — ${date}`, '',
  `${machine.cpus} × ${machine.model}, Node ${machine.node}; shared build machine. \`node benchmarks/keepalive.mjs --n ${N} --interval ${INTERVAL_S} --rounds ${ROUNDS}\`.`,
  `sipedge with 1 worker${NODE_ARGS.length > 0 ? ` (node ${NODE_ARGS.join(' ')})` : ''}; one client process registers N bindings from behind "NAT" over one transport and answers every ping;`,
  `after one interval to settle, ${ROUNDS} intervals are measured. CPU is the whole sipedge process (every thread's /proc schedstat);\n"above idle" subtracts the same process's CPU per second before anything registered.`, '',
  '| transport | bindings | pings/s | CPU ms per 1k pings (above idle) | raw | ping work per 1k (thread time, metric) | sipedge CPU % | largest 1-s CPU bucket / mean | same, idle sipedge | largest 1-s ping count / mean (at the phones) | client CPU % |',
  '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ...results.map(r => `| ${r.transport} | ${r.bindings} | ${r.pingsPerS} | ${r.cpuMsPer1kPings} | ${r.cpuMsPer1kPingsRaw} | ${r.pingThreadMsPer1k} | ${r.cpuPct} | ${r.peakOverMean} | ${r.idlePeakOverMean} | ${r.pingsPerSecondPeakOverMean} | ${r.clientCpuPct} |`),
  '', 'Where the largest CPU buckets went (thread: ms; `primary` is the main thread, the others are the worker and V8 platform threads):', '',
  ...results.map(r => `- ${r.transport}: ${r.largest.map(l => `second ${l.second} ${l.ms} ms (${Object.entries(l.threads).map(([k, v]) => `${k} ${v}`).join(', ')})`).join('; ')}`),
  '', `Plot: ${base.split("/").pop()}.svg (CPU ms per second of the sipedge process over the window).`,
  `Target: the largest 1-second bucket below 2.0 × the mean (no spike). Pings answered: ${results.map(r => `${r.transport} ${r.pingsAnswered}/${r.pingsSent}`).join(', ')}.`, '',
]
writeFileSync(`${base}.md`, md.join('\n'))
process.stderr.write(`wrote ${base}.{json,md,svg}\n`)
process.exit(0)
