// Keeps the production-mix load harness (benchmarks/harness/mix.mjs, issue 8) from rotting: runs
// it at a tiny scale against the real `sipedge` command (no Kamailio, no pinning) and checks the
// report's shape and that every call flow went through. Ports 18460-18490 on 127.0.0.1, phones on
// 127.0.1.x, application servers on 127.0.2.x. The harness is bounded (window + drain) and kills
// its children on exit; this test also kills the harness if it overruns.
import t from 'tap'
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../../../', import.meta.url))
const harness = join(root, 'benchmarks/harness/mix.mjs')
const dir = mkdtempSync(join(tmpdir(), 'sipedge-harness-smoke-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

interface MethodRow { offered: number; completed: number; failed: number; retransmissions: number; offeredPerS: number; latencyMs: { samples: number; p50: number | null; p99: number | null } }
interface Run {
  target: string; S: number; offered: number; completed: number; failureRate: number
  registrar: { status: string; codes: Record<string, number> }
  latencyMs: { samples: number; p50: number | null; p95: number | null; p99: number | null }
  cpu: { msPer1kRequests: number | null; threads: Array<{ name: string; cpuPct: number }> }
  memory: { rssMB: number }
  generator: { saturated: boolean }
  methods: Record<string, MethodRow>
}
interface Report { machine: { node: string }; loadAverage: { start: number[]; end: number[] }; runs: Run[]; steps: Record<string, unknown>; targets: unknown[] }

const code = await new Promise<number | null>(resolve => {
  const c = spawn(process.execPath, [
    harness, '--s', '0.1', '--window', '12', '--warmup', '3', '--drain', '3', '--hold', '2', '--no-step', '--no-pin',
    '--threads', '1', '--workers', '1', '--port-base', '18460', '--out', dir, '--tag', 'smoke', '--json', join(dir, 'report.json'),
  ], { stdio: ['ignore', 'inherit', 'inherit'] })
  const kill = setTimeout(() => c.kill('SIGINT'), 90_000)
  c.on('exit', (status) => { clearTimeout(kill); resolve(status) })
})

t.equal(code, 0, 'harness exited 0')
const report = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) as Report
const files = readdirSync(dir)
t.ok(files.some(f => /^mix-\d{4}-\d\d-\d\d-smoke\.json$/.test(f)), 'JSON results written')
t.ok(files.some(f => /^mix-\d{4}-\d\d-\d\d-smoke\.md$/.test(f)), 'Markdown results written')
t.ok(files.some(f => /^mix-\d{4}-\d\d-\d\d-smoke\.svg$/.test(f)), 'SVG plot written')
t.match(readFileSync(join(dir, files.find(f => f.endsWith('.svg'))!), 'utf8'), /^<svg [^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/, 'the plot is an SVG document')
t.equal(report.loadAverage.start.length, 3, 'load average recorded')
t.ok(Array.isArray(report.targets), 'targets evaluated')
t.equal(report.runs.length, 1, 'one run')
const r = report.runs[0]!
t.equal(r.target, 'sipedge')
t.equal(r.S, 0.1)
for (const key of ['offered', 'completed', 'failureRate', 'retransmissionRate', 'latencyMs', 'cpu', 'memory', 'rings', 'generator', 'registrar', 'methods', 'clean']) t.ok(key in r, `report has ${key}`)
t.ok(r.latencyMs.samples > 0 && typeof r.latencyMs.p99 === 'number', 'latency percentiles measured')
t.ok(typeof r.cpu.msPer1kRequests === 'number' && r.cpu.msPer1kRequests > 0, 'CPU per 1k requests measured')
t.ok(r.cpu.threads.length > 0, 'per-thread CPU of the node')
t.ok(r.memory.rssMB > 0, 'RSS measured')
for (const m of ['REGISTER', 'NOTIFY', 'ACK', 'INVITE', 'BYE', 'CANCEL', 'INFO', 'REFER']) t.ok(m in r.methods, `method ${m} reported`)

// The call flows never depend on the registrar.
for (const m of ['INVITE', 'ACK', 'BYE', 'CANCEL', 'INFO', 'REFER']) {
  const x = r.methods[m]!
  t.ok(x.offered > 0, `${m} offered (${x.offered})`)
  t.equal(x.completed, x.offered - x.failed, `${m}: completed + failed = offered`)
  t.ok(x.completed > 0, `${m} completed (${x.completed})`)
}
t.ok(r.methods['INVITE']!.latencyMs.samples > 0, 'INVITE latency sampled')

// REGISTER and NOTIFY-via-lookup need the registrar: required once it answers 200.
if (r.registrar.status === 'answered 200') {
  for (const m of ['REGISTER', 'NOTIFY']) t.ok(r.methods[m]!.completed > 0, `${m} completed (${r.methods[m]!.completed}) — the registrar answers 200`)
  t.equal(r.methods['NOTIFY']!.failed, 0, 'every NOTIFY reached its registered phone')
} else {
  t.comment(`registrar not answering 200 (${r.registrar.status}); REGISTER/NOTIFY not required`)
  t.ok(r.methods['REGISTER']!.offered > 0, 'REGISTER still offered')
}
