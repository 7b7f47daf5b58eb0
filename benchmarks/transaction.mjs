// Transaction-layer micro-benchmark: ns per transaction for create + complete of non-INVITE and
// INVITE client and server transactions (timers included: the wheel fires Timer K/M/J/L), and
// heap bytes per live transaction (100k live). Messages are parsed before the timed region, so
// the figures are the transaction layer alone (index, state machine, timers, counters).
// Baseline in the same run: one setTimeout + clearTimeout pair, the per-transaction cost the
// timer wheel replaces.
// Run: pnpm --filter @sipedge/benchmarks run transaction   (build @sipedge/sip and @sipedge/transaction first)
// Writes benchmarks/results/transaction-<YYYY-MM-DD>.json and .md. Figures are medians of RUNS runs.
import { parseMessage } from '@sipedge/sip'
import { TransactionLayer } from '@sipedge/transaction'
import os from 'node:os'
import fs from 'node:fs'
import { fileURLToPath } from 'node:url'

const RUNS = Number(process.env.RUNS ?? 5)
const N = Number(process.env.N ?? 200_000)
const LIVE = Number(process.env.LIVE ?? 100_000)
if (typeof globalThis.gc !== 'function') {
  console.error('run with node --expose-gc (the package script does)')
  process.exit(1)
}

const crlf = s => s.replace(/\n/g, '\r\n')
const DEST = { transport: 'udp', address: '192.0.2.20', port: 5060 }
const SRC = { transport: 'udp', address: '192.0.2.10', port: 5060 }

const reqText = (method, branch, viaHost = 'proxy.example.net') => crlf(`${method} sip:bob@192.0.2.20:5060 SIP/2.0
Via: SIP/2.0/UDP ${viaHost}:5060;branch=${branch}
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport
Max-Forwards: 69
To: Bob <sip:bob@biloxi.example.com>
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.atlanta.example.com
CSeq: 314159 ${method}
Contact: <sip:alice@pc33.atlanta.example.com;transport=udp>
Content-Length: 0

`)
const resText = (status, method, branch) => crlf(`SIP/2.0 ${status} X
Via: SIP/2.0/UDP proxy.example.net:5060;branch=${branch}
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport
To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.atlanta.example.com
CSeq: 314159 ${method}
Content-Length: 0

`)

/** Parsed and with the fields the layer reads already decoded (parse cost is the parser's bench). */
function parsed(text) {
  const m = parseMessage(Buffer.from(text))
  void m.topVia.branch
  void m.cseq.method
  void m.to.tag
  return m
}

let sent = 0
function makeLayer(clock, opts = {}) {
  return new TransactionLayer({ send: () => { sent++ }, clock, manualTimers: true, ...opts })
}
const noop = () => {}

// Each scenario runs in batches of B transactions over B pre-parsed messages: a batch creates and
// completes B transactions, then the fake clock jumps past the last timer and one tick fires it for
// all of them, so the next batch can reuse the same branches. This keeps the heap small and the
// garbage collector out of the figures (a batch is the steady state of a busy worker).
const B = Number(process.env.BATCH ?? 1000)

function batched(setup, body, settleMs) {
  return n => {
    const clock = { t: 0, now() { return this.t } }
    const ctx = setup(clock)
    const layer = ctx.layer
    const batches = Math.max(1, Math.round(n / B))
    const t0 = process.hrtime.bigint()
    for (let b = 0; b < batches; b++) {
      for (let i = 0; i < B; i++) body(ctx, i)
      clock.t += settleMs
      layer.tick()
    }
    const ns = Number(process.hrtime.bigint() - t0) / (batches * B)
    if (layer.stats().active.total !== 0) throw new Error('transactions left')
    return ns
  }
}

