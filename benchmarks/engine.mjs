#!/usr/bin/env node
// Engine macro-benchmark: end-to-end OPTIONS -> 200 over UDP through the real `sipedge` command
// (primary + rings + workers + default responder), driven by a load generator in a separate
// process pinned to another core.
//
//   1. saturation: closed loop with a fixed window of requests in flight -> requests/s and CPU
//      milliseconds of the sipedge process (all threads, /proc/PID/stat utime+stime) per 1,000
//      requests; for workers: 0 (in-process), 1 and 2; median of several runs.
//   2. fixed rate: 210 requests/s (the S=1 production mix rate) for 20 s -> CPU % of one core.
//
// Writes benchmarks/results/engine-<date>.json and .md. Every loop is bounded in count and time.
// Options: --runs N (default 3), --seconds S (saturation run, default 5), --idle-seconds S
// (fixed-rate run, default 20), --modes 0,1,2, --quick (1 run, 3 s, 5 s idle).
import { spawn, execFileSync } from 'node:child_process'
import { createSocket } from 'node:dgram'
import { readFileSync, writeFileSync, mkdtempSync, rmSync, mkdirSync } from 'node:fs'
import { tmpdir, cpus, availableParallelism, totalmem, release, loadavg } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const root = join(here, '..')
const cliMain = join(root, 'packages/cli/dist/main.js')

// ------------------------------------------------------------------------------ load generator
if (process.argv[2] === '--loadgen') {
  const [, , , portS, modeS, countS, secondsS, rateS] = process.argv
  const port = Number(portS)
  const maxCount = Number(countS)
  const maxMs = Number(secondsS) * 1000
  const rate = Number(rateS) // 0 = closed loop (saturation)
  const WINDOW = 256
  const sock = createSocket('udp4')
  const prefix = `OPTIONS sip:127.0.0.1:${port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-b`
  let sent = 0, received = 0, presumedLost = 0
  const tag = process.pid.toString(36)
  const build = (n) => Buffer.from(`${prefix}${n}\r\nMax-Forwards: 70\r\nFrom: <sip:bench@127.0.0.1>;tag=${tag}\r\nTo: <sip:127.0.0.1>\r\nCall-ID: ${tag}-${n}@bench\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n`, 'latin1')
  const cpu0 = process.cpuUsage()
  let t0 = 0
  let done = false
  const finish = () => {
    if (done) return
    done = true
    const elapsedMs = performance.now() - t0
    const c = process.cpuUsage(cpu0)
    process.stdout.write(JSON.stringify({ sent, received, presumedLost, elapsedMs, loadgenCpuMs: (c.user + c.system) / 1000 }) + '\n')
    sock.close()
    process.exit(0)
  }
  const sendOne = () => { if (sent < maxCount) sock.send(build(sent++)) }
  sock.on('message', () => {
    received++
    if (rate === 0 && !done) {
      if (received >= maxCount || performance.now() - t0 >= maxMs) finish()
      else sendOne()
    }
  })
  sock.connect(port, '127.0.0.1', () => {
    t0 = performance.now()
    if (rate === 0) {
      for (let i = 0; i < WINDOW; i++) sendOne()
      let lastRecv = 0
      // A lost datagram shrinks the window: refill what made no progress for 50 ms.
      setInterval(() => {
        if (received === lastRecv) {
          const inflight = sent - received - presumedLost
          presumedLost += inflight
          for (let i = 0; i < WINDOW; i++) sendOne()
        }
        lastRecv = received
        if (performance.now() - t0 >= maxMs || sent >= maxCount) setTimeout(finish, 200)
      }, 50)
    } else {
      setInterval(() => {
        const due = Math.min(maxCount, Math.floor(((performance.now() - t0) / 1000) * rate))
        while (sent < due) sendOne()
        if (performance.now() - t0 >= maxMs) setTimeout(finish, 200)
      }, 10)
    }
  })
  setTimeout(finish, maxMs + 5000).unref()
} else {
  await bench()
}

// ------------------------------------------------------------------------------ driver
function arg(name, def) {
  const i = process.argv.indexOf(name)
  return i >= 0 ? process.argv[i + 1] : def
}

