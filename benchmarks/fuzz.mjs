// The long fuzz run: N seeded mutated inputs (default 10 million) through the parser target and
// the whole worker handler, in parallel on worker threads (piscina), the same mutator and checks
// as the budgeted runs in `pnpm test`. Reports inputs/s, outcomes by error code, per-input time
// buckets, and saves every failing input to a file.
//
//   pnpm run build && nice -n 19 pnpm --filter @sipedge/benchmarks run fuzz -- [COUNT] \
//     [--target parser|handler|both] [--seed 0x5eedf022] [--threads N] [--out DIR]
//
// COUNT is per target. Input i of a run is rebuilt alone with mutant(loadSeeds(), seed, i)
// (packages/sip/test/fuzz/mutator.mjs). Writes results/fuzz-<YYYY-MM-DD>.json and .md; failing
// inputs go to results/fuzz-failures-<YYYY-MM-DD>/<target>-<index>.sip (+ .txt with the error).
import { Piscina } from 'piscina'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { availableParallelism, cpus, hostname, loadavg, release, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { loadSeeds, mutant, hasTorture } from '@sipedge/sip/fuzz/mutator'
import { BUCKETS } from './fuzz-task.mjs'

function parseArgs(argv) {
  const o = { count: 10_000_000, target: 'both', seed: 0x5eedf022, threads: availableParallelism(), out: fileURLToPath(new URL('./results/', import.meta.url)) }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--') continue
    if (a === '--target') o.target = argv[++i]
    else if (a === '--seed') o.seed = Number(argv[++i]) >>> 0
    else if (a === '--threads') o.threads = Math.max(1, Number(argv[++i]))
    else if (a === '--out') o.out = argv[++i]
    else if (/^\d[\d_]*$/.test(a)) o.count = Number(a.replace(/_/g, ''))
    else throw new Error(`unknown argument ${a}`)
  }
  if (!['parser', 'handler', 'both'].includes(o.target)) throw new Error('--target must be parser, handler or both')
  return o
}

const CHUNK = { parser: 20_000, handler: 5_000 }
const fmt = n => Math.round(n).toLocaleString('en-US')
const day = new Date().toISOString().slice(0, 10)

