#!/usr/bin/env node
// Registrar benchmark: REGISTER throughput (unauthenticated and with digest auth), lookup
// throughput with 100,000 registered AORs, CPU ms per 1,000 REGISTERs and memory per binding,
// for the LMDB and the Redis location store. In-process (no sockets): each REGISTER is parsed from
// bytes and answered through a stub server transaction, so the figures are parse + registrar +
// store. Each backend runs in its own child process. Redis: REGISTRAR_BENCH_REDIS_URL, or a
// private redis-server on a free port in 19400-19499. Results: results/registrar-<date>.json/.md.
//   node --expose-gc registrar.mjs [--aors 100000] [--auth 20000] [--lookups 100000] [--runs 3]
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync, statSync } from 'node:fs'
import { connect, createServer } from 'node:net'
import os from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const args = process.argv.slice(2)
const arg = (name, dflt) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : dflt }
const AORS = Number(arg('aors', 100_000))
const AUTH = Number(arg('auth', 20_000))
const LOOKUPS = Number(arg('lookups', 100_000))
const RUNS = Number(arg('runs', 3))
const CONCURRENCY = 256
const median = xs => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const mb = n => Math.round((n / 1048576) * 10) / 10

function registerBytes(i, cseq, extra = '') {
  const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`
  return Buffer.from(
    'REGISTER sip:example.com SIP/2.0\r\n' +
    `Via: SIP/2.0/UDP ${ip}:5060;branch=z9hG4bK${i}x${cseq};rport\r\n` +
    'Max-Forwards: 70\r\n' +
    `From: <sip:u${i}@example.com>;tag=t${i}\r\n` +
    `To: <sip:u${i}@example.com>\r\n` +
    `Call-ID: reg-${i}@${ip}\r\n` +
    `CSeq: ${cseq} REGISTER\r\n` +
    `Contact: <sip:u${i}@${ip}:5060;transport=udp>;expires=3600\r\n` +
    'User-Agent: bench/1.0\r\n' + extra +
    'Content-Length: 0\r\n\r\n', 'latin1')
}
function inviteBytes(i) {
  return Buffer.from(
    `INVITE sip:u${i}@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bKi${i}\r\nMax-Forwards: 70\r\n` +
    `From: <sip:app@127.0.0.2>;tag=a${i}\r\nTo: <sip:u${i}@example.com>\r\nCall-ID: inv-${i}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n`, 'latin1')
}

async function child(url, dir) {
  const { parseMessage } = await import('@sipedge/sip')
  const { parseConfig } = await import('@sipedge/config')
  const { openStores, computeHa1 } = await import('@sipedge/store')
  const reg = await import('@sipedge/modules')
  const auth = reg
  const snapshot = () => {
    globalThis.gc?.()
    const status = readFileSync('/proc/self/status', 'utf8')
    const kb = name => Number(new RegExp(`${name}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) * 1024
    return { rss: process.memoryUsage().rss, rssAnon: kb('RssAnon'), heap: process.memoryUsage().heapUsed }
  }
  // users file for the auth runs: plain passwords, hashed at load
  const users = {}
  for (let i = 0; i < AUTH; i++) users[`u${i}`] = `pw${i}`
  writeFileSync(join(dir, 'users.json'), JSON.stringify({ users }))
  const config = parseConfig(`
domains: [example.com, auth.example.com]
registrar: { store: "${url}", max_contacts: 10 }
auth: { domains: { auth.example.com: { users_file: ${join(dir, 'users.json')}, algorithms: [SHA-256, MD5] } } }
`)
  const log = { debug() {}, info() {}, warn() {}, error() {} }
  const before = snapshot()
  const stores = await openStores(url, { sweepIntervalMs: 0 })
  const r = reg.createRegistrar({ config, stores, workerIndex: 0, log })
  const source = { transport: 'udp', address: '198.51.100.7', port: 40000, socketId: 0 }
  let bad = 0
  const respond = (resolve) => ({ respond(status) { if (status !== 200) bad++; resolve(); return true } })
  const one = bytes => new Promise(res => r.handleRegister(parseMessage(bytes), respond(res), source))
  async function timed(n, op) {
    let next = 0
    const cpu0 = process.cpuUsage()
    const t0 = process.hrtime.bigint()
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => { while (next < n) await op(next++) }))
    const s = Number(process.hrtime.bigint() - t0) / 1e9
    const c = process.cpuUsage(cpu0)
    return { opsPerSec: Math.round(n / s), cpuMsPer1k: Math.round(((c.user + c.system) / 1000 / n) * 1000 * 10) / 10 }
  }
  const out = { url: url.replace(/\/\/[^@]*@/, '//'), aors: AORS }
  // 1. fill: AORS new registrations (one binding each)
  out.registerNew = await timed(AORS, i => one(registerBytes(i, 1)))
  const filled = snapshot()
  out.count = await stores.location.count()
  // 2. refreshes (the steady state): runs of the same AORs with a higher CSeq
  const refresh = []
  for (let run = 0; run < RUNS; run++) refresh.push(await timed(AORS, i => one(registerBytes(i, 2 + run))))
  out.registerRefresh = { opsPerSec: median(refresh.map(x => x.opsPerSec)), cpuMsPer1k: median(refresh.map(x => x.cpuMsPer1k)) }
  // 3. lookups
  const invites = Array.from({ length: Math.min(LOOKUPS, AORS) }, (_, i) => inviteBytes(i))
  const lookups = []
  for (let run = 0; run < RUNS; run++) lookups.push(await timed(invites.length, async i => { const x = await r.lookup(parseMessage(invites[i])); if (!Array.isArray(x)) bad++ }))
  out.lookup = { opsPerSec: median(lookups.map(x => x.opsPerSec)), cpuMsPer1k: median(lookups.map(x => x.cpuMsPer1k)) }
  // 4. authenticated REGISTER (challenge answered once per user, then nc-counted refreshes
  //    with SHA-256 like RFC 8760 clients): timed = parse + nonce check + HA1 lookup + 2 hashes + store
  const ar = r.auth.realmFor('auth.example.com', 'REGISTER')
  const authReqs = []
  for (let i = 0; i < AUTH; i++) {
    const nonce = ar.codec.issue(ar.realm)
    const nc = '00000001'
    const ha1 = computeHa1(`u${i}`, 'auth.example.com', `pw${i}`, 'SHA-256')
    const resp = auth.digestResponse('SHA-256', ha1, 'REGISTER', { nonce, uri: 'sip:auth.example.com', qop: 'auth', nc, cnonce: 'c' })
    authReqs.push(Buffer.from(registerBytes(i, 1, `Authorization: Digest username="u${i}", realm="auth.example.com", nonce="${nonce}", uri="sip:auth.example.com", response="${resp}", algorithm=SHA-256, qop=auth, nc=${nc}, cnonce="c"\r\n`).toString('latin1').replaceAll('example.com', 'auth.example.com').replaceAll('auth.auth.', 'auth.'), 'latin1'))
  }
  out.registerAuth = await timed(AUTH, i => one(authReqs[i]))
  out.authCounters = { ...r.auth.counters }
  out.errors = bad
  out.memory = {
    rssMBAfterFill: mb(filled.rss), rssDeltaMB: mb(filled.rss - before.rss), rssAnonDeltaMB: mb(filled.rssAnon - before.rssAnon),
    heapDeltaMB: mb(filled.heap - before.heap),
    processBytesPerBinding: Math.round((filled.rssAnon - before.rssAnon) / AORS),
  }
  if (url.startsWith('lmdb:')) {
    const p = url.slice(5)
    let size = 0
    try { size = statSync(join(p, 'data.mdb')).size } catch { try { size = statSync(p).size } catch { /* */ } }
    out.memory.lmdbFileMB = mb(size)
    out.memory.storeBytesPerBinding = Math.round(size / AORS)
  }
  await r.close()
  await stores.close()
  process.stdout.write('RESULT ' + JSON.stringify(out) + '\n')
}

