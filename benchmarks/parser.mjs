// Parser micro-benchmark: parses/s of typical INVITE, REGISTER and 200 OK with access to the
// fields a proxy decision needs, Call-ID extractions/s, ns and bytes allocated per message.
// Run: pnpm --filter @sipedge/benchmarks run parser   (build @sipedge/sip first)
// Writes benchmarks/results/parser-<YYYY-MM-DD>.json and .md. Figures are medians of RUNS runs.
import { parseMessage, callIdHash, MessageEditor, buildResponse, buildAckForNonTwoXx } from '@sipedge/sip'
import os from 'node:os'
import fs from 'node:fs'
import v8 from 'node:v8'
import { fileURLToPath } from 'node:url'
import vm from 'node:vm'

// gc() without requiring --expose-gc on the command line (the npm script runs plain `node`)
if (!globalThis.gc) {
  v8.setFlagsFromString('--expose-gc')
  globalThis.gc = vm.runInNewContext('gc')
}

const RUNS = Number(process.env.RUNS ?? 7)
const ITER = Number(process.env.ITER ?? 300_000)

const crlf = s => Buffer.from(s.replace(/\n/g, '\r\n'))
const sdp = 'v=0\no=alice 2890844526 2890844526 IN IP4 198.51.100.7\ns=-\nc=IN IP4 198.51.100.7\nt=0 0\nm=audio 49170 RTP/AVP 0 8 101\na=rtpmap:0 PCMU/8000\na=rtpmap:8 PCMA/8000\na=rtpmap:101 telephone-event/8000\na=sendrecv\n'
const sdpLen = Buffer.byteLength(sdp.replace(/\n/g, '\r\n'))
const MESSAGES = {
  INVITE: crlf(`INVITE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport
Max-Forwards: 70
To: Bob <sip:bob@biloxi.example.com>
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.atlanta.example.com
CSeq: 314159 INVITE
Contact: <sip:alice@pc33.atlanta.example.com;transport=udp>
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, INFO
Supported: replaces, timer
User-Agent: ExamplePhone/1.0
Content-Type: application/sdp
Content-Length: ${sdpLen}

${sdp}`),
  REGISTER: crlf(`REGISTER sip:registrar.biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP bobspc.biloxi.example.com:5060;branch=z9hG4bKnashds7;rport
Max-Forwards: 70
To: Bob <sip:bob@biloxi.example.com>
From: Bob <sip:bob@biloxi.example.com>;tag=456248
Call-ID: 843817637684230@998sdasdh09
CSeq: 1826 REGISTER
Contact: <sip:bob@192.0.2.4;ob>;expires=3600;+sip.instance="<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>";reg-id=1
Expires: 7200
User-Agent: ExamplePhone/1.0
Content-Length: 0

`),
  OK200: crlf(`SIP/2.0 200 OK
Via: SIP/2.0/UDP proxy.example.com:5060;branch=z9hG4bK2d4790.1;received=192.0.2.3
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;received=192.0.2.1;rport=5060
To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.atlanta.example.com
CSeq: 314159 INVITE
Contact: <sip:bob@192.0.2.4>
Record-Route: <sip:proxy.example.com;lr>
Content-Type: application/sdp
Content-Length: ${sdpLen}

${sdp}`),
}

let sink = 0
function access(buf) {
  const m = parseMessage(buf)
  const v = m.topVia
  const cs = m.cseq
  sink += v.branch.length + m.callId.length + cs.seq + m.from.tag.length + m.maxForwards
  const to = m.to
  if (to.tag !== undefined) sink += to.tag.length
  return m
}
function callIdLoop(buf, n) { for (let i = 0; i < n; i++) sink ^= callIdHash(buf) }
function parseLoop(buf, n) { for (let i = 0; i < n; i++) access(buf) }
function forwardLoop(buf, n) {
  for (let i = 0; i < n; i++) {
    const m = access(buf)
    const e = new MessageEditor(m).prependVia('SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKxyz' + (i & 7))
      .setMaxForwards(m.maxForwards - 1)
    sink += e.toBuffers().length
  }
}

