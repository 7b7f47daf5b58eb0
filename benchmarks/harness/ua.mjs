// One load-generator shard (a piscina task, one per generator thread). It owns:
//   - phones: global ids i with i % W === k, all behind one UDP socket (Contact sip:u<i>@ip:port);
//     they pre-register, re-register every `refreshS`, place answered and cancelled calls, and
//     answer NOTIFYs (out of dialog via the proxy's lookup, and in dialog after a REFER);
//   - backends b with b % W === k: the dispatcher's destinations. They answer INVITEs according to
//     the X-Flow header the phone put in (answered / cancelled), INFO, REFER (202 + NOTIFY), BYE,
//     OPTIONS, and act as application servers that send out-of-dialog NOTIFYs to registered phones.
// Every request carries `X-Ts: <µs of CLOCK_MONOTONIC at first send>;r=<retransmission>`; the far
// end subtracts it from its own clock: on loopback that is the proxy's added delay (one way).
// Every loop is bounded: streams by count and by the absolute end times given by the harness,
// the task by a hard deadline; sockets are closed before returning.
import { createSocket } from 'node:dgram'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { parse, get, all, param, topBranch, cseq, uriOf, response, nowUs, HIST_SIZE, histIndex } from './sip.mjs'

const SDP = 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n'
const MWI = 'Messages-Waiting: yes\r\nMessage-Account: sip:voicemail@edge.test\r\nVoice-Message: 2/8 (0/2)\r\n'
const DTMF = 'Signal=5\r\nDuration=160\r\n'
const SIPFRAG = 'SIP/2.0 200 OK\r\n'
const METHODS = ['REGISTER', 'NOTIFY', 'ACK', 'INVITE', 'BYE', 'CANCEL', 'INFO', 'REFER']

// ------------------------------------------------------------------------------ tiny timer heap
class Heap {
  constructor() { this.t = []; this.f = [] }
  get size() { return this.t.length }
  push(at, fn) {
    const t = this.t, f = this.f
    let i = t.length
    t.push(at); f.push(fn)
    while (i > 0) {
      const p = (i - 1) >> 1
      if (t[p] <= at) break
      t[i] = t[p]; f[i] = f[p]; i = p
    }
    t[i] = at; f[i] = fn
  }
  peek() { return this.t[0] }
  pop() {
    const t = this.t, f = this.f
    const fn = f[0]
    const lt = t.pop(), lf = f.pop()
    const n = t.length
    if (n > 0) {
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        if (l >= n) break
        const r = l + 1
        const c = r < n && t[r] < t[l] ? r : l
        if (t[c] >= lt) break
        t[i] = t[c]; f[i] = f[c]; i = c
      }
      t[i] = lt; f[i] = lf
    }
    return fn
  }
}