const SCENARIOS = {
  'NICT create + 200 + Timer K': batched(clock => ({
    layer: makeLayer(clock),
    branches: Array.from({ length: B }, (_, i) => 'z9hG4bKnict' + i),
    resp: Array.from({ length: B }, (_, i) => parsed(resText(200, 'OPTIONS', 'z9hG4bKnict' + i))),
    request: Buffer.from(reqText('OPTIONS', 'z9hG4bKx')),
  }), (c, i) => {
    c.layer.createClient({ request: c.request, method: 'OPTIONS', branch: c.branches[i], dest: DEST, onResponse: noop })
    c.layer.receiveResponse(c.resp[i], DEST)
  }, 6000),
  'ICT create + 180 + 200 + Timer M': batched(clock => ({
    layer: makeLayer(clock),
    branches: Array.from({ length: B }, (_, i) => 'z9hG4bKict' + i),
    r180: Array.from({ length: B }, (_, i) => parsed(resText(180, 'INVITE', 'z9hG4bKict' + i))),
    r200: Array.from({ length: B }, (_, i) => parsed(resText(200, 'INVITE', 'z9hG4bKict' + i))),
    request: Buffer.from(reqText('INVITE', 'z9hG4bKx')),
  }), (c, i) => {
    c.layer.createClient({ request: c.request, method: 'INVITE', branch: c.branches[i], dest: DEST, onResponse: noop })
    c.layer.receiveResponse(c.r180[i], DEST)
    c.layer.receiveResponse(c.r200[i], DEST)
  }, 33_000),
  'ICT create + 486 + ACK built + Timer D': batched(clock => ({
    layer: makeLayer(clock),
    branches: Array.from({ length: B }, (_, i) => 'z9hG4bKictf' + i),
    r486: Array.from({ length: B }, (_, i) => parsed(resText(486, 'INVITE', 'z9hG4bKictf' + i))),
    msgs: Array.from({ length: B }, (_, i) => parsed(reqText('INVITE', 'z9hG4bKictf' + i))),
  }), (c, i) => {
    const m = c.msgs[i]
    c.layer.createClient({ request: m.buf, msg: m, method: 'INVITE', branch: c.branches[i], dest: DEST, onResponse: noop })
    c.layer.receiveResponse(c.r486[i], DEST)
  }, 33_000),
  'NIST receive + 200 + Timer J': batched(clock => ({
    layer: makeLayer(clock),
    reqs: Array.from({ length: B }, (_, i) => parsed(reqText('REGISTER', 'z9hG4bKnist' + i, 'pc33.atlanta.example.com'))),
    ok: Buffer.from(resText(200, 'REGISTER', 'z9hG4bKx')),
  }), (c, i) => {
    c.layer.receiveRequest(c.reqs[i], SRC).tx.sendResponse(c.ok, 200)
  }, 33_000),
  'IST receive + 180 + 200 + Timer L (autoTrying off)': batched(clock => ({
    layer: makeLayer(clock, { autoTrying: false }),
    reqs: Array.from({ length: B }, (_, i) => parsed(reqText('INVITE', 'z9hG4bKist' + i, 'pc33.atlanta.example.com'))),
    r180: Buffer.from(resText(180, 'INVITE', 'z9hG4bKx')),
    r200: Buffer.from(resText(200, 'INVITE', 'z9hG4bKx')),
  }), (c, i) => {
    const tx = c.layer.receiveRequest(c.reqs[i], SRC).tx
    tx.sendResponse(c.r180, 180)
    tx.sendResponse(c.r200, 200)
  }, 33_000),
  'IST receive + 100 Trying built + 486 + ACK + Timer I': batched(clock => ({
    layer: makeLayer(clock),
    reqs: Array.from({ length: B }, (_, i) => parsed(reqText('INVITE', 'z9hG4bKistf' + i, 'pc33.atlanta.example.com'))),
    acks: Array.from({ length: B }, (_, i) => parsed(reqText('ACK', 'z9hG4bKistf' + i, 'pc33.atlanta.example.com'))),
    r486: Buffer.from(resText(486, 'INVITE', 'z9hG4bKx')),
  }), (c, i) => {
    c.layer.receiveRequest(c.reqs[i], SRC).tx.sendResponse(c.r486, 486)
    c.layer.receiveRequest(c.acks[i], SRC)
  }, 6000),
  'baseline: setTimeout + clearTimeout': n => {
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < n; i++) clearTimeout(setTimeout(noop, 32_000))
    return Number(process.hrtime.bigint() - t0) / n
  },
}

