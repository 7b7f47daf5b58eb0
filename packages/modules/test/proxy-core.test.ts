// Unit tests of the proxy core on real message bytes, with an injected send and clock.
import t from 'tap'
import { parseConfig, type FrozenConfig } from '@sipedge/config'
import { parseMessage, callIdHashOf } from '@sipedge/sip'
import {
  compileRoutes, PrefixTrie, loopHash, isLoop, LocalIdentity, BRANCH_MARK, betterFinal, Resolver,
  type Destination, type Proxy,
} from '@sipedge/proxy'
import { Dispatcher, type DialogModule } from '../dist/index.js'
import { proxyWith } from './fixtures/proxy.js'

const YAML = `
workers: 1
listen: [udp:127.0.0.1:5060, tcp:127.0.0.1:5060]
domains: [example.com]
timers: { t1: 100ms, t2: 1s, t4: 1s }
dispatcher:
  sets:
    apps:
      probe: false
      destinations: [sip:10.0.0.1:5070, "sip:10.0.0.2:5070;transport=tcp"]
routes:
  - name: reg
    match: { method: REGISTER }
    action: register
  - name: blocked
    match: { user_prefix: ["+49900", "0900"] }
    action: { reject: { code: 403, reason: Premium Blocked } }
  - name: hdr
    match: { header: { name: X-Tenant, regex: "^blue$" } }
    action: { forward: "sip:10.9.9.9:5080;transport=tcp" }
  - name: net
    match: { source_net: 192.168.0.0/16, method: MESSAGE }
    action: { reject: 488 }
  - name: from-apps
    match: { source: apps }
    action: { forward: "sip:10.1.1.1" }
  - name: all
    match: {}
    action: { dispatch: apps }
`
const config = parseConfig(YAML) as FrozenConfig
const SRC = { transport: 'udp' as const, address: '192.0.2.7', port: 5062, socketId: 0, recvTime: 0 }

function invite(o: { uri?: string; mf?: string | null; route?: string; via2?: string; toTag?: string; method?: string; extra?: string } = {}): Buffer {
  const m = o.method ?? 'INVITE'
  const lines = [
    `${m} ${o.uri ?? 'sip:bob@example.com'} SIP/2.0`,
    ...(o.via2 !== undefined ? [`Via: ${o.via2}`] : []),
    'Via: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK-abc;rport',
    ...(o.mf === null ? [] : [`Max-Forwards: ${o.mf ?? '70'}`]),
    ...(o.route !== undefined ? [`Route: ${o.route}`] : []),
    'From: <sip:alice@example.com>;tag=ft1',
    `To: <sip:bob@example.com>${o.toTag !== undefined ? ';tag=' + o.toTag : ''}`,
    'Call-ID: call-1@test',
    `CSeq: 1 ${m}`,
    ...(o.extra !== undefined ? [o.extra] : []),
    'Content-Length: 0', '', '']
  return Buffer.from(lines.join('\r\n'))
}

async function harness(t: Tap.Test): Promise<{ p: Proxy; sent: Array<{ dest: Destination; text: string }>; clock: { now: number } }> {
  const sent: Array<{ dest: Destination; text: string }> = []
  const clock = { now: 1000 }
  const p = await proxyWith({
    config, workerIndex: 0, workers: 1, manualTimers: true,
    send: (dest, data) => sent.push({ dest, text: Buffer.concat(Array.isArray(data) ? data : [data]).toString() }),
    now: () => clock.now, log: { debug() {}, info() {}, warn() {}, error() {} },
  })
  t.teardown(() => p.layer.close())
  return { p, sent, clock }
}
declare namespace Tap { type Test = typeof t }

const status = (s: string): number => Number(/^SIP\/2\.0 (\d{3})/.exec(s)?.[1] ?? 0)