async function freePort() {
  for (let p = 19400 + Math.floor(Math.random() * 100), k = 0; k < 100; k++, p = 19400 + ((p - 19400 + 1) % 100)) {
    const ok = await new Promise(res => { const s = createServer(); s.once('error', () => res(false)); s.listen(p, '127.0.0.1', () => s.close(() => res(true))) })
    if (ok) return p
  }
  throw new Error('no free port in 19400-19499')
}
const ping = port => new Promise(res => {
  const s = connect(port, '127.0.0.1'); let b = ''
  const done = ok => { s.destroy(); res(ok) }
  s.setTimeout(500, () => done(false)); s.on('error', () => done(false))
  s.on('connect', () => s.write('PING\r\n')); s.on('data', d => { b += d; if (b.includes('\r\n')) done(b.startsWith('+PONG')) })
})
function redisUsedMemory(port) {
  const r = spawnSync('redis-cli', ['-p', String(port), 'INFO', 'memory'], { encoding: 'utf8' })
  return Number(/used_memory:(\d+)/.exec(r.stdout ?? '')?.[1] ?? 0)
}

function runChild(url, dir) {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), '--child', url, '--dir', dir, ...args.filter(a => a !== '--child')], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    c.stdout.on('data', d => (out += d))
    c.on('exit', code => {
      const m = /RESULT (.*)/.exec(out)
      if (code === 0 && m) resolve(JSON.parse(m[1]))
      else reject(new Error(`child for ${url} exited ${code}`))
    })
  })
}