function cpuTicks(pid) {
  // /proc/PID/stat: fields after the ")" of comm; utime = 14, stime = 15 (1-based), all threads.
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
  return Number(f[11]) + Number(f[12])
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

function hasTaskset() {
  try { execFileSync('taskset', ['--version'], { stdio: 'ignore' }); return true } catch { return false }
}

async function startSipedge(workers, port, cores, dir) {
  const file = join(dir, `bench-${workers}.yaml`)
  writeFileSync(file, `workers: ${workers}\nlisten:\n  - udp:127.0.0.1:${port}\nlogging:\n  level: info\n`)
  const cmd = cores ? ['taskset', ['-c', cores, process.execPath, cliMain, '--config', file]] : [process.execPath, [cliMain, '--config', file]]
  const child = spawn(cmd[0], cmd[1], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`sipedge did not become ready:\n${out}`)), 20_000)
    const on = d => { out += d; if (out.includes('"msg":"ready"')) { clearTimeout(t); resolve() } }
    child.stdout.on('data', on)
    child.stderr.on('data', on)
    child.once('exit', code => { clearTimeout(t); reject(new Error(`sipedge exited ${code}:\n${out}`)) })
  })
  child.stdout.resume()
  child.stderr.resume()
  return child
}

// Baseline measured in the same run: a bare node:dgram echo (receive + send, no SIP work).
async function startEcho(port, cores) {
  const code = `import { createSocket } from 'node:dgram'; const s = createSocket('udp4'); s.on('message', (m, r) => s.send(m, r.port, r.address)); s.bind(${port}, '127.0.0.1', () => console.log('"msg":"ready"'))`
  const args = ['--input-type=module', '-e', code]
  const child = cores ? spawn('taskset', ['-c', cores, process.execPath, ...args], { stdio: ['ignore', 'pipe', 'inherit'] }) : spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] })
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('echo did not start')), 10_000)
    child.stdout.on('data', d => { if (String(d).includes('ready')) { clearTimeout(t); resolve() } })
  })
  return child
}

async function stopSipedge(child) {
  if (child.exitCode !== null) return
  const exited = new Promise(r => child.once('exit', r))
  child.kill('SIGTERM')
  const t = setTimeout(() => child.kill('SIGKILL'), 10_000)
  await exited
  clearTimeout(t)
}

