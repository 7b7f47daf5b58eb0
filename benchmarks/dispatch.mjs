// Dispatcher / router / dialog micro-benchmarks (issue 6), in-process (no sockets, no workers):
//  1. Routing decision cost with 10,000 user_prefix rules vs 10 rules (ns per decision and the
//     ratio): consecutive prefix rules compile to one trie, so the ratio should stay near 1.
//  2. Calls per second through one Proxy (createProxy, injected send, manual timers) driven by
//     synthetic messages — INVITE / 100 / 200 / ACK / BYE / 200 through a dispatcher set —
//     with dialog tracking on vs off (dialog.enabled), side by side. The driver builds the
//     backend's responses from the forwarded bytes; its cost is in both columns.
// Run: pnpm --filter @sipedge/benchmarks run dispatch   (build @sipedge/proxy first)
// Writes benchmarks/results/dispatch-<YYYY-MM-DD>.json and .md. Figures are medians of RUNS runs.
import { parseConfig } from '@sipedge/config'
import { parseMessage } from '@sipedge/sip'
import { compileRoutes, startProxy, Resolver } from '@sipedge/proxy'
import { Dispatcher, MODULES } from '@sipedge/modules'
import os from 'node:os'
import fs from 'node:fs'
import { fileURLToPath } from 'node:url'

const RUNS = Number(process.env.RUNS ?? 5)
const DECISIONS = Number(process.env.DECISIONS ?? 200_000)
const CALLS = Number(process.env.CALLS ?? 20_000)
const median = a => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)] }

// ------------------------------------------------------------------ 1. routing decisions
function routeConfig(k) {
  const lines = []
  for (let i = 0; i < k; i++) lines.push(`  - { match: { user_prefix: "+${1000000 + i * 7}" }, action: { dispatch: ${i % 2 ? 'a' : 'b'} } }`)
  lines.push('  - { match: {}, action: { dispatch: a } }')
  return parseConfig(`
listen: [udp:127.0.0.1:5060]
dispatcher:
  sets:
    a: { probe: false, destinations: [sip:10.0.0.1:5070] }
    b: { probe: false, destinations: [sip:10.0.0.2:5070] }
routes:
${lines.join('\n')}`)
}
const SRC = { transport: 'udp', address: '192.0.2.7', port: 5062, socketId: 0 }
const users = ['+1000007999', '+1034993123', '+2000000', '+1069993123', '+1000000', '+1012345678']
const msgs = users.map(u => parseMessage(Buffer.from(`INVITE sip:${u}@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bK-1\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:${u}@example.com>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n`)))
for (const m of msgs) void m.requestUri
function decisionNs(k) {
  const c = routeConfig(k)
  const d = new Dispatcher(c, { workerIndex: 0, workers: 1, now: () => 0, resolver: new Resolver() })
  const rt = compileRoutes(c, d)
  let sink = 0
  for (let i = 0; i < 20_000; i++) sink += rt.match(msgs[i % msgs.length], msgs[i % msgs.length].requestUri, SRC).index // warm-up
  const runs = []
  for (let r = 0; r < RUNS; r++) {
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < DECISIONS; i++) { const m = msgs[i % msgs.length]; sink += rt.match(m, m.requestUri, SRC).index }
    runs.push(Number(process.hrtime.bigint() - t0) / DECISIONS)
  }
  d.close()
  if (sink === -1) console.log(sink)
  return median(runs)
}

// ------------------------------------------------------------------ 2. calls through the proxy
function proxyConfig(enabled) {
  return parseConfig(`
workers: 1
listen: [udp:127.0.0.1:5060]
dialog: { enabled: ${enabled}, mirror: false, secret: "benchmark-secret-0123456" }
dispatcher:
  sets:
    apps: { algorithm: ${enabled ? 'least-dialogs' : 'round-robin'}, probe: false, destinations: [sip:10.0.0.1:5070, sip:10.0.0.2:5070, sip:10.0.0.3:5070] }
routes:
  - { match: { method: INVITE }, action: { dispatch: apps } }
`)
}
const CALLER = { transport: 'udp', address: '192.0.2.7', port: 5062, socketId: 0, recvTime: 0 }

