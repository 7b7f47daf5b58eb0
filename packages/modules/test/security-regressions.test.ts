// Regression tests named after the bugs they pin (issue "Safe on a public address" 1 and 2, and
// issue "Real phones" 1), on the core with every module and real message bytes.
import t from 'tap'
import { parseConfig, type FrozenConfig } from '@sipedge/config'
import type { Destination, Proxy } from '@sipedge/proxy'
import { proxyWith, quietLog } from './fixtures/proxy.js'
import type { DialogModule } from '../dist/index.js'

const config = parseConfig(`
workers: 1
listen: [udp:127.0.0.1:5060, tcp:127.0.0.1:5060]
domains: [example.com]
timers: { t1: 100ms, t2: 1s, t4: 1s }
dialog: { secret: "regression-secret-0123456789" }
routes:
  - { match: { method: REGISTER }, action: register }
  - { match: { domain: example.com }, action: { forward: "sip:127.0.0.8:5080" } }
`) as FrozenConfig

interface Sent { dest: Destination; text: string }
async function harness(t: Tap.Test): Promise<{ p: Proxy; sent: Sent[]; clock: { now: number } }> {
  const sent: Sent[] = []
  const clock = { now: 1000 }
  const p = await proxyWith({
    config, workerIndex: 0, workers: 1, manualTimers: true, now: () => clock.now, log: quietLog,
    send: (dest, data) => sent.push({ dest, text: Buffer.concat(Array.isArray(data) ? data : [data]).toString() }),
  })
  t.teardown(() => p.close(0))
  return { p, sent, clock }
}
declare namespace Tap { type Test = typeof t }

const UA = { transport: 'udp' as const, address: '127.0.0.7', port: 5062, socketId: 0, connId: 0, recvTime: 0 }
const APP = { transport: 'udp' as const, address: '127.0.0.8', port: 5080, socketId: 0, connId: 0, recvTime: 0 }
let n = 0
function req(method: string, ruri: string, o: { toTag?: string; route?: string; callId?: string; cseq?: number; from?: string } = {}): Buffer {
  return Buffer.from([
    `${method} ${ruri} SIP/2.0`,
    `Via: SIP/2.0/UDP 127.0.0.7:5062;branch=z9hG4bK-r${++n};rport`,
    'Max-Forwards: 70',
    ...(o.route !== undefined ? [`Route: ${o.route}`] : []),
    `From: <sip:${o.from ?? 'alice'}@example.com>;tag=ft`,
    `To: <sip:bob@example.com>${o.toTag !== undefined ? ';tag=' + o.toTag : ''}`,
    `Call-ID: ${o.callId ?? 'cid-' + n}`,
    `CSeq: ${o.cseq ?? 1} ${method}`,
    'Contact: <sip:alice@127.0.0.7:5062>',
    'Content-Length: 0', '', ''].join('\r\n'))
}
function answer(fwd: string, status: number): Buffer {
  const lines = fwd.split('\r\n')
  const keep = lines.filter(l => /^(Via|Record-Route|From|Call-ID|CSeq):/.test(l))
  const to = lines.find(l => l.startsWith('To:'))! + (status > 100 ? ';tag=tt' : '')
  return Buffer.from([`SIP/2.0 ${status} X`, ...keep, to, 'Contact: <sip:bob@127.0.0.8:5080>', 'Content-Length: 0', '', ''].join('\r\n'))
}

t.test('open-relay-forged-in-dialog: a To-tag and an unsigned Route naming us are never forwarded', async t => {
  const { p, sent } = await harness(t)
  for (const method of ['INVITE', 'BYE', 'MESSAGE', 'INFO']) {
    for (const route of ['<sip:127.0.0.1:5060;lr>', '<sip:127.0.0.1:5060;transport=tcp;lr>', '<sip:127.0.0.1:5060;lr;sed=AAAA.BBBBBBBBBBBBBBBB>']) {
      sent.length = 0
      p.receive(req(method, 'sip:victim@127.0.0.99:5099', { toTag: 'forged', route }), UA)
      t.equal(sent.filter(s => s.dest.address === '127.0.0.99').length, 0, `${method} ${route}: not relayed`)
      t.match(sent.at(-1)?.text ?? '', /^SIP\/2\.0 403 /, `${method} ${route}: 403`)
    }
  }
  sent.length = 0
  p.receive(req('ACK', 'sip:victim@127.0.0.99:5099', { toTag: 'forged', route: '<sip:127.0.0.1:5060;lr>' }), UA)
  t.equal(sent.length, 0, 'a forged ACK is dropped silently')
  t.ok(p.counters.moduleRefused >= 13)
})