t.test('routing: compiled once, first match wins, every condition kind', async t => {
  const d = new Dispatcher(config, { workerIndex: 0, workers: 1, now: () => 0, resolver: new Resolver() })
  const table = compileRoutes(config, d)
  const match = (buf: Buffer, src = SRC): string | undefined => {
    const m = parseMessage(buf)
    return table.match(m, m.requestUri, src)?.label
  }
  t.equal(match(invite({ method: 'REGISTER' })), 'reg')
  t.equal(match(invite({ uri: 'sip:+4990012@example.com' })), 'blocked')
  t.equal(match(invite({ uri: 'sip:+4930@example.com' })), 'all')
  t.equal(match(invite({ extra: 'X-Tenant: blue' })), 'hdr')
  t.equal(match(invite({ extra: 'X-Tenant: blue2' })), 'all')
  t.equal(match(invite({ method: 'MESSAGE' }), { ...SRC, address: '192.168.4.4' }), 'net')
  t.equal(match(invite(), { ...SRC, address: '10.0.0.1', port: 5070 }), 'from-apps', 'UDP destination matched by ip:port')
  t.equal(match(invite(), { ...SRC, address: '10.0.0.2', port: 40000, transport: 'tcp' }), 'from-apps', 'TCP destination matched by ip')
  t.equal(match(invite(), { ...SRC, address: '10.0.0.1', port: 40000 }), 'all', 'UDP destination, other port')
  d.close()
})

t.test('prefix trie: longest prefix', async t => {
  const trie = new PrefixTrie()
  for (const p of ['+49', '+4930', '0']) trie.add(p)
  t.equal(trie.longest('+493012'), 5)
  t.equal(trie.longest('+4989'), 3)
  t.equal(trie.longest('089'), 1)
  t.equal(trie.longest('1'), -1)
})

t.test('loop vs spiral: the branch hash', async t => {
  const local = new LocalIdentity(config)
  const a = parseMessage(invite())
  const h = loopHash(a, a.uri, 0)
  t.match(h, /^[0-9a-f]{8}$/)
  const ourVia = `SIP/2.0/UDP 127.0.0.1:5060;branch=${BRANCH_MARK}${h}.x1`
  const looped = parseMessage(invite({ via2: ourVia }))
  t.equal(loopHash(looped, looped.uri, 0), h, 'same fields, same hash (Max-Forwards and Vias not hashed)')
  t.ok(isLoop(looped, h, local), 'identical request back: loop')
  const spiral = parseMessage(invite({ via2: ourVia, uri: 'sip:bob@other.example' }))
  const h2 = loopHash(spiral, spiral.uri, 0)
  t.not(h2, h)
  t.notOk(isLoop(spiral, h2, local), 'new Request-URI: spiral')
  const foreign = parseMessage(invite({ via2: `SIP/2.0/UDP 10.5.5.5:5060;branch=${BRANCH_MARK}${h}.x1` }))
  t.notOk(isLoop(foreign, h, local), 'same hash from another sipedge node is no loop')
})

t.test('best response selection (§16.7 step 6)', async t => {
  t.ok(betterFinal(486, 0))
  t.ok(betterFinal(603, 486), '6xx beats')
  t.notOk(betterFinal(486, 603))
  t.ok(betterFinal(486, 503), 'lower class wins')
  t.notOk(betterFinal(480, 486), 'first of a class kept')
})

t.test('Max-Forwards: 0 -> 483 with one To-tag; OPTIONS 0 answered locally; absent -> 70', async t => {
  const { p, sent } = await harness(t)
  p.receive(invite({ mf: '0' }), SRC)
  const finals = sent.filter(s => status(s.text) === 483)
  t.equal(finals.length, 1)
  const tag = /To: [^\r]*;tag=([^\r;]+)/.exec(finals[0]!.text)?.[1]
  t.ok(tag, 'To-tag added')
  sent.length = 0
  p.receive(invite({ mf: '0' }), SRC) // retransmission: the same response, same tag
  t.equal(sent.length, 1)
  t.match(sent[0]!.text, `;tag=${tag}`)
  sent.length = 0
  p.receive(Buffer.from(invite({ mf: '0', method: 'OPTIONS' }).toString().replace('branch=z9hG4bK-abc', 'branch=z9hG4bK-o2')), SRC)
  t.equal(status(sent[0]!.text), 200)
  t.match(sent[0]!.text, /Allow: INVITE/)
  t.match(sent[0]!.text, /Supported:/)
  sent.length = 0
  p.receive(Buffer.from(invite({ mf: null }).toString().replace('branch=z9hG4bK-abc', 'branch=z9hG4bK-n1')), SRC)
  const fwd = sent.find(s => s.text.startsWith('INVITE'))!
  t.match(fwd.text, /Max-Forwards: 70\r\n/)
})

