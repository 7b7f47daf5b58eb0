// The `sipedge` command as a child process: check-config, --help/--version, ready line, SIGTERM
// drain (exit 0, in-flight answered), SIGHUP reload, and `pnpm sipedge` under a process-group
// SIGTERM (what systemd sends).
import t from 'tap'
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { UdpClient, sipRequest, tempDir, waitForOutput, waitForExit, killHard, waitUntil } from '@sipedge/tests'
import { http, sampleValue } from '../dist/ops.js'
import { parseExposition } from '../../metrics/test/fixtures/expo-parser.js'

const root = fileURLToPath(new URL('../../../', import.meta.url))
const main = join(root, 'packages/cli/dist/main.js')
const tmp = tempDir()
t.teardown(tmp.cleanup)
let nextPort = 15000 + (process.pid % 400) * 2

function config(extra = '', workers = 1): { file: string; port: number } {
  const port = nextPort
  nextPort += 2
  const file = join(tmp.dir, `c${port}.yaml`)
  // HTTP on the odd port next to SIP's: the default 9090 would collide with a test run in parallel.
  writeFileSync(file, `workers: ${workers}\nlisten:\n  - udp:127.0.0.1:${port}\n  - tcp:127.0.0.1:${port}\nmetrics: { listen: 127.0.0.1:${port + 1} }\n${extra}`)
  return { file, port }
}

t.test('--help and --version', async t => {
  const h = spawnSync(process.execPath, [main, '--help'], { encoding: 'utf8' })
  t.equal(h.status, 0)
  t.match(h.stdout, /check-config FILE/)
  const v = spawnSync(process.execPath, [main, '--version'], { encoding: 'utf8' })
  t.equal(v.status, 0)
  t.match(v.stdout, /^sipedge \d+\.\d+\.\d+/)
  const bad = spawnSync(process.execPath, [main, '--bogus'], { encoding: 'utf8' })
  t.not(bad.status, 0)
})

t.test('check-config: a good file exits 0, a bad one exits non-zero naming file:line:col', async t => {
  const good = config()
  const ok = spawnSync(process.execPath, [main, 'check-config', good.file], { encoding: 'utf8' })
  t.equal(ok.status, 0, ok.stderr)
  const bad = join(tmp.dir, 'bad.yaml')
  writeFileSync(bad, 'workers: 2\nlisten:\n  - udp:127.0.0.1:99999\nlimits:\n  max_connectionz: 5\n')
  const r = spawnSync(process.execPath, [main, 'check-config', bad], { encoding: 'utf8' })
  t.not(r.status, 0)
  t.match(r.stderr, new RegExp(`${bad.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:3:\\d+`), 'line of the bad port')
  t.match(r.stderr, /:5:\d+/, 'line of the unknown key')
  const run = spawnSync(process.execPath, [main, '--config', bad], { encoding: 'utf8' })
  t.not(run.status, 0, 'the proxy refuses to start on it too')
})