// Building: responses to the INVITE (To gets a fixed tag, as a UAS/proxy answering with a known
// tag would) and the ACK for a 486 to it. `buf` is the INVITE; the parsed forms are made once.
const INVITE_MSG = parseMessage(MESSAGES.INVITE)
const BUSY_MSG = parseMessage(buildResponse(INVITE_MSG, 486, undefined, { toTag: 'a6c85cf' }))
const RESP_OPTS = { toTag: 'a6c85cf' }
function resp180Loop(buf, n) { for (let i = 0; i < n; i++) sink += buildResponse(INVITE_MSG, 180, undefined, RESP_OPTS).length }
function resp200Loop(buf, n) { for (let i = 0; i < n; i++) sink += buildResponse(INVITE_MSG, 200, 'OK', RESP_OPTS).length }
function ackLoop(buf, n) { for (let i = 0; i < n; i++) sink += buildAckForNonTwoXx(INVITE_MSG, BUSY_MSG).length }
const BUILD_LOOPS = new Set([resp180Loop, resp200Loop, ackLoop])

function measure(fn, buf, n) {
  fn(buf, Math.min(n, 20_000)) // warm-up
  if (globalThis.gc) globalThis.gc()
  const h0 = v8.getHeapStatistics()
  const a0 = process.memoryUsage().heapUsed
  const t0 = process.hrtime.bigint()
  fn(buf, n)
  const t1 = process.hrtime.bigint()
  const h1 = v8.getHeapStatistics()
  void a0
  const ns = Number(t1 - t0) / n
  // total_heap allocation estimate: heap growth plus what GCs reclaimed is not exposed directly,
  // so bytes/message comes from a separate loop with GC disabled-by-size (see allocPerMsg)
  void h0; void h1
  return ns
}

// bytes allocated per message: run a loop small enough not to trigger a scavenge of the
// young generation and read the heap growth (requires --expose-gc for a clean start).
function allocPerMsg(fn, buf) {
  const n = 2000
  fn(buf, n)
  const samples = []
  for (let r = 0; r < 9; r++) {
    if (globalThis.gc) globalThis.gc()
    const a = process.memoryUsage().heapUsed
    fn(buf, n)
    const b = process.memoryUsage().heapUsed
    if (b > a) samples.push((b - a) / n)
  }
  return median(samples)
}

function median(a) {
  if (a.length === 0) return NaN
  const s = [...a].sort((x, y) => x - y)
  return s[Math.floor(s.length / 2)]
}

// Baseline measured in the same run: a plain byte-sum over the INVITE. The build machine is
// shared, so absolute figures move with its load; the ratio to this baseline does not as much.
function baselineLoop(buf, n) { for (let i = 0; i < n; i++) { let s = 0; for (let k = 0; k < buf.length; k++) s += buf[k]; sink += s } }