/** Heap bytes per live transaction; the messages are allocated before the first measurement. */
function liveHeap(kind) {
  const clock = { t: 0, now() { return this.t } }
  const layer = makeLayer(clock, { autoTrying: false })
  const request = Buffer.from(reqText('OPTIONS', 'z9hG4bKx'))
  let inputs
  if (kind === 'NICT' || kind === 'ICT') inputs = Array.from({ length: LIVE }, (_, i) => 'z9hG4bK' + kind + i)
  else inputs = Array.from({ length: LIVE }, (_, i) => parsed(reqText(kind === 'IST' ? 'INVITE' : 'REGISTER', 'z9hG4bK' + kind + i, 'pc33.atlanta.example.com')))
  const keep = new Array(LIVE)
  gc(); gc()
  const before = process.memoryUsage().heapUsed
  for (let i = 0; i < LIVE; i++) {
    if (kind === 'NICT') keep[i] = layer.createClient({ request, method: 'OPTIONS', branch: inputs[i], dest: DEST, onResponse: noop })
    else if (kind === 'ICT') keep[i] = layer.createClient({ request, method: 'INVITE', branch: inputs[i], dest: DEST, onResponse: noop })
    else keep[i] = layer.receiveRequest(inputs[i], SRC).tx
  }
  gc(); gc()
  const after = process.memoryUsage().heapUsed
  if (layer.stats().active.total !== LIVE) throw new Error('not all live')
  // minus the `keep` array slots (already allocated before) = 0; the Map index is included
  return (after - before) / LIVE
}

const median = xs => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)] }

const results = {}
for (const [name, fn] of Object.entries(SCENARIOS)) {
  fn(Math.min(N, 5000)) // warm-up
  const runs = []
  for (let r = 0; r < RUNS; r++) { gc(); runs.push(fn(N)) }
  results[name] = { nsPerTx: Math.round(median(runs)), runs: runs.map(x => Math.round(x)) }
  console.log(`${name}: ${results[name].nsPerTx} ns/tx (runs ${results[name].runs.join(', ')})`)
}
const base = results['baseline: setTimeout + clearTimeout'].nsPerTx
for (const r of Object.values(results)) r.vsBaseline = Math.round((r.nsPerTx / base) * 100) / 100

const heap = {}
for (const kind of ['NICT', 'ICT', 'NIST', 'IST']) {
  const runs = []
  for (let r = 0; r < 3; r++) runs.push(liveHeap(kind))
  heap[kind] = Math.round(median(runs))
  console.log(`${kind}: ${heap[kind]} heap bytes per live transaction (${LIVE} live, request messages excluded)`)
}

const date = new Date().toISOString().slice(0, 10)
const cpus = os.cpus()
const machine = `${cpus[0]?.model?.trim() ?? 'unknown'} (${cpus.length} cores), Node ${process.version}, ${os.platform()} ${os.release()}`
const out = { date, machine, runs: RUNS, n: N, live: LIVE, scenarios: results, heapBytesPerLiveTransaction: heap }
const dir = fileURLToPath(new URL('./results/', import.meta.url))
fs.mkdirSync(dir, { recursive: true })
fs.writeFileSync(`${dir}transaction-${date}.json`, JSON.stringify(out, null, 2) + '\n')
const md = [
  `# Transaction layer micro-benchmark ${date}`,
  '',
  `Machine: ${machine}. Median of ${RUNS} runs of ${N} transactions each, in batches of ${B}; messages parsed before timing;`,
  'each batch ends by advancing a fake clock so the wheel fires the final timer and every transaction terminates.',
  '',
  '| scenario | ns/transaction | x baseline |',
  '|---|---:|---:|',
  ...Object.entries(results).map(([k, v]) => `| ${k} | ${v.nsPerTx} | ${v.vsBaseline} |`),
  '',
  `Heap per live transaction (${LIVE} live, fresh state: NICT Trying, ICT Calling, NIST Trying, IST Proceeding;`,
  'index entries and timer state included, request bytes / parsed request messages excluded):',
  '',
  '| kind | bytes |',
  '|---|---:|',
  ...Object.entries(heap).map(([k, v]) => `| ${k} | ${v} |`),
  '',
]
fs.writeFileSync(`${dir}transaction-${date}.md`, md.join('\n'))
console.log(`wrote results/transaction-${date}.json and .md`)