t.test('--config: logs ready, answers, drains on SIGTERM (in-flight answered) and exits 0', async t => {
  const { file, port } = config('', 1)
  const child = spawn(process.execPath, [main, '--config', file], { env: { ...process.env, SIPEDGE_TEST_HOOKS: '1' }, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => killHard(child))
  let out = ''
  child.stderr.on('data', d => { out += d })
  child.stdout.on('data', d => { out += d })
  const ready = await waitForOutput(child, /"msg":"ready"/)
  t.match(ready, /"listen":\["udp:127\.0\.0\.1:\d+","tcp:127\.0\.0\.1:\d+"\]/)
  t.match(ready, /"v8Flags":\["--interrupt-budget=16384","--gc-memory-reducer-start-delay-ms=600000","--memory-reducer-single-gc"\]/, 'the V8 tier-up and memory-reducer defaults are set (docs/performance.md)')
  const c = new UdpClient()
  await c.bind()
  t.teardown(() => c.close())
  t.equal((await c.request(sipRequest(), port)).status, 200)
  // A request the node has received when SIGTERM arrives is answered before exit. "Received"
  // is read from its own counter (datagrams in, on the metrics port): a guessed delay would
  // let a loaded host still hold it in the socket buffer, where no drain can see it.
  const datagramsIn = async (): Promise<number> => {
    const f = parseExposition((await http('GET', `http://127.0.0.1:${port + 1}/metrics`)).text)
    return sampleValue(f, 'sipedge_transport_messages_total', 'sipedge_transport_messages_total', { direction: 'in', kind: 'datagram' })
  }
  const before = await datagramsIn()
  t.ok(before >= 1, `datagrams in before (${before})`)
  const slow = sipRequest({ callId: 'in-flight', extraHeaders: ['X-Sipedge-Test: busy=400'] })
  c.send(slow, port)
  await waitUntil(async () => (await datagramsIn()) > before, 'the node to receive the in-flight request')
  child.kill('SIGTERM')
  const { code } = await waitForExit(child, 30_000)
  t.equal(code, 0, out)
  t.equal(c.responses.get('in-flight')?.[0]?.status, 200, 'in-flight request answered during the drain')
  t.match(out, /"msg":"stopped"/)
})

t.test("V8 flags on the node command line are kept: the ready line says nothing was set", async t => {
  const { file } = config('', 1)
  const child = spawn(process.execPath, ['--interrupt-budget=67584', '--no-memory-reducer-single-gc', '--gc-memory-reducer-start-delay-ms=8000', main, '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => killHard(child))
  const ready = await waitForOutput(child, /"msg":"ready"/)
  t.match(ready, /"v8Flags":\[\]/)
  child.kill('SIGTERM')
  t.equal((await waitForExit(child, 30_000)).code, 0)
})

t.test('SIGHUP: a valid file is reloaded, an invalid one is refused and the old kept', async t => {
  const { file, port } = config('', 1)
  const child = spawn(process.execPath, [main, '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => killHard(child))
  await waitForOutput(child, /"msg":"ready"/)
  writeFileSync(file, `workers: 1\nlisten:\n  - udp:127.0.0.1:${port}\n  - tcp:127.0.0.1:${port}\ndomains: [reloaded.example]\n`)
  // Listen for both lines before the signal: they may arrive in one chunk.
  const reloaded = waitForOutput(child, /"msg":"configuration reloaded"/)
  const updated = waitForOutput(child, /configuration updated/)
  child.kill('SIGHUP')
  await reloaded
  const upd = await updated
  t.match(upd, /"worker":0/, 'the worker got the new configuration over its MessagePort')
  writeFileSync(file, 'workers: [oops\n')
  const rejected = waitForOutput(child, /configuration reload rejected/)
  child.kill('SIGHUP')
  const rej = await rejected
  t.match(rej, /c\d+\.yaml:\d+:\d+/, 'says where')
  const c = new UdpClient()
  await c.bind()
  t.teardown(() => c.close())
  t.equal((await c.request(sipRequest(), port)).status, 200, 'still serving')
  child.kill('SIGTERM')
  t.equal((await waitForExit(child)).code, 0)
})

t.test('`pnpm sipedge --config F`: SIGTERM to the whole process group exits 0', async t => {
  const { file, port } = config('', 1)
  const child = spawn('pnpm', ['sipedge', '--config', file], { cwd: root, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => killHard(child, true))
  await waitForOutput(child, /"msg":"ready"/, 60_000)
  const c = new UdpClient()
  await c.bind()
  t.teardown(() => c.close())
  t.equal((await c.request(sipRequest(), port)).status, 200)
  process.kill(-child.pid!, 'SIGTERM')
  const { code, signal } = await waitForExit(child, 30_000)
  t.equal(signal, null)
  t.equal(code, 0)
})

t.test('an HTTP port already taken by another node is a startup error, not a silent share', async t => {
  const first = config('', 1)
  const a = spawn(process.execPath, [main, '--config', first.file], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => killHard(a))
  await waitForOutput(a, /"msg":"ready"/)
  // Different SIP ports, the same metrics listener as the first node.
  const second = config('', 1)
  writeFileSync(second.file, `workers: 1\nlisten:\n  - udp:127.0.0.1:${second.port}\nmetrics: { listen: 127.0.0.1:${first.port + 1} }\n`)
  const b = spawn(process.execPath, [main, '--config', second.file], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => killHard(b))
  const failed = await waitForOutput(b, /startup failed/)
  t.match(failed, /ERR_METRICS_LISTEN|cannot listen/)
  t.equal((await waitForExit(b, 30_000)).code, 1)
  a.kill('SIGTERM')
  t.equal((await waitForExit(a)).code, 0)
})

t.test('every feature the schema names is implemented: pike and topology hiding start without a "not implemented" warning', async t => {
  const { file } = config('topology_hiding: true\npike: { enabled: true }\n', 1)
  const child = spawn(process.execPath, [main, '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => killHard(child))
  let out = ''
  child.stdout!.on('data', d => { out += d })
  child.stderr!.on('data', d => { out += d })
  await waitForOutput(child, /"msg":"ready"/)
  t.notMatch(out, /not implemented in this version/, 'no feature announced as missing')
  child.kill('SIGTERM')
  t.equal((await waitForExit(child)).code, 0)
})

/** The nice value of each thread of `pid` (field 19 of /proc/PID/task/TID/stat), main thread first. */
function threadNice(pid: number): { main: number; others: number[] } {
  const others: number[] = []
  let main = NaN
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let stat: string
    try { stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8') } catch { continue }
    // after "(comm)" the fields are counted from 3: state is field 3, nice field 19
    const nice = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16])
    if (Number(tid) === pid) main = nice
    else others.push(nice)
  }
  return { main, others }
}

t.test('helper threads (V8 GC and compiler, libuv pool, log) run at nice 19 by default with workers: 0, as they are with worker threads; the message-handling threads keep the priority', { skip: existsSync('/proc/self/task') ? false : 'no /proc (not Linux)' }, async t => {
  for (const [nice, workers] of [[undefined, 2], [undefined, 0], [19, 1], [0, 0]] as const) {
    const { file, port } = config(nice !== undefined ? `helper_thread_nice: ${nice}\n` : '', workers)
    const child = spawn(process.execPath, [main, '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] })
    t.teardown(() => killHard(child))
    const ready = await waitForOutput(child, /"msg":"ready"/)
    const c = new UdpClient()
    await c.bind()
    t.equal((await c.request(sipRequest(), port)).status, 200, `answers (workers: ${workers})`)
    c.close()
    const n = threadNice(child.pid!)
    t.equal(n.main, 0, 'the primary keeps the priority')
    if (nice === 0 || (nice === undefined && workers > 0)) {
      t.same(n.others.filter(v => v !== 0), [], `helper_thread_nice: ${nice ?? 'default'} with workers: ${workers} leaves every thread as it is`)
      t.notMatch(ready, /helperThreadsNice/)
    } else {
      // V8's platform threads (4 by default), the log thread and libuv's pool (when the module
      // loader has started it) exist before the engine starts
      t.ok(n.others.filter(v => v === 19).length >= 5, `helper threads at 19: ${JSON.stringify(n.others)}`)
      // the workers are created later by the primary and inherit its priority
      t.ok(n.others.filter(v => v === 0).length >= workers, `${workers} worker threads at 0: ${JSON.stringify(n.others)}`)
      t.match(ready, /"helperThreadsNice":19,"helperThreads":\d+/)
    }
    child.kill('SIGTERM')
    await waitForExit(child, 30_000)
  }
})
