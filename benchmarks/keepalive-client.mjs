// The phones of the keep-alive benchmark (benchmarks/keepalive.mjs), one process: N bindings
// registered from behind "NAT" (Via and Contact 127.0.200.x, an unused loopback address) over
// one transport, then every keep-alive answered — TCP/TLS: a CRLF pong for each double-CRLF ping
// (RFC 5626 §4.4.1); WS: a pong frame for each ping frame; UDP: 200 OK for each OPTIONS.
// Started with fork(); reports { type: 'registered', n, ms } and, on { type: 'stats' }, its
// counters. Everything stays on 127.0.0.0/8.
import { connect as netConnect } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { createSocket } from 'node:dgram'
import { randomBytes } from 'node:crypto'

const o = JSON.parse(process.argv[2])
const { transport, n, port, host, localAddress, concurrency = 64, udpSockets = 200 } = o
const stats = { registered: 0, failed: 0, pings: 0, answered: 0, closed: 0 }
// Pings per second since the last report (the proof that they are spread, seen from the phones).
const perSecond = []
let secondPings = 0
const ping = () => { stats.pings++; secondPings++ }
setInterval(() => { perSecond.push(secondPings); secondPings = 0 }, 1000).unref()

const natHost = i => `127.0.200.${1 + (i % 250)}:${5062 + Math.floor(i / 250)}`
function register(i, proto) {
  const aor = `sip:ka${i}@example.com`
  const sentBy = natHost(i)
  return Buffer.from([
    'REGISTER sip:example.com SIP/2.0', `Via: SIP/2.0/${proto} ${sentBy};branch=z9hG4bK${randomBytes(6).toString('hex')}`,
    'Max-Forwards: 70', `From: <${aor}>;tag=k${i}`, `To: <${aor}>`, `Call-ID: ka-${i}-${randomBytes(4).toString('hex')}@bench`, 'CSeq: 1 REGISTER',
    `Contact: <sip:ka${i}@${sentBy}${proto === 'UDP' ? '' : `;transport=${proto.toLowerCase()}`}>`, 'Expires: 3600', 'Content-Length: 0', '', ''].join('\r\n'), 'latin1')
}

// ------------------------------------------------------------------------------ streams
const CRLF = Buffer.from('\r\n')
function openStream(i) {
  return new Promise(resolve => {
    const tls = transport === 'tls'
    const s = tls
      ? tlsConnect({ port, host, localAddress, rejectUnauthorized: false })
      : netConnect({ port, host, localAddress })
    let done = false
    const finish = ok => { if (done) return; done = true; if (ok) stats.registered++; else stats.failed++; resolve() }
    s.on('error', () => finish(false))
    s.on('close', () => { stats.closed++; finish(false) })
    s.once(tls ? 'secureConnect' : 'connect', () => {
      if (transport === 'ws') wsHandshake(s, i, finish)
      else s.write(register(i, transport.toUpperCase()))
    })
    if (transport === 'ws') return
    let buf = ''
    s.on('data', c => {
      if (!done) {
        buf += c.toString('latin1')
        if (/^SIP\/2\.0 200/.test(buf) && buf.includes('\r\n\r\n')) { buf = ''; finish(true) }
        return
      }
      // RFC 5626 §4.4.1: a double-CRLF ping gets a single-CRLF pong.
      if (c.length === 4 && c[0] === 13 && c[1] === 10 && c[2] === 13 && c[3] === 10) { ping(); s.write(CRLF); stats.answered++ }
    })
  })
}

function wsFrame(op, payload) {
  const mask = randomBytes(4)
  const len = payload.length
  const head = len < 126 ? Buffer.from([0x80 | op, 0x80 | len]) : Buffer.from([0x80 | op, 0x80 | 126, len >> 8, len & 255])
  const body = Buffer.alloc(len)
  for (let k = 0; k < len; k++) body[k] = payload[k] ^ mask[k & 3]
  return Buffer.concat([head, mask, body])
}

function wsHandshake(s, i, finish) {
  const key = randomBytes(16).toString('base64')
  s.write(`GET / HTTP/1.1\r\nHost: ${host}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: sip\r\n\r\n`)
  let buf = Buffer.alloc(0)
  let upgraded = false
  s.on('data', c => {
    buf = buf.length === 0 ? c : Buffer.concat([buf, c])
    if (!upgraded) {
      const end = buf.indexOf('\r\n\r\n')
      if (end < 0) return
      upgraded = true
      buf = buf.subarray(end + 4)
      s.write(wsFrame(1, register(i, 'WS')))
    }
    while (buf.length >= 2) {
      const op = buf[0] & 0x0f
      let len = buf[1] & 0x7f
      let off = 2
      if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4 }
      if (buf.length < off + len) return
      const payload = buf.subarray(off, off + len)
      buf = buf.subarray(off + len)
      if (op === 9) { ping(); s.write(wsFrame(10, payload)); stats.answered++ }
      else if (op === 1 || op === 2) { if (/^SIP\/2\.0 200/.test(payload.toString('latin1'))) finish(true) }
    }
  })
}

async function streams() {
  let next = 0
  const t0 = Date.now()
  const worker = async () => { while (next < n) await openStream(next++) }
  await Promise.all(Array.from({ length: concurrency }, worker))
  process.send({ type: 'registered', n: stats.registered, failed: stats.failed, ms: Date.now() - t0 })
}

// ------------------------------------------------------------------------------ UDP
async function udp() {
  const socks = []
  const pending = new Map()
  const t0 = Date.now()
  for (let k = 0; k < udpSockets; k++) {
    const s = createSocket('udp4')
    await new Promise(r => s.bind(0, localAddress, r))
    s.on('message', m => {
      const text = m.toString('latin1')
      if (text.startsWith('SIP/2.0 200')) {
        const id = /Call-ID: ([^\r\n]+)/.exec(text)?.[1]
        const done = pending.get(id)
        if (done !== undefined) { pending.delete(id); done() }
        return
      }
      if (!text.startsWith('OPTIONS ')) return
      ping()
      const keep = text.split('\r\n').filter(l => /^(via|from|to|call-id|cseq):/i.test(l)).map(l => (/^to:/i.test(l) ? l + ';tag=ph' : l))
      s.send(Buffer.from(['SIP/2.0 200 OK', ...keep, 'Content-Length: 0', '', ''].join('\r\n'), 'latin1'), port, host)
      stats.answered++
    })
    socks.push(s)
  }
  let next = 0
  const one = i => new Promise(resolve => {
    const b = register(i, 'UDP')
    const id = /Call-ID: ([^\r\n]+)/.exec(b.toString('latin1'))[1]
    const s = socks[i % udpSockets]
    const timer = setInterval(() => s.send(b, port, host), 1000)
    pending.set(id, () => { clearInterval(timer); stats.registered++; resolve() })
    s.send(b, port, host)
  })
  const worker = async () => { while (next < n) await one(next++) }
  await Promise.all(Array.from({ length: concurrency }, worker))
  process.send({ type: 'registered', n: stats.registered, failed: stats.failed, ms: Date.now() - t0 })
}

process.on('message', m => {
  if (m.type === 'stats') { process.send({ type: 'stats', ...stats, cpu: process.cpuUsage(), perSecond: perSecond.slice() }); perSecond.length = 0 }
  if (m.type === 'exit') process.exit(0)
})
if (transport === 'udp') void udp()
else void streams()
