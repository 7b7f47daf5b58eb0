// Regression tests named after the bugs of issue "Safe on a public address" (worker side: items
// 5, 6 and 8), on the core with every module, real message bytes and an injected clock.
import t from 'tap'
import { parseConfig, type FrozenConfig } from '@sipedge/config'
import type { Destination, Proxy, ProxyOptions } from '@sipedge/proxy'
import { proxyWith, quietLog } from './fixtures/proxy.js'

declare namespace Tap { type Test = typeof t }
interface Sent { dest: Destination; bytes: number; text: string }

async function harness(t: Tap.Test, yaml: string, extra: Partial<ProxyOptions> = {}): Promise<{ p: Proxy; sent: Sent[]; clock: { now: number }; run(ms: number): void }> {
  const sent: Sent[] = []
  const clock = { now: 1000 }
  const p = await proxyWith({
    config: parseConfig(yaml) as FrozenConfig, workerIndex: 0, workers: 1, manualTimers: true, now: () => clock.now, log: quietLog,
    send: (dest, data) => {
      const b = Buffer.concat(Array.isArray(data) ? data : [data])
      sent.push({ dest, bytes: b.length, text: b.toString('latin1') })
    },
    ...extra,
  })
  t.teardown(() => p.close(0))
  const run = (ms: number): void => { for (let left = ms; left > 0; left -= 50) { clock.now += 50; p.layer.tick() } }
  return { p, sent, clock, run }
}

const UA = { transport: 'udp' as const, address: '127.0.0.7', port: 5062, socketId: 0, connId: 0, recvTime: 0 }
let n = 0
function req(method: string, ruri: string, o: { branch?: string; callId?: string; from?: string; via?: string; headers?: string[] } = {}): Buffer {
  return Buffer.from([
    `${method} ${ruri} SIP/2.0`,
    `Via: ${o.via ?? 'SIP/2.0/UDP 127.0.0.7:5062'};branch=${o.branch ?? 'z9hG4bK-p' + ++n};rport`,
    'Max-Forwards: 70',
    `From: <sip:${o.from ?? 'alice'}@example.com>;tag=ft${n}`,
    'To: <sip:bob@example.com>',
    `Call-ID: ${o.callId ?? 'pa-' + n}`,
    `CSeq: 1 ${method}`,
    'Contact: <sip:alice@127.0.0.7:5062>',
    ...(o.headers ?? []),
    'Content-Length: 0', '', ''].join('\r\n'))
}
const toUa = (s: Sent): boolean => s.dest.address === UA.address && s.dest.port === UA.port

// ------------------------------------------------------------------------------ item 6

const NO_ROUTE = `
workers: 1
listen: [udp:127.0.0.1:5060, tcp:127.0.0.1:5060]
domains: [example.com]
timers: { t1: 100ms, t2: 1s, t4: 1s }
dispatcher: { sets: { apps: { probe: false, destinations: ["sip:127.0.0.8:5080"] } } }
routes:
  - { match: { domain: example.com }, action: { forward: "sip:127.0.0.8:5080" } }
`

t.test('reflection-403-retransmitted: a local 403 to an unproven UDP source costs at most 3x the request bytes', async t => {
  const { p, sent, run } = await harness(t, NO_ROUTE)
  const invite = req('INVITE', 'sip:victim@elsewhere.example.net')
  p.receive(invite, UA)
  t.match(sent.find(s => / 403 /.test(s.text.split('\r\n')[0]!))?.text ?? '', /^SIP\/2\.0 403 No Route For Request/)
  run(64 * 100 + 500) // past Timer H (64*T1)
  const out = sent.filter(toUa).reduce((a, s) => a + s.bytes, 0)
  t.ok(out <= 3 * invite.length, `response bytes ${out} <= 3 x ${invite.length}`)
  t.ok(sent.filter(s => / 403 /.test(s.text.split('\r\n')[0]!)).length >= 2, 'retransmitted while the allowance lasts')
  t.ok(p.layer.stats().withheldResponses > 0, 'the rest withheld and counted')
  t.equal(p.layer.stats().active.total, 0, 'Timer H still ends the transaction')
})

t.test('reflection cap: a real client that lost the 403 gets it again for each retransmission', async t => {
  const { p, sent, run } = await harness(t, NO_ROUTE)
  const invite = req('INVITE', 'sip:victim@elsewhere.example.net', { branch: 'z9hG4bK-lossy' })
  p.receive(invite, UA)
  run(64 * 100 + 500 - 2000)
  const before = sent.filter(s => / 403 /.test(s.text.split('\r\n')[0]!)).length
  for (let i = 0; i < 3; i++) p.receive(Buffer.from(invite), UA) // Timer A retransmissions of a UAC that saw nothing
  const after = sent.filter(s => / 403 /.test(s.text.split('\r\n')[0]!)).length
  t.equal(after, before + 3, 'each request retransmission is answered (§17.2.1 Completed)')
  const out = sent.filter(toUa).reduce((a, s) => a + s.bytes, 0)
  t.ok(out <= 3 * 4 * invite.length, 'and the total stays within 3x of all request bytes')
})

t.test('reflection cap: other local finals (483), and only over UDP', async t => {
  const { p, sent, run } = await harness(t, NO_ROUTE)
  const mf0 = Buffer.from(req('INVITE', 'sip:bob@example.com').toString().replace('Max-Forwards: 70', 'Max-Forwards: 0'))
  p.receive(mf0, UA)
  run(64 * 100 + 500)
  const out = sent.filter(toUa).reduce((a, s) => a + s.bytes, 0)
  t.match(sent.at(-1)!.text, /^SIP\/2\.0 483 /)
  t.ok(out <= 3 * mf0.length, `483: ${out} <= 3 x ${mf0.length}`)
  // TCP: reliable, no Timer G at all: one final, no cap needed.
  sent.length = 0
  p.receive(req('INVITE', 'sip:victim@elsewhere.example.net', { via: 'SIP/2.0/TCP 127.0.0.7:5062' }), { ...UA, transport: 'tcp', connId: 3, socketId: 1 })
  run(64 * 100 + 500)
  t.equal(sent.filter(s => / 403 /.test(s.text.split('\r\n')[0]!)).length, 1, 'TCP: one 403')
})

t.test('reflection cap: a source the auth module trusts (a dispatcher destination) keeps RFC 3261 retransmissions', async t => {
  const dir = t.testdir({ 'users.json': JSON.stringify({ users: { alice: 'secret01' } }) })
  const { p, sent, run } = await harness(t, NO_ROUTE + `auth: { domains: { example.com: { users_file: ${dir}/users.json, methods: [REGISTER] } } }\n`)
  const APP = { ...UA, address: '127.0.0.8', port: 5080 }
  const invite = req('INVITE', 'sip:victim@elsewhere.example.net', { via: 'SIP/2.0/UDP 127.0.0.8:5080' })
  p.receive(invite, APP)
  run(64 * 100 + 500)
  const n403 = sent.filter(s => / 403 /.test(s.text.split('\r\n')[0]!)).length
  t.ok(n403 >= 8, `Timer G ran its course (${n403} copies)`)
  t.equal(p.layer.stats().withheldResponses, 0)
})