t.test('forwarding: Via with loop branch, received/rport, Record-Route, Max-Forwards decremented', async t => {
  const { p, sent } = await harness(t)
  p.receive(invite(), SRC)
  t.equal(status(sent[0]!.text), 100, '100 Trying first')
  const fwd = sent.find(s => s.text.startsWith('INVITE'))!
  t.ok(fwd, 'forwarded')
  const h = (callIdHashOf('call-1@test') % 2)
  t.equal(fwd.dest.address, h === 0 ? '10.0.0.1' : '10.0.0.2')
  // our Record-Route above the Vias, our Via right above the caller's (one block of Vias)
  t.match(fwd.text, new RegExp(`^INVITE sip:bob@example.com SIP/2.0\r\nRecord-Route: [^\r]*\r\n(Record-Route: [^\r]*\r\n)?Via: SIP/2.0/${h === 0 ? 'UDP' : 'TCP'} 127.0.0.1:5060;branch=${BRANCH_MARK}[0-9a-f]{8}\\.[^\r]*\r\nVia: SIP/2.0/UDP 192.0.2.7:5062;`))
  t.match(fwd.text, /Via: SIP\/2.0\/UDP 192.0.2.7:5062;branch=z9hG4bK-abc;rport=5062;received=192.0.2.7/)
  t.match(fwd.text, /Max-Forwards: 69/)
  if (h === 0) t.match(fwd.text, /Record-Route: <sip:127.0.0.1:5060;lr;sed=[\w-]+\.[\w-]+>\r\n(?!Record-Route)/, 'one Record-Route UDP->UDP (with the signed dialog parameter)')
  else t.match(fwd.text, /Record-Route: <sip:127.0.0.1:5060;transport=tcp;lr;sed=[\w-]+\.[\w-]+>\r\nRecord-Route: <sip:127.0.0.1:5060;lr;sed=[\w-]+\.[\w-]+>/, 'double Record-Route UDP->TCP (with the signed dialog parameter)')
})

t.test('in-dialog: our Route removed (double RR too), strict-router repair, no route of ours -> rules', async t => {
  const { p, sent } = await harness(t)
  // Our Record-Route values are signed (issue: open relay through forged in-dialog requests).
  const sed = ';sed=' + p.module<DialogModule>('dialog')!.tokens.sign('-', 'sip:-', 'call-1@test', 'ft1')
  p.receive(invite({ method: 'BYE', toTag: 'tt', uri: 'sip:bob@10.7.7.7:5090', route: `<sip:127.0.0.1:5060;lr${sed}>, <sip:127.0.0.1:5060;transport=tcp;lr${sed}>` }), SRC)
  const fwd = sent.find(s => s.text.startsWith('BYE'))!
  t.equal(fwd.dest.address, '10.7.7.7')
  t.equal(fwd.dest.port, 5090)
  t.notMatch(fwd.text, /Route:/, 'both of our Routes removed')
  sent.length = 0
  // strict router before us: the Request-URI is our Record-Route URI, the real target is the last Route
  p.receive(Buffer.from(invite({ method: 'BYE', toTag: 'tt', uri: 'sip:127.0.0.1:5060;lr' + sed, route: '<sip:bob@10.8.8.8:5091>' }).toString().replace('abc', 'st1')), SRC)
  const f2 = sent.find(s => s.text.startsWith('BYE'))!
  t.match(f2.text, /^BYE sip:bob@10.8.8.8:5091 SIP/)
  t.equal(f2.dest.address, '10.8.8.8')
  t.notMatch(f2.text, /Route:/)
})