async function main() {
  const o = parseArgs(process.argv.slice(2))
  const targets = o.target === 'both' ? ['parser', 'handler'] : [o.target]
  const seeds = loadSeeds()
  const tmpDir = mkdtempSync(join(tmpdir(), 'sipedge-fuzz-'))
  const failDir = join(o.out, `fuzz-failures-${day}`)
  const pool = new Piscina({ filename: new URL('./fuzz-task.mjs', import.meta.url).href, minThreads: o.threads, maxThreads: o.threads, concurrentTasksPerWorker: 1, idleTimeout: 60_000 })
  const started = new Date()
  const run = {
    date: started.toISOString(),
    machine: { host: hostname(), cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, memGiB: +(totalmem() / 2 ** 30).toFixed(1), kernel: release(), node: process.version },
    loadAverage: { start: loadavg().map(x => +x.toFixed(2)) },
    options: { count: o.count, seed: `0x${o.seed.toString(16)}`, threads: o.threads, seeds: seeds.length, tortureMessages: hasTorture() },
    targets: {},
  }
  const log = msg => process.stderr.write(`[fuzz ${new Date().toISOString().slice(11, 19)}] ${msg}\n`)
  log(`${targets.join(' + ')}: ${fmt(o.count)} inputs each, seed 0x${o.seed.toString(16)}, ${o.threads} threads, ${seeds.length} seeds`)
  try {
    for (const target of targets) {
      const agg = { count: 0, bytes: 0, outcomes: {}, failures: [], slow: [], buckets: new Array(BUCKETS.length + 1).fill(0), sentByKind: {}, frames: 0, responsesFed: 0, logged: null }
      const t0 = performance.now()
      const cpu0 = process.cpuUsage() // the whole process: every thread, the main one's share is small
      let lastLog = t0
      const tasks = []
      for (let from = 0; from < o.count; from += CHUNK[target]) {
        const to = Math.min(o.count, from + CHUNK[target])
        tasks.push(pool.run({ target, seed: o.seed, from, to, tmpDir }).then(r => {
          agg.count += r.count
          agg.bytes += r.bytes
          for (const [k, v] of Object.entries(r.outcomes)) agg.outcomes[k] = (agg.outcomes[k] ?? 0) + v
          r.buckets.forEach((v, i) => { agg.buckets[i] += v })
          agg.slow.push(...r.slow)
          for (const f of r.failures) {
            if (agg.failures.length >= 200) break
            agg.failures.push(f)
            mkdirSync(failDir, { recursive: true })
            writeFileSync(join(failDir, `${target}-${f.index}.sip`), mutant(seeds, o.seed, f.index))
            writeFileSync(join(failDir, `${target}-${f.index}.txt`), `seed 0x${o.seed.toString(16)} index ${f.index} kind ${f.kind}\n\n${f.message}\n`)
          }
          if (r.sentByKind !== undefined) for (const [k, v] of Object.entries(r.sentByKind)) agg.sentByKind[k] = (agg.sentByKind[k] ?? 0) + v
          agg.frames += r.frames ?? 0
          agg.responsesFed += r.responsesFed ?? 0
          if (r.logged !== undefined) agg.logged = r.logged
          const now = performance.now()
          if (now - lastLog > 30_000) {
            lastLog = now
            log(`${target}: ${fmt(agg.count)} / ${fmt(o.count)} (${fmt(agg.count / ((now - t0) / 1000))}/s), failures ${agg.failures.length}, load ${loadavg()[0].toFixed(1)}`)
          }
        }))
      }
      await Promise.all(tasks)
      const wallS = (performance.now() - t0) / 1000
      const cpu = process.cpuUsage(cpu0)
      agg.failures.sort((a, b) => a.index - b.index)
      agg.slow.sort((a, b) => a.index - b.index)
      run.targets[target] = { ...agg, wallS: +wallS.toFixed(1), inputsPerS: Math.round(agg.count / wallS), cpuUsPerInput: +((cpu.user + cpu.system) / agg.count).toFixed(1), avgBytes: Math.round(agg.bytes / agg.count) }
      log(`${target}: done, ${fmt(agg.count)} inputs in ${wallS.toFixed(0)} s (${fmt(agg.count / wallS)}/s), failures ${agg.failures.length}, slow ${agg.slow.length}`)
    }
  } finally {
    await pool.destroy()
    rmSync(tmpDir, { recursive: true, force: true })
  }
  run.loadAverage.end = loadavg().map(x => +x.toFixed(2))
  run.maxRssMiB = Math.round(process.resourceUsage().maxRSS / 1024)
  run.finished = new Date().toISOString()
  mkdirSync(o.out, { recursive: true })
  const base = join(o.out, `fuzz-${day}`)
  writeFileSync(base + '.json', JSON.stringify(run, null, 2) + '\n')
  writeFileSync(base + '.md', render(run))
  log(`wrote ${base}.md and .json`)
  const failed = Object.values(run.targets).some(t => t.failures.length > 0 || t.slow.length > 0)
  process.exitCode = failed ? 1 : 0
}

