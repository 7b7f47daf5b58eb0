#!/usr/bin/env node
// Trace replay: plays a recorded SIP-over-UDP capture (classic pcap from tcpdump/tshark, or the
// harness's own `mix.mjs --capture`) against a node, as many passes as asked.
//
//   node benchmarks/harness/replay.mjs --pcap benchmarks/harness/traces/example.pcap --start sipedge
//   node benchmarks/harness/replay.mjs --pcap trace.pcap --target 127.0.0.1:5060 --passes 20 --speed 10
//
// How: the node's address in the capture (--node, default the busiest address) becomes the
// target; every other endpoint becomes a local socket (same loopback address and port, or
// 127.0.4.x with --remap). Messages the endpoints sent to the node are the script; messages the
// node sent are what we expect back, and are counted, not sent. Requests are sent on the original
// timeline divided by --speed; responses are sent when the live request they answer arrives (same
// relative delay), with the live Via and Record-Route, since only those carry the node's own
// branches. In-dialog requests get the route set learnt live (the node signs its Record-Route).
// Call-IDs, tags and branches get a per-pass prefix/suffix so one capture replays many times.
// Bounded: --passes <= 1000, every pass ends, the whole replay ends by --max-seconds.
import { createSocket } from 'node:dgram'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { readPcap } from './pcap.mjs'
import { parse, get, all, cseq } from './sip.mjs'
import { hookExit, killAll, startSipedge, startKamailio, stopNode } from './procs.mjs'

function args(argv) {
  const o = { pcap: null, target: null, node: null, passes: 3, speed: 1, remap: false, start: null, maxSeconds: 300, out: null, gapMs: 500, port: 26060 }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i], v = () => argv[++i]
    if (a === '--pcap') o.pcap = v()
    else if (a === '--target') o.target = v()
    else if (a === '--node') o.node = v()
    else if (a === '--passes') o.passes = Number(v())
    else if (a === '--speed') o.speed = Number(v())
    else if (a === '--remap') o.remap = true
    else if (a === '--start') o.start = v()
    else if (a === '--max-seconds') o.maxSeconds = Number(v())
    else if (a === '--out') o.out = v()
    else if (a === '--port') o.port = Number(v())
    else throw new Error(`unknown option ${a}`)
  }
  if (o.pcap === null) throw new Error('--pcap FILE is required')
  if (!(o.passes >= 1 && o.passes <= 1000)) throw new Error('--passes must be 1..1000')
  if (!(o.speed > 0 && o.speed <= 10000)) throw new Error('--speed must be in (0, 10000]')
  return o
}

const ep = (ip, port) => `${ip}:${port}`