function loadgen(port, count, seconds, rate, core) {
  const args = [fileURLToPath(import.meta.url), '--loadgen', String(port), 'x', String(count), String(seconds), String(rate)]
  const cmd = core !== null ? ['taskset', ['-c', core, process.execPath, ...args]] : [process.execPath, args]
  return new Promise((resolve, reject) => {
    const child = spawn(cmd[0], cmd[1], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', d => { out += d })
    const t = setTimeout(() => { child.kill('SIGKILL'); reject(new Error('load generator hung')) }, (seconds + 20) * 1000)
    child.once('exit', () => { clearTimeout(t); try { resolve(JSON.parse(out)) } catch { reject(new Error(`bad loadgen output: ${out}`)) } })
  })
}

async function bench() {
  const quick = process.argv.includes('--quick')
  const runs = Number(arg('--runs', quick ? 1 : 3))
  const seconds = Number(arg('--seconds', quick ? 3 : 5))
  const idleSeconds = Number(arg('--idle-seconds', quick ? 5 : 20))
  const modes = arg('--modes', 'echo,0,1,2').split(',').map(m => m === 'echo' ? -1 : Number(m))
  const ncpu = availableParallelism()
  const loadavgAtStart = loadavg().map(x => +x.toFixed(2))
  const pin = hasTaskset() && ncpu >= 2
  const genCore = pin ? String(ncpu - 1) : null
  const proxyCores = pin ? (ncpu === 2 ? '0' : `0-${ncpu - 2}`) : null
  const clk = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
  const msPerTick = 1000 / clk
  const dir = mkdtempSync(join(tmpdir(), 'sipedge-bench-'))
  const port = 15900
  const results = []
  try {
    for (const workers of modes) {
      const label = workers === -1 ? 'baseline: bare dgram echo' : workers === 0 ? 'in-process (workers: 0)' : `workers: ${workers}`
      const child = workers === -1 ? await startEcho(port, proxyCores) : await startSipedge(workers, port, proxyCores, dir)
      try {
        await loadgen(port, 20_000, 1, 0, genCore) // warm-up (JIT, buffers), not measured
        const sat = []
        for (let r = 0; r < runs; r++) {
          const c0 = cpuTicks(child.pid)
          const g = await loadgen(port, 2_000_000, seconds, 0, genCore)
          const c1 = cpuTicks(child.pid)
          const cpuMs = (c1 - c0) * msPerTick
          sat.push({ rps: g.received / (g.elapsedMs / 1000), cpuMsPer1k: cpuMs / (g.received / 1000), loadgenCpuPct: (g.loadgenCpuMs / g.elapsedMs) * 100, received: g.received, lost: g.presumedLost })
          process.stderr.write(`${label} run ${r + 1}: ${sat.at(-1).rps.toFixed(0)} req/s, ${sat.at(-1).cpuMsPer1k.toFixed(1)} CPU ms/1k, loadgen ${sat.at(-1).loadgenCpuPct.toFixed(0)}% CPU\n`)
        }
        const c0 = cpuTicks(child.pid)
        const t0 = performance.now()
        const g = await loadgen(port, 210 * idleSeconds, idleSeconds, 210, genCore)
        const wallMs = performance.now() - t0
        const idleCpuMs = (cpuTicks(child.pid) - c0) * msPerTick
        const fixed = { rate: 210, seconds: idleSeconds, sent: g.sent, received: g.received, cpuPct: (idleCpuMs / wallMs) * 100, cpuMsPer1k: idleCpuMs / (g.received / 1000) }
        process.stderr.write(`${label} at 210 req/s: ${fixed.cpuPct.toFixed(2)}% CPU, ${fixed.received}/${fixed.sent} answered\n`)
        results.push({
          mode: label, workers, runs: sat,
          medianRps: median(sat.map(s => s.rps)), medianCpuMsPer1k: median(sat.map(s => s.cpuMsPer1k)),
          medianLoadgenCpuPct: median(sat.map(s => s.loadgenCpuPct)), fixedRate: fixed,
        })
      } finally {
        await stopSipedge(child)
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  const date = new Date().toISOString()
  const machine = { cpu: cpus()[0]?.model ?? 'unknown', cores: ncpu, loadavgAtStart, memoryGiB: +(totalmem() / 2 ** 30).toFixed(1), kernel: release(), pinned: pin ? { sipedge: proxyCores, loadgen: genCore } : null }
  const base = results.find(r => r.workers === -1)
  const report = { benchmark: 'engine', date, node: process.version, machine, runs, saturationSeconds: seconds, results }
  const day = date.slice(0, 10)
  mkdirSync(join(here, 'results'), { recursive: true })
  writeFileSync(join(here, 'results', `engine-${day}.json`), JSON.stringify(report, null, 2) + '\n')
  const rows = results.map(r => `| ${r.mode} | ${r.medianRps.toFixed(0)} | ${r.medianCpuMsPer1k.toFixed(1)} | ${base ? (r.medianCpuMsPer1k / base.medianCpuMsPer1k).toFixed(2) : '-'} | ${r.medianLoadgenCpuPct.toFixed(0)}% | ${r.fixedRate.cpuPct.toFixed(2)}% | ${base ? (r.fixedRate.cpuPct / base.fixedRate.cpuPct).toFixed(2) : '-'} | ${r.fixedRate.received}/${r.fixedRate.sent} |`)
  const md = `# Engine benchmark — ${day}

End-to-end OPTIONS -> 200 over UDP through \`sipedge --config\` (default responder), load
generator in a separate process${pin ? ` (sipedge pinned to CPU ${proxyCores}, generator to CPU ${genCore} with taskset)` : ''}.
Saturation: closed loop, 256 requests in flight, ${seconds} s per run, median of ${runs} run(s).
CPU = utime+stime of the sipedge process, all threads (/proc/PID/stat). Fixed rate: 210 req/s for ${idleSeconds} s.

- Machine: ${machine.cpu}, ${ncpu} cores, ${machine.memoryGiB} GiB, Linux ${machine.kernel}; load average at start ${loadavgAtStart.join(" ")} (a shared machine inflates every figure)
- Node ${process.version}, ${date}

| mode | req/s (saturation) | CPU ms / 1k req | ratio vs bare echo | generator CPU | CPU at 210 req/s | ratio vs bare echo at 210/s | answered at 210 req/s |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
${rows.join('\n')}

The baseline row is a bare \`node:dgram\` echo (receive + send, no SIP work) measured in the same
run: it is the I/O floor of this machine, and the ratios say what sipedge adds on top of it.
A generator near 100% CPU means the figure is bounded by the generator, not by sipedge; the
CPU per 1,000 requests is valid either way. On a 2-core machine the workers share one core with
the primary, so workers: 1/2 pay the ring hand-off without gaining parallelism.
`
  writeFileSync(join(here, 'results', `engine-${day}.md`), md)
  process.stdout.write(md)
}