function render(run) {
  const L = []
  const m = run.machine
  L.push(`# Fuzz run ${run.date.slice(0, 10)}`, '')
  L.push(`Machine: ${m.cpu} (${m.cores} cores, ${m.memGiB} GiB), Node ${m.node}, linux ${m.kernel}. Started ${run.date}, finished ${run.finished}. ` +
    `Load average at start ${run.loadAverage.start.join(' ')}, at the end ${run.loadAverage.end.join(' ')} (shared machine; the run was niced, so inputs/s follow the load). Peak RSS of the process (all threads): ${run.maxRssMiB} MiB. CPU per input is the process's CPU time (generating the input included) over the inputs.`, '')
  L.push(`Seed ${run.options.seed}, ${run.options.seeds} seed messages (packages/sip/test/fuzz-corpus, the parser corpus${run.options.tortureMessages ? ', RFC 4475/5118 torture messages' : ''}), ` +
    `${run.options.threads} worker threads. Command: \`nice -n 19 pnpm --filter @sipedge/benchmarks run fuzz -- ${run.options.count}\`. ` +
    'Input i is rebuilt alone with `mutant(loadSeeds(), seed, i)` (packages/sip/test/fuzz/mutator.mjs).', '')
  for (const [name, t] of Object.entries(run.targets)) {
    L.push(`## ${name === 'parser' ? 'Parser' : 'Worker handler'}`, '')
    L.push(name === 'parser'
      ? 'Every input: parse, validate, every accessor a proxy decision uses, stream framer, Call-ID hash; for a valid request the 400 response, the CANCEL and the edited forward must parse again; for a response, the ACK of §17.1.1.3. Pass = a message, or a SipParseError with a code from ErrorCodes.'
      : 'Every input as a UDP datagram and as a TCP frame to `createHandler(ctx)` of workers/dist/proxy-handler.js (payload overwritten after each call, as ring memory is), plus responses (some mutated) to the requests it forwarded; the clock jumps every 500 inputs so timers fire. Pass = no throw, every frame sent parses.', '')
    L.push('| inputs | wall | inputs/s | CPU per input | bytes per input | failures | pathologically slow |', '|---:|---:|---:|---:|---:|---:|---:|')
    L.push(`| ${fmt(t.count)} | ${t.wallS} s | ${fmt(t.inputsPerS)} | ${t.cpuUsPerInput} µs | ${t.avgBytes} | ${t.failures.length === 0 ? 0 : `**${Object.entries(t.outcomes).filter(([k]) => k.startsWith('FAIL:')).reduce((a, [, v]) => a + v, 0)}**`} | ${t.slow.length} |`, '')
    const labels = ['< 10 µs', ...BUCKETS.slice(1).map(b => `< ${b >= 1 ? `${b} ms` : `${b * 1000} µs`}`), `>= ${BUCKETS.at(-1)} ms`]
    L.push('Time per input (first run, includes scheduling on a shared machine): ' + t.buckets.map((v, i) => `${labels[i]}: ${fmt(v)}`).join(', ') + '.', '')
    L.push('| outcome | inputs | share |', '|---|---:|---:|')
    for (const [k, v] of Object.entries(t.outcomes).sort((a, b) => b[1] - a[1])) L.push(`| ${k} | ${fmt(v)} | ${(100 * v / t.count).toFixed(2)} % |`)
    L.push('')
    if (name === 'handler') {
      L.push(`Frames in: ${fmt(t.frames)} (${fmt(t.responsesFed)} of them responses fed back). Frames sent, by method or status: ` +
        Object.entries(t.sentByKind).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${fmt(v)}`).join(', ') + '.', '')
      if (t.logged !== null) L.push(`Handler log lines at error level: ${t.logged.error}${t.logged.firstError ? ` (first: ${t.logged.firstError})` : ''}; warnings: ${t.logged.warn}.`, '')
    }
    if (t.failures.length > 0) {
      L.push('### Failures', '')
      for (const f of t.failures.slice(0, 30)) L.push(`- input ${f.index} (${f.kind}): \`${f.message.split('\n')[0].slice(0, 300)}\` — saved as fuzz-failures-${run.date.slice(0, 10)}/${name}-${f.index}.sip`)
      L.push('')
    }
    if (t.slow.length > 0) {
      L.push('### Slow inputs (best of 3 re-runs over budget)', '')
      for (const s of t.slow.slice(0, 30)) L.push(`- input ${s.index}: ${s.bytes} bytes, ${s.ms} ms`)
      L.push('')
    }
  }
  return L.join('\n')
}

await main()