export async function replay(o) {
  const pk = readPcap(o.pcap).filter(p => p.data.length > 0 && /^[A-Z]+ |^SIP\/2\.0/.test(p.data.toString('latin1', 0, 12)))
  if (pk.length === 0) throw new Error(`${o.pcap}: no SIP over UDP/IPv4 packets`)
  pk.sort((a, b) => a.ts - b.ts)
  let node = o.node
  if (node === null) {
    const n = new Map()
    for (const p of pk) for (const e of [ep(p.src, p.sport), ep(p.dst, p.dport)]) n.set(e, (n.get(e) ?? 0) + 1)
    node = [...n.entries()].sort((a, b) => b[1] - a[1])[0][0]
  }
  // endpoint mapping: keep loopback addresses, or remap everything into 127.0.4.0/24
  const map = new Map()
  let nextHost = 1
  const mapped = (e) => {
    if (!map.has(e)) {
      const [ip, port] = e.split(':')
      map.set(e, !o.remap && ip.startsWith('127.') ? e : ep(`127.0.4.${nextHost++}`, port))
      if (nextHost > 250) throw new Error('more than 250 endpoints')
    }
    return map.get(e)
  }
  for (const p of pk) { const s = ep(p.src, p.sport), d = ep(p.dst, p.dport); if (s !== node) mapped(s); if (d !== node) mapped(d) }

  let nodeProc = null, dir = null, target = o.target
  if (o.start !== null) {
    dir = mkdtempSync(join(tmpdir(), 'sipedge-replay-'))
    const backendEps = new Set()
    for (const p of pk) if (ep(p.src, p.sport) === node && p.data.toString('latin1', 0, 7) === 'INVITE ') backendEps.add(map.get(ep(p.dst, p.dport)))
    const backends = [...backendEps].map((e, index) => { const [ip, port] = e.split(':'); return { index, ip, port: Number(port) } })
    nodeProc = o.start === 'kamailio'
      ? await startKamailio({ dir, port: o.port, children: 2, domain: 'edge.test', backends, cpus: null })
      : await startSipedge({ dir, runId: 'replay', port: o.port, metricsPort: o.port + 30, workers: 1, domain: 'edge.test', backends, cpus: null, store: `lmdb:${join(dir, 'store')}` })
    target = `127.0.0.1:${o.port}`
  }
  if (target === null) throw new Error('--target HOST:PORT or --start sipedge|kamailio is required')
  const [tHost, tPortS] = target.split(':')
  const tPort = Number(tPortS)
  if (!tHost.startsWith('127.')) throw new Error('--target must be a 127.0.0.0/8 address')

  // text rewriting of addresses: capture endpoint -> local endpoint, capture node -> target
  const pairs = [[node, target], ...[...map.entries()].filter(([a, b]) => a !== b)]
  const rewriteAddr = (s) => { for (const [a, b] of pairs) s = s.split(a).join(b); return s }

  const t0 = pk[0].ts
  const span = (pk[pk.length - 1].ts - t0) / 1000 / o.speed
  const script = pk.map(p => ({ ...p, fromNode: ep(p.src, p.sport) === node, text: rewriteAddr(p.data.toString('latin1')), at: (p.ts - t0) / 1000 / o.speed }))
  // Responses from endpoints are triggered by the latest request of the same Call-ID that the node
  // sent to that endpoint before them: usually the request they answer, but e.g. a 487 follows the
  // node's CANCEL, not its INVITE. They carry the Via of the request they answer (their own key).
  for (let i = 0; i < script.length; i++) {
    const m = script[i]
    if (m.fromNode || !m.text.startsWith('SIP/2.0')) continue
    const msg = parse(Buffer.from(m.text, 'latin1'))
    const callId = get(msg, 'call-id')
    m.ownKey = `${callId}|${get(msg, 'cseq')}`
    for (let j = i - 1; j >= 0; j--) {
      const q = script[j]
      if (!q.fromNode || ep(q.dst, q.dport) !== ep(m.src, m.sport) || q.text.startsWith('SIP/2.0')) continue
      const qm = parse(Buffer.from(q.text, 'latin1'))
      if (get(qm, 'call-id') === callId) { m.anchorKey = `${callId}|${get(qm, 'cseq')}`; m.delay = m.at - q.at; break }
    }
  }

  const stats = { passes: o.passes, speed: o.speed, node, target, packets: pk.length, requestsSent: {}, responsesSent: {}, expectedFromNode: {}, receivedFromNode: {}, unanswerable: 0, unmatchedLive: 0 }
  const inc = (obj, k) => { obj[k] = (obj[k] ?? 0) + 1 }
  const label = (text) => text.startsWith('SIP/2.0') ? `${text.slice(8, 11)} (${cseq(parse(Buffer.from(text, 'latin1')) ?? { headers: [] }).method ?? '?'})` : text.slice(0, text.indexOf(' '))
  for (const m of script) if (m.fromNode) stats.expectedFromNode[label(m.text)] = (stats.expectedFromNode[label(m.text)] ?? 0) + o.passes

  // sockets per endpoint
  const socks = new Map()
  const state = new Map() // local endpoint -> { routes: Map(callId -> route set learnt as UAC from a 2xx), lastTo: Map(callId|n -> To) }
  // The node picks the app server by hashing the (rewritten) Call-ID, so a request may reach another
  // endpoint than in the capture: scripted responses and UAS route sets are looked up globally and
  // sent from the socket where the live request arrived.
  const pending = new Map() // trigger callId|CSeq -> [scripted responses]
  const liveVia = new Map() // callId|CSeq -> { vias, rr } of the live request
  const uasRoutes = new Map() // callId -> route set learnt as UAS from the dialog-creating request
  for (const local of new Set(map.values())) {
    const [ip, port] = local.split(':')
    const s = createSocket({ type: 'udp4', recvBufferSize: 4 << 20 })
    await new Promise((res, rej) => { s.once('error', rej); s.bind(Number(port), ip, () => { s.removeListener('error', rej); res() }) })
    s.on('error', () => {})
    socks.set(local, s)
    state.set(local, { routes: new Map(), lastTo: new Map(), uac: new Set() })
    s.on('message', (buf) => onLive(local, buf))
  }

  const uniq = (text, p) => {
    const tag = `p${p}x${runTag}`
    return text
      .replace(/^(Call-ID|i)(\s*:\s*)(\S+)/gim, (_, h, c, v) => `${h}${c}${tag}-${v}`)
      .replace(/;tag=([^;>,\s]+)/gi, (_, v) => `;tag=${v}-${tag}`)
      .replace(/branch=(z9hG4bK[^;,\s]*)/g, (_, v) => `branch=${v}-${tag}`)
  }
  const runTag = Math.random().toString(36).slice(2, 6)
  const fixLength = (text) => {
    const i = text.indexOf('\r\n\r\n')
    if (i < 0) return text
    const body = text.slice(i + 4)
    return text.slice(0, i).replace(/^(Content-Length|l)\s*:\s*\d+/im, `Content-Length: ${Buffer.byteLength(body, 'latin1')}`) + '\r\n\r\n' + body
  }
  const replaceHeaders = (text, names, values) => {
    const i = text.indexOf('\r\n\r\n')
    const lines = text.slice(0, i).split('\r\n')
    const keep = [lines[0]]
    let inserted = false
    for (const l of lines.slice(1)) {
      const n = l.slice(0, l.indexOf(':')).trim().toLowerCase()
      if (names.includes(n)) { if (!inserted) { keep.push(...values); inserted = true } continue }
      keep.push(l)
    }
    if (!inserted) keep.splice(1, 0, ...values)
    return keep.join('\r\n') + text.slice(i)
  }

  function onLive(local, buf) {
    const msg = parse(buf)
    if (msg === null) return
    const st = state.get(local)
    const text = buf.toString('latin1')
    inc(stats.receivedFromNode, msg.isReq ? msg.method : `${msg.status} (${cseq(msg).method})`)
    const callId = get(msg, 'call-id')
    if (!msg.isReq) {
      const cs = cseq(msg)
      if (cs.method === 'INVITE' && msg.status >= 200) {
        st.lastTo.set(`${callId}|${cs.n}`, get(msg, 'to'))
        if (msg.status < 300) st.routes.set(callId, all(msg, 'record-route').reverse().map(r => `Route: ${r}`))
      }
      return
    }
    if (msg.method === 'INVITE' || msg.method === 'SUBSCRIBE') uasRoutes.set(callId, all(msg, 'record-route').map(r => `Route: ${r}`))
    const key = `${callId}|${get(msg, 'cseq')}`
    const vias = msg.headers.filter(h => h[0] === 'via').map(h => `Via: ${h[1]}`)
    const rr = msg.headers.filter(h => h[0] === 'record-route').map(h => `Record-Route: ${h[1]}`)
    if (msg.method !== 'ACK' && msg.method !== 'CANCEL' && !liveVia.has(key)) liveVia.set(key, { vias, rr })
    const list = pending.get(key)
    if (list === undefined) { if (msg.method !== 'ACK') { stats.unmatchedLive++; if (process.env.REPLAY_DEBUG) process.stderr.write(`unmatched at ${local}: ${key} \n`) } return }
    for (const r of list) {
      if (r.sent && msg.method !== 'INVITE') continue
      r.sent = true
      setTimeout(() => {
        if (closed) return
        const own = r.ownKey === key ? { vias, rr } : liveVia.get(r.ownKey) ?? { vias, rr }
        let out = replaceHeaders(r.text, ['via', 'v'], own.vias)
        if (own.rr.length > 0 && /^SIP\/2\.0 (1[0-9][1-9]|2)/.test(out)) out = replaceHeaders(out, ['record-route'], own.rr)
        socks.get(local).send(Buffer.from(fixLength(out), 'latin1'), tPort, tHost)
        inc(stats.responsesSent, label(out))
      }, Math.max(0, r.delay))
    }
  }

  const timers = []
  const hardEnd = Date.now() + o.maxSeconds * 1000
  const passStart = Date.now() + 300
  for (let p = 0; p < o.passes; p++) {
    const base = passStart + p * (span + o.gapMs)
    if (base > hardEnd) break
    for (const m of script) {
      if (m.fromNode) continue
      const local = map.get(ep(m.src, m.sport))
      const text = uniq(m.text, p)
      if (text.startsWith('SIP/2.0')) {
        const msg = parse(Buffer.from(text, 'latin1'))
        if (m.anchorKey === undefined) { stats.unanswerable++; continue }
        const pfx = `p${p}x${runTag}-`
        const key = pfx + m.anchorKey
        if (!pending.has(key)) pending.set(key, [])
        pending.get(key).push({ text, delay: m.delay, sent: false, ownKey: pfx + m.ownKey })
        continue
      }
      timers.push(setTimeout(() => sendRequest(local, text, 0), Math.max(0, base + m.at - Date.now())))
    }
  }

  let closed = false
  function sendRequest(local, text, waited) {
    if (closed) return
    const msg = parse(Buffer.from(text, 'latin1'))
    const st = state.get(local)
    const callId = get(msg, 'call-id')
    const toTagged = /;\s*tag=/i.test(get(msg, 'to') ?? '')
    let out = text
    const wait = () => { if (waited < 2000) { setTimeout(() => sendRequest(local, text, waited + 10), 10); return true } return false }
    if (msg.method === 'INVITE' && !toTagged) st.uac.add(callId)
    if (toTagged && msg.method === 'ACK') {
      // ACK only after the final response it acknowledges arrived live: a 2xx ACK takes the route
      // set, a non-2xx ACK (hop by hop) the live To.
      const fin = st.lastTo.get(`${callId}|${cseq(msg).n}`)
      if (fin === undefined && wait()) return
      const rs = st.routes.get(callId)
      if (rs !== undefined) out = replaceHeaders(out, ['route'], rs)
      else if (fin !== undefined) out = replaceHeaders(out, ['to', 't'], [`To: ${fin}`])
    } else if (toTagged) {
      // The caller side uses the route set from its 2xx, the callee side the Record-Route of the
      // request it received (whichever app server the node picked).
      const rs = st.uac.has(callId) ? st.routes.get(callId) : uasRoutes.get(callId)
      if (rs === undefined && wait()) return
      if (rs !== undefined) out = replaceHeaders(out, ['route'], rs)
    }
    socks.get(local).send(Buffer.from(fixLength(out), 'latin1'), tPort, tHost)
    inc(stats.requestsSent, msg.method)
  }

  const total = Math.min(hardEnd - Date.now(), 300 + o.passes * (span + o.gapMs) + 3000)
  await new Promise(r => setTimeout(r, Math.max(0, total)))
  closed = true
  for (const t of timers) clearTimeout(t)
  for (const s of socks.values()) s.close()
  if (nodeProc !== null) await stopNode(nodeProc)
  if (dir !== null) rmSync(dir, { recursive: true, force: true })
  const exp = Object.values(stats.expectedFromNode).reduce((a, b) => a + b, 0)
  const got = Object.values(stats.receivedFromNode).reduce((a, b) => a + b, 0)
  stats.summary = `${o.passes} pass(es) of ${pk.length} packets at ${o.speed}x: sent ${Object.values(stats.requestsSent).reduce((a, b) => a + b, 0)} requests and ${Object.values(stats.responsesSent).reduce((a, b) => a + b, 0)} responses; received ${got} messages from the node, ${exp} expected from the capture`
  return stats
}

if (import.meta.url === `file://${process.argv[1]}`) {
  hookExit()
  const o = args(process.argv.slice(2))
  replay(o).then(stats => {
    const s = JSON.stringify(stats, null, 2)
    if (o.out) writeFileSync(o.out, s + '\n')
    process.stdout.write(s + '\n')
    killAll()
  }, err => { process.stderr.write(`replay: ${err?.stack ?? err}\n`); killAll(); process.exit(1) })
}