t.test('CANCEL: 200 hop by hop, CANCEL downstream after the provisional, 487 forwarded', async t => {
  const { p, sent } = await harness(t)
  p.receive(invite(), SRC)
  const fwd = sent.find(s => s.text.startsWith('INVITE'))!
  const branch = /^Via: [^\r]*branch=([^;\r]+)/m.exec(fwd.text)![1]!
  const ringing = fwd.text.replace(/^INVITE [^\r]*/, 'SIP/2.0 180 Ringing').replace('To: <sip:bob@example.com>', 'To: <sip:bob@example.com>;tag=uas')
  p.receive(Buffer.from(ringing), { ...SRC, address: fwd.dest.address, port: fwd.dest.port })
  t.ok(sent.some(s => status(s.text) === 180 && s.dest.address === SRC.address), '180 forwarded')
  sent.length = 0
  p.receive(Buffer.from(invite().toString().replace(/INVITE/g, 'CANCEL')), SRC)
  t.equal(status(sent[0]!.text), 200, 'CANCEL answered 200')
  const cancel = sent.find(s => s.text.startsWith('CANCEL'))!
  t.ok(cancel, 'CANCEL sent downstream')
  t.match(cancel.text, `branch=${branch}`)
  sent.length = 0
  const terminated = fwd.text.replace(/^INVITE [^\r]*/, 'SIP/2.0 487 Request Terminated').replace('To: <sip:bob@example.com>', 'To: <sip:bob@example.com>;tag=uas')
  p.receive(Buffer.from(terminated), { ...SRC, address: fwd.dest.address, port: fwd.dest.port })
  t.ok(sent.some(s => s.text.startsWith('ACK')), 'ACK to the 487 hop by hop')
  const up = sent.find(s => status(s.text) === 487)!
  t.ok(up, '487 forwarded upstream')
  t.notMatch(up.text, new RegExp(branch), 'our Via removed')
})

t.test('timeouts: failover to the next destination, then 408 with a To-tag; 503 becomes 500', async t => {
  const { p, sent, clock } = await harness(t)
  p.receive(invite(), SRC)
  const first = sent.find(s => s.text.startsWith('INVITE'))!
  sent.length = 0
  clock.now += 64 * 100 + 100
  p.layer.tick()
  const second = sent.find(s => s.text.startsWith('INVITE'))!
  t.ok(second, 'failover after Timer B')
  t.not(second.dest.address, first.dest.address)
  sent.length = 0
  const r503 = second.text.replace(/^INVITE [^\r]*/, 'SIP/2.0 503 Service Unavailable').replace('To: <sip:bob@example.com>', 'To: <sip:bob@example.com>;tag=x')
  p.receive(Buffer.from(r503), { ...SRC, address: second.dest.address, port: second.dest.port })
  const final = sent.find(s => s.dest.address === SRC.address && status(s.text) >= 300)!
  t.equal(status(final.text), 408, 'best of 408 (timeout) and 503 is 408')
  t.match(final.text, /To: <sip:bob@example.com>;tag=/)
  t.equal(p.stats().proxy.failovers, 1)
})

t.test('no matching rule: never an open relay', async t => {
  const c = parseConfig(YAML.replace(/  - name: all\n    match: \{\}\n    action: \{ dispatch: apps \}\n/, '')) as FrozenConfig
  const sent: string[] = []
  const p = await proxyWith({ config: c, workerIndex: 0, manualTimers: true, send: (_d, data) => sent.push(Buffer.concat(Array.isArray(data) ? data : [data]).toString()), now: () => 0, log: { debug() {}, info() {}, warn() {}, error() {} } })
  t.teardown(() => p.layer.close())
  p.receive(invite({ route: '<sip:203.0.113.9;lr>' }), SRC)
  t.ok(sent.some(s => status(s) === 403))
  t.notOk(sent.some(s => s.startsWith('INVITE')))
})