t.test('a dialog this edge record-routed is still routed, with the signed Route from its Record-Route', async t => {
  const { p, sent } = await harness(t)
  p.receive(req('INVITE', 'sip:bob@example.com', { callId: 'ok-1' }), UA)
  const fwd = sent.find(s => s.text.startsWith('INVITE'))!
  const rr = /Record-Route: (<[^>]+>)/.exec(fwd.text)![1]!
  t.match(rr, /;sed=[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+>$/, 'every Record-Route we insert is signed')
  p.receive(answer(fwd.text, 200), APP)
  sent.length = 0
  p.receive(req('BYE', 'sip:bob@127.0.0.8:5080', { callId: 'ok-1', toTag: 'tt', route: rr, cseq: 2 }), UA)
  t.equal(sent.find(s => s.text.startsWith('BYE'))?.dest.address, '127.0.0.8', 'caller BYE forwarded')
  // The other direction: the callee's BYE towards the caller's Contact.
  sent.length = 0
  p.receive(Buffer.from(req('BYE', 'sip:alice@127.0.0.7:5062', { callId: 'ok-1', toTag: 'ft', route: rr, cseq: 1 }).toString()
    .replace('From: <sip:alice@example.com>;tag=ft', 'From: <sip:bob@example.com>;tag=tt').replace('Via: SIP/2.0/UDP 127.0.0.7:5062', 'Via: SIP/2.0/UDP 127.0.0.8:5080')), APP)
  t.equal(sent.find(s => s.text.startsWith('BYE'))?.dest.address, '127.0.0.7', 'callee BYE forwarded')
  // The same signed Route on another Call-ID is refused.
  sent.length = 0
  p.receive(req('INVITE', 'sip:victim@127.0.0.99:5099', { callId: 'other', toTag: 'tt', route: rr }), UA)
  t.match(sent.at(-1)!.text, /^SIP\/2\.0 403 Invalid Dialog Route/)
})

t.test('stray-response-relayed: a forged response whose top Via looks like ours is dropped', async t => {
  const { p, sent, clock } = await harness(t)
  const forged = (branch: string): Buffer => Buffer.from([
    'SIP/2.0 200 OK',
    `Via: SIP/2.0/UDP 127.0.0.1:5060;branch=${branch}`,
    'Via: SIP/2.0/UDP 127.0.0.99:5099;branch=z9hG4bK-victim',
    'From: <sip:a@example.com>;tag=1', 'To: <sip:b@example.com>;tag=2', 'Call-ID: stray-1', 'CSeq: 1 INVITE',
    'Content-Length: 0', '', ''].join('\r\n'))
  p.receive(forged('z9hG4bKsE00000000.abc'), UA)
  p.receive(forged('z9hG4bKsE00000000.abc.AAAAAAAA'), UA)
  t.equal(sent.length, 0, 'nothing relayed to the second Via')
  t.equal(p.counters.strayForged, 2)

  // A genuine 2xx retransmission after the transaction is gone is still relayed (RFC 6026).
  p.receive(req('INVITE', 'sip:bob@example.com', { callId: 'late-1' }), UA)
  const fwd = sent.find(s => s.text.startsWith('INVITE'))!
  p.receive(answer(fwd.text, 200), APP)
  for (let i = 0; i < 400; i++) { clock.now += 100; p.layer.tick() } // 40 s: Timer M and friends end the transactions
  sent.length = 0
  p.receive(answer(fwd.text, 200), APP)
  const relayed = sent.find(s => s.text.startsWith('SIP/2.0 200'))
  t.equal(relayed?.dest.address, '127.0.0.7', 'a late 2xx for our signed branch goes to the caller')
  t.equal(relayed?.dest.port, 5062)
})

t.test('outbound-proxy-register: a REGISTER with a preloaded Route naming us reaches the registrar', async t => {
  const { p, sent } = await harness(t)
  p.receive(req('REGISTER', 'sip:example.com', { route: '<sip:127.0.0.1:5060;lr>' }), UA)
  // The registrar answers once the store has written (bounded wait on the answer, not a sleep).
  for (let i = 0; i < 200 && !sent.some(s => s.text.startsWith('SIP/2.0 2') || s.text.startsWith('SIP/2.0 4')); i++) await new Promise(r => setTimeout(r, 10))
  const last = sent.find(s => !s.text.startsWith('SIP/2.0 100'))!.text
  t.match(last, /^SIP\/2\.0 200 OK/, 'registered (not 403 No Route)')
  t.match(last, /Contact: <sip:alice@127\.0\.0\.7:5062>;expires=/)
})

t.test('dialogs-active-zero-for-lookup-calls: dialogs that were not dispatched are tracked and counted', async t => {
  const { p, sent } = await harness(t)
  const d = p.module<DialogModule>('dialog')!
  p.receive(req('INVITE', 'sip:bob@example.com', { callId: 'nd-1' }), UA)
  const fwd = sent.find(s => s.text.startsWith('INVITE'))!
  p.receive(answer(fwd.text, 200), APP)
  t.equal(d.undispatched, 1, 'an established call routed by a forward/lookup rule counts')
  t.equal((p.query('dialogs', null) as { total: number }).total, 1, '/api/dialogs sees it')
  const rr = /Record-Route: (<[^>]+>)/.exec(fwd.text)![1]!
  p.receive(req('BYE', 'sip:bob@127.0.0.8:5080', { callId: 'nd-1', toTag: 'tt', route: rr, cseq: 2 }), UA)
  t.equal(d.undispatched, 0, 'BYE ends it')
})

t.test('lazy-lower-via: a bad lower Via read by loop detection is answered 400 through the server transaction', async t => {
  const { p, sent } = await harness(t)
  const text = req('INVITE', 'sip:bob@example.com', { callId: 'lv-1' }).toString()
    .replace('Max-Forwards: 70', 'Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsE00000000.x\r\nVia: SIP/2.0/UDP bad host;;branch=\r\nMax-Forwards: 70')
  p.receive(Buffer.from(text), UA)
  const finals = sent.filter(s => /^SIP\/2\.0 [2-6]/.test(s.text))
  t.equal(finals.length, 1, 'one final answer')
  t.match(finals[0]!.text, /^SIP\/2\.0 400 /)
  t.equal(p.pending, 0, 'nothing left in flight')
})

t.test('reflection-407-retransmitted: a challenge is sent once, statelessly, and keeps no transaction', async t => {
  const dir = t.testdir({ 'users.json': JSON.stringify({ users: { alice: 'secret01' } }) })
  const cfg = parseConfig(`
workers: 1
listen: [udp:127.0.0.1:5060]
domains: [example.com]
timers: { t1: 100ms, t2: 1s, t4: 1s }
auth: { domains: { example.com: { users_file: ${dir}/users.json, methods: [REGISTER, INVITE, MESSAGE] } } }
routes:
  - { match: { domain: example.com }, action: { forward: "sip:127.0.0.8:5080" } }
`) as FrozenConfig
  const sent: Sent[] = []
  const clock = { now: 1000 }
  const p = await proxyWith({
    config: cfg, workerIndex: 0, workers: 1, manualTimers: true, now: () => clock.now, log: quietLog,
    send: (dest, data) => sent.push({ dest, text: Buffer.concat(Array.isArray(data) ? data : [data]).toString() }),
  })
  t.teardown(() => p.close(0))
  const invite = req('INVITE', 'sip:bob@example.com', { callId: 'refl-1' })
  p.receive(invite, UA)
  t.equal(sent.length, 1, 'one answer')
  t.match(sent[0]!.text, /^SIP\/2\.0 407 /)
  t.equal(p.layer.stats().active.total, 0, 'no transaction kept for an unauthenticated request')
  for (let i = 0; i < 400; i++) { clock.now += 100; p.layer.tick() }
  t.equal(sent.length, 1, 'never retransmitted (Timer G/H need a transaction)')
  t.ok(Buffer.byteLength(sent[0]!.text) <= 3 * invite.length, 'at most 3x the request bytes')
})