export default async function shard(o) {
  const { k, W, runId, proxy, domain } = o
  const T1 = o.t1Ms ?? 500
  const T2 = 4000
  const clockOff = nowUs() - Date.now() * 1000 // Date ms -> monotonic µs
  const us = (dateMs) => dateMs * 1000 + clockOff
  const winStartUs = us(o.times.winStart), winEndUs = us(o.times.winEnd)
  const inWin = (tsUs) => tsUs >= winStartUs && tsUs < winEndUs

  // ---------------------------------------------------------------- statistics
  const st = {}
  for (const m of METHODS) st[m] = { offered: 0, completed: 0, failed: 0, retrans: 0, delivered: 0, fail: {} }
  const kinds = {}
  const kind = (k2) => { kinds[k2] = (kinds[k2] ?? 0) + 1 }
  const lat = {}
  for (const m of METHODS) lat[m] = new Uint32Array(HIST_SIZE)
  const regRtt = new Uint32Array(HIST_SIZE)
  // Round trip of every client transaction counted in the window: first transmission -> final
  // response back at the sender, retransmissions included (a request that needed one shows it).
  const rtt = {}
  for (const m of METHODS) rtt[m] = new Uint32Array(HIST_SIZE)
  const prereg = { sent: 0, codes: {}, retrans: 0 }
  const registrarCodes = {}
  const unexpected = { parseErrors: 0, strayResponses: 0, requestsAtPhone: {}, requestsAtBackend: {} }
  const fail = (m, why) => { st[m].failed++; st[m].fail[why] = (st[m].fail[why] ?? 0) + 1 }

  const capture = []
  const capMax = o.captureMax ?? 0

  // ---------------------------------------------------------------- sockets
  const sockets = []
  const bind = (ip, port, onMsg) => new Promise((resolve, reject) => {
    const s = createSocket({ type: 'udp4', recvBufferSize: 8 << 20, sendBufferSize: 8 << 20 })
    s.on('error', reject)
    s.on('message', (buf, rinfo) => {
      if (capture.length < capMax) capture.push({ ts: Math.round((performance.timeOrigin + performance.now()) * 1000), src: rinfo.address, sport: rinfo.port, dst: ip, dport: port, data: Buffer.from(buf) })
      onMsg(buf, rinfo)
    })
    s.bind(port, ip, () => { s.removeListener('error', reject); s.on('error', () => {}); resolve(s) })
    sockets.push(s)
  })
  const sendTo = (sock, buf) => {
    if (capture.length < capMax) { const a = sock.address(); capture.push({ ts: Math.round((performance.timeOrigin + performance.now()) * 1000), src: a.address, sport: a.port, dst: proxy.host, dport: proxy.port, data: buf }) }
    sock.send(buf, proxy.port, proxy.host)
  }

  // ---------------------------------------------------------------- timers and client transactions
  const heap = new Heap()
  const at = (ms, fn) => heap.push(ms, fn)
  const txs = new Map() // branch|method -> tx
  let seq = 0
  const id = () => `${runId}-${k}-${(seq++).toString(36)}`

  /** Sends a request as a client transaction; `head`+r+`tail` rebuilds it for retransmissions. */
  function request(sock, method, branch, head, tail, windowed, onFinal, onProv) {
    const t0 = nowUs()
    const counted = windowed && inWin(t0)
    const tx = { sock, method, branch, head: head + t0 + ';r=', tail, r: 0, first: t0, counted, done: false, prov: false, interval: T1, onFinal, onProv }
    txs.set(branch + '|' + method, tx)
    if (counted) st[method].offered++
    sendTo(sock, Buffer.from(head + t0 + ';r=0' + tail, 'latin1'))
    const deadline = Date.now() + 64 * T1
    const retx = () => {
      if (tx.done || (method === 'INVITE' && tx.prov)) return
      if (Date.now() >= deadline) { txs.delete(branch + '|' + method); tx.done = true; if (tx.counted) fail(method, 'timeout'); onFinal?.(null); return }
      tx.r++
      if (tx.counted) st[method].retrans++
      else if (method === 'REGISTER') prereg.retrans++
      sendTo(sock, Buffer.from(tx.head + tx.r + tx.tail, 'latin1'))
      tx.interval = method === 'INVITE' ? tx.interval * 2 : Math.min(tx.interval * 2, T2)
      at(Date.now() + tx.interval, retx)
    }
    at(Date.now() + T1, retx)
    return tx
  }

  function finish(tx, res, expected) {
    tx.done = true
    txs.delete(tx.branch + '|' + tx.method)
    if (!tx.counted) return
    if (expected.includes(res.status)) st[tx.method].completed++
    else fail(tx.method, String(res.status))
  }

  function onResponse(res) {
    const branch = topBranch(res)
    const cs = cseq(res)
    const tx = txs.get(branch + '|' + cs.method)
    if (tx === undefined) {
      // 2xx retransmissions of an INVITE end up here after the transaction is done.
      if (cs.method === 'INVITE' && res.status >= 200 && res.status < 300) { const c = calls.get(get(res, 'call-id')); if (c !== undefined) { c.on2xx(res); return } }
      unexpected.strayResponses++
      return
    }
    if (res.status < 200) { tx.prov = true; tx.onProv?.(res); return }
    // INVITE: answered calls only (a cancelled call's 487 arrives after the ringing time).
    if (tx.counted && (tx.method !== 'INVITE' || res.status < 300)) rtt[tx.method][histIndex(nowUs() - tx.first)]++
    tx.onFinal(res)
  }

  // ---------------------------------------------------------------- phones
  const phoneIp = o.phoneSock.ip, phonePort = o.phoneSock.port
  const N = o.phones.total
  const myPhones = []
  for (let i = k; i < N; i += W) myPhones.push(i)
  const Nk = myPhones.length
  const regCseq = new Int32Array(Nk).fill(o.phase === 'prereg' ? 0 : 1000)
  const viaP = `SIP/2.0/UDP ${phoneIp}:${phonePort}`
  const contactOf = (i) => `sip:u${i}@${phoneIp}:${phonePort}`
  let phoneSock

  function register(j, windowed, onDone) {
    const i = myPhones[j]
    const br = `z9hG4bK-${id()}`
    const head = `REGISTER sip:${domain} SIP/2.0\r\nVia: ${viaP};branch=${br};rport\r\nMax-Forwards: 70\r\nFrom: <sip:u${i}@${domain}>;tag=r${i}\r\nTo: <sip:u${i}@${domain}>\r\nCall-ID: reg-${i}-${runId}@harness\r\nCSeq: ${++regCseq[j]} REGISTER\r\nContact: <${contactOf(i)}>\r\nExpires: ${o.phones.expires}\r\nUser-Agent: sipedge-harness\r\nX-Ts: `
    const tail = `\r\nContent-Length: 0\r\n\r\n`
    const tx = request(phoneSock, 'REGISTER', br, head, tail, windowed, (res) => {
      if (res === null) { if (!windowed) prereg.codes.timeout = (prereg.codes.timeout ?? 0) + 1; onDone?.(); return }
      registrarCodes[res.status] = (registrarCodes[res.status] ?? 0) + 1
      if (tx.counted) { const h = histIndex(nowUs() - tx.first); regRtt[h]++ }
      if (!windowed) prereg.codes[res.status] = (prereg.codes[res.status] ?? 0) + 1
      finish(tx, res, [200])
      onDone?.()
    })
    if (!windowed) prereg.sent++
  }

  const calls = new Map() // Call-ID -> phone-side call
  const callN = { a: 0, c: 0 }

  function startCall(flow) {
    const n = callN[flow]++
    const j = Math.floor(Math.random() * Nk)
    const i = myPhones[j]
    const callId = `c-${id()}@harness`
    const fromTag = `f${id()}`
    const br = `z9hG4bK-${id()}`
    const info = flow === 'a' && n % 2 === 0, refer = flow === 'a' && n % 6 === 0, dup = flow === 'a' && n % 3 !== 0
    const svc = `svc${n % 97}`
    const ruri = `sip:${svc}@${domain}`
    const from = `<sip:u${i}@${domain}>;tag=${fromTag}`
    const toBase = `<${ruri}>`
    const c = { flow, callId, from, toBase, to: toBase, ruri, route: [], target: ruri, cseq: 1, acked: false, ackBuf: null, i, windowed: false }
    calls.set(callId, c)
    const head = `INVITE ${ruri} SIP/2.0\r\nVia: ${viaP};branch=${br};rport\r\nMax-Forwards: 70\r\nFrom: ${from}\r\nTo: ${toBase}\r\nCall-ID: ${callId}\r\nCSeq: 1 INVITE\r\nContact: <${contactOf(i)}>\r\nAllow: INVITE, ACK, CANCEL, BYE, INFO, REFER, NOTIFY, OPTIONS\r\nX-Flow: ${flow};info=${+info};refer=${+refer};dup=${+dup}\r\nContent-Type: application/sdp\r\nX-Ts: `
    const tail = `\r\nContent-Length: ${SDP.length}\r\n\r\n${SDP}`
    const tx = request(phoneSock, 'INVITE', br, head, tail, true, (res) => {
      if (res === null) { calls.delete(callId); return }
      tx.done = true
      txs.delete(br + '|INVITE')
      if (res.status >= 200 && res.status < 300) {
        if (tx.counted) { if (flow === 'a') st.INVITE.completed++; else fail('INVITE', 'cancel-lost-race:200') }
        c.on2xx(res)
        if (flow === 'c') at(Date.now() + 10, () => inDialog(c, 'BYE', ''))
        return
      }
      if (tx.counted) { if (flow === 'c' && res.status === 487) st.INVITE.completed++; else fail('INVITE', String(res.status)) }
      // Non-2xx final: ACK hop by hop, same branch as the INVITE (RFC 3261 §17.1.1.3).
      const ack = `ACK ${ruri} SIP/2.0\r\nVia: ${viaP};branch=${br};rport\r\nMax-Forwards: 70\r\nFrom: ${from}\r\nTo: ${get(res, 'to')}\r\nCall-ID: ${callId}\r\nCSeq: 1 ACK\r\nX-Ts: ${nowUs()};r=0\r\nContent-Length: 0\r\n\r\n`
      if (tx.counted) { st.ACK.offered++; kind('ACK:non-2xx') }
      sendTo(phoneSock, Buffer.from(ack, 'latin1'))
      calls.delete(callId)
    }, (res) => {
      if (flow === 'c' && res.status === 180 && !c.cancelAt) {
        c.cancelAt = Date.now() + o.ringMs
        at(c.cancelAt, () => {
          if (!calls.has(callId)) return
          const cbr = br // CANCEL: same top Via as the INVITE (RFC 3261 §9.1)
          const chead = `CANCEL ${ruri} SIP/2.0\r\nVia: ${viaP};branch=${cbr};rport\r\nMax-Forwards: 70\r\nFrom: ${from}\r\nTo: ${toBase}\r\nCall-ID: ${callId}\r\nCSeq: 1 CANCEL\r\nX-Ts: `
          const ctx = request(phoneSock, 'CANCEL', cbr, chead, `\r\nContent-Length: 0\r\n\r\n`, true, (r2) => { if (r2 !== null) finish(ctx, r2, [200]) })
        })
      }
    })
    c.windowed = tx.counted
    c.on2xx = (res) => {
      if (!c.acked) {
        c.acked = true
        c.to = get(res, 'to')
        c.route = all(res, 'record-route').reverse()
        c.target = uriOf(get(res, 'contact')) ?? ruri
        c.routeHdr = c.route.map(r => `Route: ${r}\r\n`).join('')
        const ts = nowUs()
        if (inWin(ts)) { st.ACK.offered++; kind('ACK:2xx') }
        sendTo(phoneSock, ackFor(c, ts))
        if (c.flow === 'a') {
          const hold = o.holdMs
          if (info) at(Date.now() + hold * 0.3, () => inDialog(c, 'INFO', DTMF, 'Content-Type: application/dtmf-relay\r\n'))
          if (refer) at(Date.now() + hold * 0.6, () => inDialog(c, 'REFER', '', `Refer-To: <sip:transfer-target@${domain}>\r\nReferred-By: <sip:u${c.i}@${domain}>\r\nContact: <${contactOf(c.i)}>\r\n`))
          at(Date.now() + hold, () => inDialog(c, 'BYE', ''))
        }
      } else {
        // A 2xx retransmission: the UAC ACKs every one (RFC 3261 §13.2.2.4).
        const ts = nowUs()
        if (inWin(ts)) { st.ACK.offered++; kind('ACK:2xx-retransmission') }
        sendTo(phoneSock, ackFor(c, ts))
      }
    }
  }

  function ackFor(c, ts) {
    return Buffer.from(`ACK ${c.target} SIP/2.0\r\nVia: ${viaP};branch=z9hG4bK-${id()};rport\r\nMax-Forwards: 70\r\n${c.routeHdr}From: ${c.from}\r\nTo: ${c.to}\r\nCall-ID: ${c.callId}\r\nCSeq: 1 ACK\r\nX-Ts: ${ts};r=0\r\nContent-Length: 0\r\n\r\n`, 'latin1')
  }

  function inDialog(c, method, body, extra = '') {
    if (!calls.has(c.callId) || Date.now() >= o.times.drainEnd) return
    const br = `z9hG4bK-${id()}`
    const n = ++c.cseq
    const head = `${method} ${c.target} SIP/2.0\r\nVia: ${viaP};branch=${br};rport\r\nMax-Forwards: 70\r\n${c.routeHdr}From: ${c.from}\r\nTo: ${c.to}\r\nCall-ID: ${c.callId}\r\nCSeq: ${n} ${method}\r\n${extra}X-Ts: `
    const tail = `\r\nContent-Length: ${body.length}\r\n\r\n${body}`
    const tx = request(phoneSock, method, br, head, tail, true, (res) => {
      if (method === 'BYE') calls.delete(c.callId)
      if (res !== null) finish(tx, res, method === 'REFER' ? [202, 200] : [200])
    })
  }

  function onPhone(buf) {
    const msg = parse(buf)
    if (msg === null) { unexpected.parseErrors++; return }
    if (!msg.isReq) { onResponse(msg); return }
    const m = msg.method
    if (m === 'NOTIFY' || m === 'OPTIONS' || m === 'BYE' || m === 'INFO') {
      received(msg, m)
      sendTo(phoneSock, response(msg, 200, 'OK', { toTag: `p${(get(msg, 'call-id') ?? '').length}` }))
      return
    }
    if (m === 'ACK') return
    unexpected.requestsAtPhone[m] = (unexpected.requestsAtPhone[m] ?? 0) + 1
    sendTo(phoneSock, response(msg, 501, 'Not Implemented', { toTag: 'x' }))
  }

  /** A request arrived at its far end: latency (first transmissions only) and delivery. */
  function received(msg, m) {
    const x = get(msg, 'x-ts')
    if (x === undefined) return false
    const semi = x.indexOf(';')
    const ts = Number(semi < 0 ? x : x.slice(0, semi))
    if (!inWin(ts) || !x.endsWith('r=0')) return true
    const h = lat[m]
    if (h !== undefined) { h[histIndex(nowUs() - ts)]++; st[m].delivered++ }
    return true
  }

  // ---------------------------------------------------------------- backends (application servers)
  const bcalls = new Map()
  function onBackend(b, buf) {
    const msg = parse(buf)
    if (msg === null) { unexpected.parseErrors++; return }
    if (!msg.isReq) { onResponse(msg); return }
    const m = msg.method
    const callId = get(msg, 'call-id')
    const send = (resBuf) => sendTo(b.sock, resBuf)
    const contact = `sip:app${b.index}@${b.ip}:${b.port}`
    switch (m) {
      case 'INVITE': {
        let c = bcalls.get(callId)
        if (c !== undefined) { if (c.last) send(c.last); return } // retransmission
        const isFresh = received(msg, m)
        const x = get(msg, 'x-ts') ?? ''
        const ts = Number(x.split(';')[0])
        const flow = get(msg, 'x-flow') ?? 'a'
        const toTag = `b${id()}`
        c = { invite: msg, toTag, flow: flow[0], rr: all(msg, 'record-route'), contact: uriOf(get(msg, 'contact')), from: get(msg, 'from'), to: `${get(msg, 'to')};tag=${toTag}`, cseqOut: 0, windowed: isFresh && inWin(ts), last: null }
        bcalls.set(callId, c)
        c.last = response(msg, 180, 'Ringing', { toTag, rr: true, contact })
        send(c.last)
        if (c.flow === 'a') {
          const answer = () => {
            if (!bcalls.has(callId)) return
            c.last = response(msg, 200, 'OK', { toTag, rr: true, contact, extra: 'Content-Type: application/sdp\r\n', body: SDP })
            send(c.last)
            if (param(flow, 'dup') === '1') at(Date.now() + o.dupMs, () => { if (bcalls.has(callId)) send(c.last) })
          }
          if (o.answerMs > 0) at(Date.now() + o.answerMs, answer); else answer()
        }
        return
      }
      case 'CANCEL': {
        send(response(msg, 200, 'OK', { toTag: 'cx' }))
        const c = bcalls.get(callId)
        if (c === undefined || c.sent487) return
        // The proxy's CANCEL carries no X-Ts; it is attributed to the phone's CANCEL (latency n/a).
        c.sent487 = true
        c.last = response(c.invite, 487, 'Request Terminated', { toTag: c.toTag })
        send(c.last)
        return
      }
      case 'ACK': {
        if (received(msg, m)) return // end-to-end ACK for a 2xx (carries the phone's X-Ts)
        const c = bcalls.get(callId)
        if (c !== undefined && c.sent487) {
          // The proxy's own hop-by-hop ACK for the 487: attributed to the phone's ACK.
          if (c.windowed) { st.ACK.delivered++; kind('ACK:hop-by-hop-at-backend') }
          bcalls.delete(callId)
        }
        return
      }
      case 'BYE':
        received(msg, m)
        send(response(msg, 200, 'OK'))
        bcalls.delete(callId)
        return
      case 'INFO':
        received(msg, m)
        send(response(msg, 200, 'OK'))
        return
      case 'REFER': {
        received(msg, m)
        send(response(msg, 202, 'Accepted', { contact }))
        const c = bcalls.get(callId)
        if (c !== undefined) at(Date.now() + 5, () => referNotify(b, c, callId))
        return
      }
      case 'OPTIONS':
        send(response(msg, 200, 'OK', { toTag: 'opt', extra: 'Allow: INVITE, ACK, CANCEL, BYE, INFO, REFER, NOTIFY, OPTIONS\r\n' }))
        return
      default:
        unexpected.requestsAtBackend[m] = (unexpected.requestsAtBackend[m] ?? 0) + 1
        send(response(msg, 200, 'OK'))
    }
  }

  function referNotify(b, c, callId) {
    if (!bcalls.has(callId) || Date.now() >= o.times.drainEnd) return
    const br = `z9hG4bK-${id()}`
    const route = c.rr.map(r => `Route: ${r}\r\n`).join('') // UAS route set: Record-Route in order
    const head = `NOTIFY ${c.contact} SIP/2.0\r\nVia: SIP/2.0/UDP ${b.ip}:${b.port};branch=${br};rport\r\nMax-Forwards: 70\r\n${route}From: ${c.to}\r\nTo: ${c.from}\r\nCall-ID: ${callId}\r\nCSeq: ${++c.cseqOut} NOTIFY\r\nContact: <sip:app${b.index}@${b.ip}:${b.port}>\r\nEvent: refer\r\nSubscription-State: terminated;reason=noresource\r\nContent-Type: message/sipfrag\r\nX-Ts: `
    const tx = request(b.sock, 'NOTIFY', br, head, `\r\nContent-Length: ${SIPFRAG.length}\r\n\r\n${SIPFRAG}`, true, (res) => { if (res !== null) finish(tx, res, [200]) })
    if (tx.counted) kind('NOTIFY:in-dialog-after-REFER')
  }

  let notifyN = 0
  function appNotify() {
    const b = o.backends[notifyN++ % o.backends.length]
    const i = Math.floor(Math.random() * N)
    const br = `z9hG4bK-${id()}`
    const head = `NOTIFY sip:u${i}@${domain} SIP/2.0\r\nVia: SIP/2.0/UDP ${b.ip}:${b.port};branch=${br};rport\r\nMax-Forwards: 70\r\nFrom: <sip:voicemail@${domain}>;tag=n${id()}\r\nTo: <sip:u${i}@${domain}>\r\nCall-ID: n-${id()}@harness\r\nCSeq: 1 NOTIFY\r\nContact: <sip:app${b.index}@${b.ip}:${b.port}>\r\nEvent: message-summary\r\nSubscription-State: active\r\nContent-Type: application/simple-message-summary\r\nX-Ts: `
    const tx = request(b.sock, 'NOTIFY', br, head, `\r\nContent-Length: ${MWI.length}\r\n\r\n${MWI}`, true, (res) => { if (res !== null) finish(tx, res, [200]) })
    if (tx.counted) kind('NOTIFY:out-of-dialog-via-lookup')
  }

  // ---------------------------------------------------------------- run
  phoneSock = await bind(phoneIp, phonePort, onPhone)
  if (o.phase === 'prereg') {
    // Closed loop with a bounded number in flight, so the node's own speed sets the pace and no
    // backlog spills into the measurement; bounded by o.deadline.
    const inflightMax = o.preregWindow ?? 64
    let next = 0, inflight = 0, doneN = 0
    await new Promise(resolve => {
      const pump = () => {
        while (inflight < inflightMax && next < Nk) { inflight++; register(next++, false, () => { inflight--; doneN++ }) }
      }
      const tick = () => {
        const now = Date.now()
        let guard = 100000
        while (heap.size > 0 && heap.peek() <= now && guard-- > 0) heap.pop()()
        pump()
        if (doneN >= Nk || now >= o.deadline) { resolve(); return }
        setTimeout(tick, 2)
      }
      tick()
    })
    for (const sck of sockets) try { sck.close() } catch { /* closed */ }
    return { k, prereg: { ...prereg, done: doneN, phones: Nk }, capture }
  }
  for (const b of o.backends) b.sock = await bind(b.ip, b.port, (buf) => onBackend(b, buf))

  const eld = monitorEventLoopDelay({ resolution: 5 })
  const { t0, winStart, winEnd, drainEnd } = o.times
  const hardEnd = drainEnd + 2000
  const rates = {
    answered: o.rates.answered / W,
    cancelled: o.rates.cancelled / W,
    notify: o.backends.length > 0 ? o.rates.notify * o.backends.length / o.backendCount : 0,
    register: Nk / o.phones.refreshS,
  }
  const loadMs = winEnd - t0
  const max = {}
  for (const [key, r] of Object.entries(rates)) max[key] = Math.ceil(r * loadMs / 1000) + 1
  const done = { answered: 0, cancelled: 0, notify: 0, register: 0 }
  const planned = { answered: 0, cancelled: 0, notify: 0, register: 0 }
  let eldOn = false

  await new Promise(resolve => {
    const tick = () => {
      const now = Date.now()
      // timers
      let guard = 100000
      while (heap.size > 0 && heap.peek() <= now && guard-- > 0) heap.pop()()
      if (now >= hardEnd || (now >= drainEnd)) { resolve(); return }
      if (now >= t0 && now < winEnd) {
        if (!eldOn && now >= winStart) { eld.enable(); eldOn = true }
        const el = now - t0
        for (const key of ['answered', 'cancelled', 'notify', 'register']) {
          const due = Math.min(max[key], Math.floor(el * rates[key] / 1000))
          let n = due - done[key]
          if (n > 500) n = 500 // bounded burst per tick; a lagging generator shows as achieved < planned
          for (let q = 0; q < n; q++) {
            if (key === 'answered') startCall('a')
            else if (key === 'cancelled') startCall('c')
            else if (key === 'notify') appNotify()
            else register(done.register % Nk, true)
            done[key]++
          }
        }
        if (now >= winStart) for (const key of Object.keys(planned)) planned[key] = rates[key] * (Math.min(now, winEnd) - winStart) / 1000
      }
      if (now >= winEnd && eldOn) { eld.disable(); eldOn = false }
      setTimeout(tick, 2)
    }
    tick()
  })

  // Requests still waiting for a final response were not completed within the drain time.
  for (const tx of txs.values()) if (tx.counted && !tx.done) fail(tx.method, 'no-final-by-end-of-drain')
  for (const s of sockets) try { s.close() } catch { /* closed */ }
  return {
    k, st, kinds, registrarCodes, unexpected,
    lat: Object.fromEntries(Object.entries(lat).map(([m, h]) => [m, Array.from(h)])),
    regRtt: Array.from(regRtt),
    rtt: Object.fromEntries(Object.entries(rtt).map(([m, h]) => [m, Array.from(h)])),
    eventLoopDelayMs: { p99: eld.count > 0 ? eld.percentile(99) / 1e6 : null, max: eld.count > 0 ? eld.max / 1e6 : null },
    plannedFlows: planned,
    capture,
  }
}