async function callsPerSecond(enabled) {
  let toBackend = null
  const p = await startProxy({
    config: proxyConfig(enabled), workerIndex: 0, workers: 1, manualTimers: true,
    send: (dest, data) => { if (dest.port === 5070) toBackend = { dest, data } },
    now: () => performance.timeOrigin + performance.now(), log: { debug() {}, info() {}, warn() {}, error() {} },
  }, MODULES)
  const text = () => Buffer.concat(Array.isArray(toBackend.data) ? toBackend.data : [toBackend.data]).toString('latin1')
  const answer = (fwd, status, toTag, extra) => {
    const lines = fwd.split('\r\n')
    const keep = []
    let to = ''
    for (const l of lines) {
      if (l.startsWith('Via:') || l.startsWith('Record-Route:') || l.startsWith('From:') || l.startsWith('Call-ID:') || l.startsWith('CSeq:')) keep.push(l)
      else if (l.startsWith('To:')) to = l
    }
    return Buffer.from(`SIP/2.0 ${status} OK\r\n${keep.join('\r\n')}\r\n${toTag ? to + ';tag=' + toTag : to}\r\n${extra}Content-Length: 0\r\n\r\n`, 'latin1')
  }
  const oneCall = (i, run) => {
    const cid = `c${run}-${i}@bench`
    p.receive(Buffer.from(`INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK-i${run}-${i};rport\r\nMax-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=f${i}\r\nTo: <sip:bob@example.com>\r\nCall-ID: ${cid}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@192.0.2.7:5062>\r\nContent-Length: 0\r\n\r\n`, 'latin1'), CALLER)
    const inv = text()
    const backend = { transport: 'udp', address: toBackend.dest.address, port: 5070, socketId: 0, recvTime: 0 }
    const rr = /Record-Route: (<[^>]+>)/.exec(inv)[1]
    p.receive(answer(inv, 200, 't' + i, 'Contact: <sip:app@10.9.9.9:5070>\r\n'), backend)
    p.receive(Buffer.from(`ACK sip:app@10.9.9.9:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK-a${run}-${i};rport\r\nMax-Forwards: 70\r\nRoute: ${rr}\r\nFrom: <sip:alice@example.com>;tag=f${i}\r\nTo: <sip:bob@example.com>;tag=t${i}\r\nCall-ID: ${cid}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n`, 'latin1'), CALLER)
    p.receive(Buffer.from(`BYE sip:app@10.9.9.9:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK-b${run}-${i};rport\r\nMax-Forwards: 70\r\nRoute: ${rr}\r\nFrom: <sip:alice@example.com>;tag=f${i}\r\nTo: <sip:bob@example.com>;tag=t${i}\r\nCall-ID: ${cid}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n`, 'latin1'), CALLER)
    p.receive(answer(text(), 200, '', ''), backend)
  }
  for (let i = 0; i < 2000; i++) oneCall(i, 'w')
  const runs = []
  for (let r = 0; r < RUNS; r++) {
    const t0 = performance.now()
    for (let i = 0; i < CALLS; i++) oneCall(i, r)
    runs.push(CALLS / ((performance.now() - t0) / 1000))
    p.layer.tick?.()
  }
  const c = p.counters
  const total = RUNS * CALLS + 2000
  const ok = c.forwardedRequests === total * 2 && c.acksForwarded === total && c.dialogSticky === total * 2
  const left = p.dialogs.size
  p.layer.close()
  void p.dialogs.close()
  return { callsPerSecond: median(runs), allForwardedSticky: ok, dialogsLeft: left }
}

const r10 = decisionNs(10)
const r10k = decisionNs(10_000)
const off = await callsPerSecond(false)
const on = await callsPerSecond(true)
const off2 = await callsPerSecond(false)
const on2 = await callsPerSecond(true)
const offCps = median([off.callsPerSecond, off2.callsPerSecond])
const onCps = median([on.callsPerSecond, on2.callsPerSecond])

const date = new Date().toISOString().slice(0, 10)
const result = {
  date, node: process.version, machine: { cpu: os.cpus()[0]?.model, cores: os.availableParallelism(), platform: `${os.platform()} ${os.arch()}` },
  method: 'in-process Proxy driven by synthetic messages (no sockets, no workers); medians of RUNS runs',
  runs: RUNS,
  routing: { decisions: DECISIONS, nsPerDecision10Rules: r10, nsPerDecision10000Rules: r10k, ratio10000vs10: r10k / r10 },
  calls: {
    callsPerRun: CALLS, messagesPerCall: 6,
    trackingOff: { callsPerSecond: offCps, check: off.allForwardedSticky },
    trackingOn: { callsPerSecond: onCps, check: on.allForwardedSticky, dialogsLeft: on.dialogsLeft },
    ratioOnVsOff: onCps / offCps,
  },
}
const dir = fileURLToPath(new URL('./results/', import.meta.url))
fs.mkdirSync(dir, { recursive: true })
fs.writeFileSync(`${dir}dispatch-${date}.json`, JSON.stringify(result, null, 2) + '\n')
const md = `# Dispatcher / router / dialog benchmark — ${date}

${result.machine.cpu} (${result.machine.cores} cores), Node ${process.version}, ${result.machine.platform}.
In-process \`Proxy\` driven by synthetic messages (no sockets, no worker threads); medians of ${RUNS} runs.
Run: \`pnpm --filter @sipedge/benchmarks run dispatch\`.

## Routing decision (RouteTable.match, pre-parsed messages)

| Prefix rules | ns / decision |
|---:|---:|
| 10 | ${r10.toFixed(1)} |
| 10,000 | ${r10k.toFixed(1)} |
| ratio 10,000 : 10 | **${(r10k / r10).toFixed(2)}** |

Consecutive \`user_prefix\` rules compile to one trie: the decision walks the user part once.

## Calls through the dispatcher (INVITE/100/200/ACK/BYE/200: 4 requests + 2 responses per call, 3 destinations)

| Dialog tracking | calls / s | messages / s |
|---|---:|---:|
| off (\`dialog.enabled: false\`; RR parameter still signed and checked) | ${Math.round(offCps)} | ${Math.round(offCps * 6)} |
| on (table, least-dialogs counts, timeouts; mirror off) | ${Math.round(onCps)} | ${Math.round(onCps * 6)} |
| ratio on : off | **${(onCps / offCps).toFixed(2)}** | |

Every call's ACK and BYE went to the INVITE's destination by stickiness in both modes (check: ${on.allForwardedSticky && off.allForwardedSticky}); dialogs left in the table after the runs: ${on.dialogsLeft}.
The driver (building the backend's responses from the forwarded bytes) is included in both columns.
`
fs.writeFileSync(`${dir}dispatch-${date}.md`, md)
console.log(md)