const results = {}
const cases = [
  ['baseline byte-sum INVITE', baselineLoop, MESSAGES.INVITE],
  ['parse INVITE + access', parseLoop, MESSAGES.INVITE],
  ['parse REGISTER + access', parseLoop, MESSAGES.REGISTER],
  ['parse 200 OK + access', parseLoop, MESSAGES.OK200],
  ['callIdHash INVITE', callIdLoop, MESSAGES.INVITE],
  ['callIdHash 200 OK', callIdLoop, MESSAGES.OK200],
  ['parse INVITE + forward edits', forwardLoop, MESSAGES.INVITE],
  ['buildResponse 180 to INVITE', resp180Loop, MESSAGES.INVITE],
  ['buildResponse 200 to INVITE', resp200Loop, MESSAGES.INVITE],
  ['buildAckForNonTwoXx (486)', ackLoop, MESSAGES.INVITE],
]
// x baseline: each run of a case is paired with a short baseline run just before it, and the
// column is the median of the per-pair ratios - so a load change between cases (the machine is
// shared) moves the ratio far less than the absolute figures.
for (const [name, fn, buf] of cases) {
  const n = fn === callIdLoop ? ITER * 10 : fn === baselineLoop || BUILD_LOOPS.has(fn) ? ITER * 2 : ITER
  const runs = []
  const ratios = []
  for (let r = 0; r < RUNS; r++) {
    const b = fn === baselineLoop ? 0 : measure(baselineLoop, MESSAGES.INVITE, Math.max(1000, ITER >> 1))
    const t = measure(fn, buf, n)
    runs.push(t)
    if (b > 0) ratios.push(t / b)
  }
  const ns = median(runs)
  results[name] = {
    nsPerOp: Math.round(ns * 10) / 10,
    opsPerSec: Math.round(1e9 / ns),
    bytesPerOp: Math.round(allocPerMsg(fn, buf)),
    messageBytes: buf.length,
    runsNs: runs.map(x => Math.round(x)),
  }
  if (name !== 'baseline byte-sum INVITE') results[name].xBaseline = Math.round(median(ratios) * 100) / 100
  console.log(name.padEnd(32), String(results[name].opsPerSec).padStart(10), 'ops/s', String(results[name].nsPerOp).padStart(8), 'ns/op',
    String(results[name].bytesPerOp).padStart(6), 'B/op', String(results[name].xBaseline ?? 1).padStart(6), 'x baseline')
}

const date = new Date().toISOString().slice(0, 10)
const machine = { cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.cpus().length, node: process.version, platform: `${os.platform()} ${os.release()}`, date: new Date().toISOString() }
const targets = { invitePerSec: 300_000, callIdPerSec: 3_000_000, buildNs: 1000 }
const out = { benchmark: 'parser', machine, loadavg: os.loadavg(), runs: RUNS, iterations: ITER, targets, results,
  meetsTargets: { invite: results['parse INVITE + access'].opsPerSec >= targets.invitePerSec, callId: results['callIdHash INVITE'].opsPerSec >= targets.callIdPerSec,
    build: ['buildResponse 180 to INVITE', 'buildResponse 200 to INVITE', 'buildAckForNonTwoXx (486)'].every(k => results[k].nsPerOp < targets.buildNs) } }
const dir = fileURLToPath(new URL('./results/', import.meta.url))
fs.mkdirSync(dir, { recursive: true })
fs.writeFileSync(`${dir}parser-${date}.json`, JSON.stringify(out, null, 2) + '\n')
let md = `# Parser micro-benchmark ${date}\n\nMachine: ${machine.cpu} (${machine.cores} cores), Node ${machine.node}, ${machine.platform}. Median of ${RUNS} runs. Load average during the run: ${os.loadavg().map(x => x.toFixed(2)).join(' ')} (shared machine).\n` +
  `Access per parse: top Via branch, Call-ID, CSeq, From/To tags, Max-Forwards. "x baseline" is the median over runs of each run's ratio to a byte-sum run made just before it (robust to load changes; absolute figures are not).\n\n| case | ops/s | ns/op | x baseline | bytes allocated/op | message bytes |\n|---|---:|---:|---:|---:|---:|\n`
for (const [k, v] of Object.entries(results)) md += `| ${k} | ${v.opsPerSec.toLocaleString('en-US')} | ${v.nsPerOp} | ${v.xBaseline ?? 1} | ${v.bytesPerOp} | ${v.messageBytes} |\n`
md += `\nTargets: INVITE parse+access >= ${targets.invitePerSec.toLocaleString('en-US')}/s (${out.meetsTargets.invite ? 'met' : 'MISSED'}), Call-ID extraction >= ${targets.callIdPerSec.toLocaleString('en-US')}/s (${out.meetsTargets.callId ? 'met' : 'MISSED'}), ` +
  `buildResponse / buildAckForNonTwoXx < ${targets.buildNs} ns (${out.meetsTargets.build ? 'met' : 'MISSED'}).\n`
fs.writeFileSync(`${dir}parser-${date}.md`, md)
if (sink === 0.5) console.log(sink)
