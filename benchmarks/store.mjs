#!/usr/bin/env node
// Store benchmark: put/get throughput and process memory with 100,000 bindings (one per AOR)
// for the LMDB and the Redis location store. Each backend runs in its own child process so
// RSS figures do not mix. Redis: STORE_BENCH_REDIS_URL, or a private redis-server on a free
// port in 16380-16480. Results: results/store-<date>.json and .md.
//   node store.mjs [--bindings 100000] [--runs 3]
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs'
import { connect, createServer } from 'node:net'
import os from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const args = process.argv.slice(2)
const arg = (name, dflt) => {
  const i = args.indexOf(`--${name}`)
  return i >= 0 ? args[i + 1] : dflt
}
const BINDINGS = Number(arg('bindings', 100_000))
const RUNS = Number(arg('runs', 3))
const CONCURRENCY = 256

const median = xs => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const mb = n => Math.round((n / 1048576) * 10) / 10

function binding(i, now) {
  return {
    aor: '', contact: `sip:user${i}@198.51.${(i >> 8) & 255}.${i & 255}:5060;transport=udp`, q: 1,
    expires: now + 3600_000, callId: `a84b4c76e66710-${i}@198.51.100.1`, cseq: 314159,
    path: ['<sip:edge1.example.com;lr>'], updatedAt: now, userAgent: 'bench/1.0',
    received: { transport: 'udp', address: `198.51.${(i >> 8) & 255}.${i & 255}`, port: 5060, socketId: 1, connId: 0 },
  }
}

/** Runs `op(i)` for i in [0, n) with a bounded number in flight; returns ops per second. */
async function throughput(n, op) {
  let next = 0
  const t0 = process.hrtime.bigint()
  const lane = async () => {
    while (next < n) await op(next++)
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, lane))
  const s = Number(process.hrtime.bigint() - t0) / 1e9
  return Math.round(n / s)
}

async function child(url) {
  const { openStores } = await import('@sipedge/store')
  const snapshot = () => {
    globalThis.gc?.()
    const status = readFileSync('/proc/self/status', 'utf8')
    const kb = name => Number(new RegExp(`${name}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) * 1024
    const m = process.memoryUsage()
    return { rssMB: mb(m.rss), rssAnonMB: mb(kb('RssAnon')), rssFileMB: mb(kb('RssFile')), heapUsedMB: mb(m.heapUsed) }
  }
  const before = snapshot()
  const s = await openStores(url, { sweepIntervalMs: 0 })
  const now = Date.now()
  let afterFirst
  const putRuns = []
  const getRuns = []
  for (let r = 0; r < RUNS; r++) {
    // every run rewrites the same 100k AORs (a re-REGISTER storm), so the set stays at BINDINGS
    putRuns.push(await throughput(BINDINGS, i => s.location.put(`sip:user${i}@example.com`, binding(i, now))))
    if (r === 0) afterFirst = snapshot()
    getRuns.push(await throughput(BINDINGS, i => s.location.get(`sip:user${(i * 7919) % BINDINGS}@example.com`)))
  }
  const count = await s.location.count()
  globalThis.gc?.()
  const mem = process.memoryUsage()
  const out = {
    url: s.url, count, memory: { beforeOpen: before, after100kPuts: afterFirst, afterAllRuns: snapshot() },
    putPerSec: median(putRuns), getPerSec: median(getRuns), putRuns, getRuns,
    externalMB: mb(mem.external),
  }
  if (s.backend === 'redis') {
    const u = new URL(url)
    const info = await redisCommand(Number(u.port || 6379), 'INFO memory')
    out.redisUsedMemoryMB = mb(Number(/used_memory:(\d+)/.exec(info)?.[1] ?? 0))
  }
  await s.close()
  process.stdout.write(`${JSON.stringify(out)}\n`)
}

/** One inline command over a raw socket (the benchmark has no Redis client of its own). */
function redisCommand(port, command) {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1')
    let buf = ''
    s.setTimeout(10_000, () => { s.destroy(); reject(new Error(`${command}: timeout`)) })
    s.on('error', reject)
    s.on('connect', () => s.write(`${command}\r\n`))
    s.on('data', d => {
      buf += d.toString()
      const m = /^\$(\d+)\r\n/.exec(buf)
      if (buf.startsWith('+') || buf.startsWith('-') || (m && buf.length >= m[0].length + Number(m[1]))) {
        s.destroy()
        resolve(buf)
      }
    })
  })
}

function freePort(port) {
  return new Promise(resolve => {
    const srv = createServer()
    srv.once('error', () => resolve(false))
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)))
  })
}
function ping(port) {
  return new Promise(resolve => {
    const s = connect(port, '127.0.0.1')
    const done = ok => { s.destroy(); resolve(ok) }
    s.setTimeout(500, () => done(false))
    s.on('error', () => done(false))
    s.on('connect', () => s.write('PING\r\n'))
    s.on('data', d => done(d.toString().startsWith('+PONG')))
  })
}
async function startRedis() {
  if (spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status !== 0) throw new Error('redis-server is not installed')
  for (let port = 16380 + Math.floor(Math.random() * 50), tries = 0; tries < 101; tries++, port = 16380 + ((port - 16380 + 1) % 101)) {
    if (!(await freePort(port))) continue
    const proc = spawn('redis-server', ['--port', String(port), '--save', '', '--appendonly', 'no', '--bind', '127.0.0.1'], { stdio: 'ignore' })
    for (let i = 0; i < 100; i++) {
      if (await ping(port)) return { url: `redis://127.0.0.1:${port}/0`, stop: () => proc.kill('SIGKILL') }
      await new Promise(r => setTimeout(r, 50))
    }
    proc.kill('SIGKILL')
  }
  throw new Error('no free port for redis-server in 16380-16480')
}

function runChild(url) {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), '--child', url, '--bindings', String(BINDINGS), '--runs', String(RUNS)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    let out = ''
    p.stdout.on('data', d => (out += d))
    p.on('exit', code => (code === 0 ? resolve(JSON.parse(out.trim().split('\n').pop())) : reject(new Error(`${url}: exit ${code}`))))
  })
}