async function main() {
  const results = []
  const dir = mkdtempSync(join(os.tmpdir(), 'sipedge-registrar-bench-'))
  try {
    console.error(`lmdb: ${AORS} AORs ...`)
    results.push({ backend: 'lmdb', ...(await runChild(`lmdb:${join(dir, 'loc')}`, dir)) })
    let redisUrl = process.env.REGISTRAR_BENCH_REDIS_URL
    let server
    let port
    if (!redisUrl && spawnSync('redis-server', ['--version']).status === 0) {
      port = await freePort()
      server = spawn('redis-server', ['--port', String(port), '--save', '', '--appendonly', 'no', '--bind', '127.0.0.1'], { stdio: 'ignore' })
      for (let i = 0; i < 100 && !(await ping(port)); i++) await new Promise(r => setTimeout(r, 50))
      redisUrl = `redis://127.0.0.1:${port}/0`
    }
    if (redisUrl) {
      try {
        console.error(`redis: ${AORS} AORs ...`)
        const before = port ? redisUsedMemory(port) : 0
        const r = await runChild(redisUrl, dir)
        if (port) {
          const used = redisUsedMemory(port) - before
          r.memory.redisUsedMB = mb(used)
          r.memory.storeBytesPerBinding = Math.round(used / AORS)
        }
        results.push({ backend: 'redis', ...r })
      } finally {
        server?.kill('SIGKILL')
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  const date = new Date().toISOString().slice(0, 10)
  const machine = { cpu: os.cpus()[0]?.model, cores: os.cpus().length, memGB: Math.round(os.totalmem() / 2 ** 30), node: process.version, platform: `${os.platform()} ${os.release()}` }
  const doc = { date, machine, params: { aors: AORS, auth: AUTH, lookups: LOOKUPS, runs: RUNS, concurrency: CONCURRENCY }, results }
  const resDir = fileURLToPath(new URL('./results/', import.meta.url))
  mkdirSync(resDir, { recursive: true })
  writeFileSync(join(resDir, `registrar-${date}.json`), JSON.stringify(doc, null, 2) + '\n')
  const rows = results.map(r => `| ${r.backend} | ${r.registerNew.opsPerSec} / ${r.registerNew.cpuMsPer1k} | ${r.registerRefresh.opsPerSec} / ${r.registerRefresh.cpuMsPer1k} | ${r.registerAuth.opsPerSec} / ${r.registerAuth.cpuMsPer1k} | ${r.lookup.opsPerSec} / ${r.lookup.cpuMsPer1k} | ${r.memory.storeBytesPerBinding ?? '-'} | ${r.memory.processBytesPerBinding} | ${r.errors} |`)
  const md = `# Registrar benchmark ${date}

${machine.cpu} (${machine.cores} cores), ${machine.memGB} GB, Node ${machine.node}, ${machine.platform}.
\`node --expose-gc benchmarks/registrar.mjs --aors ${AORS} --auth ${AUTH} --runs ${RUNS}\`; one worker's registrar in process
(REGISTER parsed from bytes, answered through a stub transaction; ${CONCURRENCY} in flight), medians of ${RUNS} runs for
refresh and lookup. Figures: operations per second / CPU ms per 1,000 operations (the whole process, including
the Redis client or LMDB).

| store | REGISTER new | REGISTER refresh | REGISTER + digest (SHA-256) | lookup (${AORS} AORs) | store bytes / binding | process bytes / binding | errors |
|---|---|---|---|---|---|---|---|
${rows.join('\n')}

Store bytes per binding: LMDB data file size / bindings; Redis \`used_memory\` growth / bindings. Process bytes per
binding: anonymous RSS growth of the process while filling (nothing is cached by the registrar, so this is
allocator and client noise rather than state).
`
  writeFileSync(join(resDir, `registrar-${date}.md`), md)
  console.log(md)
}

if (args.includes('--child')) await child(args[args.indexOf('--child') + 1], args[args.indexOf('--dir') + 1])
else await main()