async function main() {
  const dir = mkdtempSync(join(os.tmpdir(), 'sipedge-store-bench-'))
  let redis
  const results = {}
  try {
    console.error(`lmdb: ${BINDINGS} bindings x ${RUNS} runs ...`)
    results.lmdb = await runChild(`lmdb:${join(dir, 'store')}`)
    redis = process.env.STORE_BENCH_REDIS_URL ? { url: process.env.STORE_BENCH_REDIS_URL, stop() {} } : await startRedis()
    console.error(`redis: ${BINDINGS} bindings x ${RUNS} runs ...`)
    // keys under their own prefix; they expire on their own (bindings 1 h + grace)
    results.redis = await runChild(`${redis.url}?prefix=sipedge-bench:`)
  } finally {
    redis?.stop()
    rmSync(dir, { recursive: true, force: true })
  }
  const date = new Date().toISOString()
  const machine = { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, memGB: Math.round(os.totalmem() / 2 ** 30), platform: `${os.platform()} ${os.release()}`, node: process.version }
  const report = { benchmark: 'store', date, machine, bindings: BINDINGS, runs: RUNS, concurrency: CONCURRENCY, results }
  const resultsDir = fileURLToPath(new URL('./results/', import.meta.url))
  mkdirSync(resultsDir, { recursive: true })
  const stem = `store-${date.slice(0, 10)}`
  writeFileSync(join(resultsDir, `${stem}.json`), `${JSON.stringify(report, null, 2)}\n`)
  const row = (name, r) => {
    const m = r.memory
    return `| ${name} | ${r.count.bindings} | ${r.putPerSec} | ${r.getPerSec} | ${m.beforeOpen.rssMB} (${m.beforeOpen.rssAnonMB} / ${m.beforeOpen.rssFileMB}) | ${m.after100kPuts.rssMB} (${m.after100kPuts.rssAnonMB} / ${m.after100kPuts.rssFileMB}) | ${m.afterAllRuns.rssMB} (${m.afterAllRuns.rssAnonMB} / ${m.afterAllRuns.rssFileMB}) | ${m.afterAllRuns.heapUsedMB} | ${r.redisUsedMemoryMB ?? '-'} |`
  }
  const md = [
    `# Store benchmark, ${date}`,
    '',
    `${machine.cpu} x ${machine.cpus}, ${machine.memGB} GB, ${machine.platform}, Node ${machine.node}.`,
    `${BINDINGS} AORs with one binding each; ${CONCURRENCY} operations in flight; medians of ${RUNS} runs (a put run rewrites all AORs).`,
    'Memory is RSS of the whole benchmark process in MB, as total (anonymous / file-backed). File-backed pages are the',
    'node binary and, for LMDB, the touched pages of the memory map: page cache shared by every thread, evictable.',
    'After all runs the LMDB file holds free pages left by the rewrites (copy-on-write), hence the larger map.',
    '',
    '| backend | bindings | put/s | get/s | RSS before open | RSS after 100k puts | RSS after all runs | heap used | redis used_memory (MB) |',
    '|---|---|---|---|---|---|---|---|---|',
    row('lmdb', results.lmdb),
    row('redis', results.redis),
    '',
    `Ratio lmdb/redis: put ${(results.lmdb.putPerSec / results.redis.putPerSec).toFixed(1)}x, get ${(results.lmdb.getPerSec / results.redis.getPerSec).toFixed(1)}x.`,
    '',
  ].join('\n')
  writeFileSync(join(resultsDir, `${stem}.md`), md)
  console.log(md)
}

if (args[0] === '--child') await child(args[1])
else await main()
