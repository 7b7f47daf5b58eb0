// Regression tests named after the bugs of issue "Safe on a public address" (worker side: items
// 5, 6 and 8), on the core with every module, real message bytes and an injected clock.
import t from 'tap'
import { join } from 'node:path'
import { parseConfig, type FrozenConfig } from '@sipedge/config'
import type { Destination, Proxy, ProxyOptions } from '@sipedge/proxy'
import { computeHa1, openStores, type Stores } from '@sipedge/store'
import { proxyWith, quietLog } from './fixtures/proxy.js'
import { digestResponse, type DispatcherModule } from '../dist/index.js'

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
  n++
  return Buffer.from([
    `${method} ${ruri} SIP/2.0`,
    `Via: ${o.via ?? 'SIP/2.0/UDP 127.0.0.7:5062'};branch=${o.branch ?? 'z9hG4bK-p' + n};rport`,
    'Max-Forwards: 70',
    `From: <sip:${o.from ?? 'alice'}@example.com>;tag=ft${o.callId !== undefined ? 'x' : n}`,
    `To: <${method === 'REGISTER' ? `sip:${o.from ?? 'alice'}@example.com` : 'sip:bob@example.com'}>`,
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

// ------------------------------------------------------------------------------ item 5

async function authPair(t: Tap.Test, o: { banUsers?: number } = {}): Promise<{ w: Array<{ p: Proxy; sent: Sent[]; posted: Array<Record<string, unknown>> }>; stores: Stores }> {
  const dir = t.testdir({ 'users.json': JSON.stringify({ users: { alice: 'secret01', bob: 'secret02' } }) })
  const stores = await openStores('lmdb:' + join(dir, 'store'), { sweepIntervalMs: 0 })
  t.teardown(() => stores.close())
  const yaml = `
workers: 2
listen: [udp:127.0.0.1:5060]
domains: [example.com]
registrar: { store: "lmdb:${join(dir, 'store')}" }
auth:
  domains: { example.com: { users_file: ${join(dir, 'users.json')}, methods: [REGISTER, INVITE] } }
  throttle: { ban_users: ${o.banUsers ?? 10} }
routes:
  - { match: { method: REGISTER }, action: register }
  - { match: { domain: example.com }, action: { forward: "sip:127.0.0.8:5080" } }
`
  const w: Array<{ p: Proxy; sent: Sent[]; posted: Array<Record<string, unknown>> }> = []
  for (let i = 0; i < 2; i++) {
    const sent: Sent[] = []
    const posted: Array<Record<string, unknown>> = []
    const p = await proxyWith({
      config: parseConfig(yaml) as FrozenConfig, workerIndex: i, workers: 2, manualTimers: true, now: () => Date.now(), log: quietLog,
      send: (dest, data) => {
        const b = Buffer.concat(Array.isArray(data) ? data : [data])
        sent.push({ dest, bytes: b.length, text: b.toString('latin1') })
      },
      // The primary relays a worker's control message to the other workers (engine 'broadcast').
      postControl: m => { posted.push(m as Record<string, unknown>); w[1 - i]?.p.onControl(m) },
    }, stores)
    t.teardown(() => p.close(0))
    w.push({ p, sent, posted })
  }
  // The auth module's store is optional (users come from a file): opened in the background.
  for (let i = 0; i < 100 && !w.every(x => (x.p.stats() as { auth?: { sharedCounters?: boolean } }).auth?.sharedCounters === true); i++) await new Promise(r => setTimeout(r, 10))
  t.ok(w.every(x => (x.p.stats() as { auth: { sharedCounters: boolean } }).auth.sharedCounters), 'both workers count in the store')
  return { w, stores }
}

/** The request's answer: the last thing sent to `source` (undefined: nothing). */
async function ask(x: { p: Proxy; sent: Sent[] }, msg: Buffer, source: typeof UA): Promise<string | undefined> {
  const before = x.sent.length
  x.p.receive(msg, source)
  for (let i = 0; i < 100; i++) {
    const mine = x.sent.slice(before).filter(s => s.dest.address === source.address || s.dest.address === '127.0.0.8')
    if (mine.length > 0) return mine.at(-1)!.text
    await new Promise(r => setImmediate(r))
  }
  return undefined
}

function credentials(challenge: string, o: { user: string; password: string; method: string; uri: string; header?: string }): string {
  const nonce = /nonce="([^"]+)"/.exec(challenge)![1]!
  const resp = digestResponse('MD5', computeHa1(o.user, 'example.com', o.password, 'MD5'), o.method, { nonce, uri: o.uri, qop: 'auth', nc: '00000001', cnonce: 'cn' })
  return `${o.header ?? 'Proxy-Authorization'}: Digest username="${o.user}", realm="example.com", nonce="${nonce}", uri="${o.uri}", response="${resp}", algorithm=MD5, qop=auth, nc=00000001, cnonce="cn"`
}

/** An INVITE from `from` at `source`, answered with `password` to a fresh challenge of worker `i`. */
async function attempt(w: Array<{ p: Proxy; sent: Sent[] }>, i: number, source: typeof UA, user: string, password: string, from = user): Promise<string | undefined> {
  const via = `SIP/2.0/UDP ${source.address}:${source.port}`
  const ch = await ask(w[i]!, req('INVITE', 'sip:carol@example.com', { via, from }), source)
  if (ch === undefined || !/^SIP\/2\.0 407 /.test(ch)) return ch
  return ask(w[i]!, req('INVITE', 'sip:carol@example.com', { via, from, headers: [credentials(ch, { user, password, method: 'INVITE', uri: 'sip:carol@example.com' })] }), source)
}

const status = (text: string | undefined): string => text === undefined ? 'nothing' : text.startsWith('INVITE ') ? 'forwarded' : text.split('\r\n')[0]!.slice(8, 11)

t.test('auth-lockout-per-worker: 5 wrong passwords spread over two workers (new Call-IDs) lock the user out on both', async t => {
  const { w } = await authPair(t)
  const SRC = { ...UA, address: '127.0.0.31' }
  const got: string[] = []
  for (let i = 0; i < 5; i++) got.push(status(await attempt(w, i % 2, SRC, 'alice', 'wrong-' + i)))
  t.same(got, ['407', '407', '407', '407', '403'], 'the 5th failure, on any worker, is refused')
  t.equal(status(await attempt(w, 1, SRC, 'alice', 'secret01')), '403', 'worker 1: locked, even with the right password')
  t.equal(status(await attempt(w, 0, SRC, 'alice', 'secret01')), '403', 'worker 0: locked')
  t.equal(status(await attempt(w, 1, { ...SRC, address: '127.0.0.32' }, 'alice', 'secret01')), 'forwarded', 'the same user from another address is not locked out')
  t.equal(status(await attempt(w, 0, SRC, 'bob', 'secret02')), 'forwarded', 'another user from the same address is not')
})

t.test('auth-spray-across-users: one source failing against many users is banned once, on every worker, and in the BanStore', async t => {
  const { w, stores } = await authPair(t, { banUsers: 5 })
  const SRC = { ...UA, address: '127.0.0.66' }
  const got: string[] = []
  for (let i = 0; i < 8; i++) got.push(status(await attempt(w, i % 2, SRC, 'user' + i, 'guess')))
  t.same(got.slice(0, 5), ['407', '407', '407', '407', '407'], 'each guess re-challenged until the 5th user')
  t.same(got.slice(5), ['nothing', 'nothing', 'nothing'], 'then dropped without an answer, on both workers')
  const bans = [...w[0]!.posted, ...w[1]!.posted].filter(m => m['type'] === 'ban')
  t.equal(bans.length, 1, 'reported to the primary once')
  t.match(bans[0], { type: 'ban', address: '127.0.0.66', reason: 'auth', users: 5 })
  t.ok((bans[0]!['until'] as number) > Date.now() && bans[0]!['durationMs'] === 3_600_000)
  const stored = await stores.bans.get('127.0.0.66')
  for (let i = 0; i < 100 && (await stores.bans.get('127.0.0.66')) === null; i++) await new Promise(r => setTimeout(r, 10))
  t.equal((stored ?? await stores.bans.get('127.0.0.66'))?.reason, 'auth', 'written to the BanStore')
  t.equal(status(await attempt(w, 0, { ...UA, address: '127.0.0.67' }, 'alice', 'secret01')), 'forwarded', 'other sources unaffected')
  const dropped = w.map(x => (x.p.stats() as { auth: { bannedDropped: number } }).auth.bannedDropped)
  t.ok(dropped[0]! > 0 && dropped[1]! > 0, 'dropped and counted on both workers')
})

t.test('auth-unknown-user-oracle: an unknown user and a wrong password get byte-identical answers', async t => {
  const { w } = await authPair(t)
  const mask = (s: string | undefined): string => (s ?? '').replace(/nonce="[^"]+"/g, 'nonce="N"').replace(/;tag=[^;\r\n>]+/g, ';tag=T')
  const run = async (user: string, address: string, method: 'INVITE' | 'REGISTER'): Promise<string[]> => {
    const src = { ...UA, address }
    const via = `SIP/2.0/UDP ${address}:5062`
    const out: string[] = []
    for (let i = 0; i < 7; i++) {
      const ruri = method === 'INVITE' ? 'sip:carol@example.com' : 'sip:example.com'
      const base = { via, from: user, callId: `oracle-${i}`, branch: `z9hG4bK-oracle-${i}` }
      const ch = await ask(w[i % 2]!, req(method, ruri, base), src)
      const header = method === 'INVITE' ? 'Proxy-Authorization' : 'Authorization'
      const answerBytes = req(method, ruri, { ...base, branch: base.branch + 'b', headers: ch?.includes('nonce=') === true ? [credentials(ch, { user, password: 'not-it', method, uri: ruri, header })] : [] })
      out.push(mask(ch), mask(await ask(w[i % 2]!, answerBytes, src)))
    }
    return out
  }
  for (const method of ['INVITE', 'REGISTER'] as const) {
    const known = await run('alice', method === 'INVITE' ? '127.0.0.41' : '127.0.0.43', method)
    const unknown = await run('mallory', method === 'INVITE' ? '127.0.0.42' : '127.0.0.44', method)
    t.match(known[1], method === 'INVITE' ? /^SIP\/2\.0 407 / : /^SIP\/2\.0 401 /, `${method}: a wrong password is challenged again`)
    t.match(known.at(-1), /^SIP\/2\.0 403 Forbidden \(too many failed attempts\)/, `${method}: then refused`)
    const same = (list: string[], addr: string): string[] => list.map(s => s.replace(/mallory/g, 'alice').split(addr).join('ADDR'))
    const [ka, ua] = method === 'INVITE' ? ['127.0.0.41', '127.0.0.42'] : ['127.0.0.43', '127.0.0.44']
    t.same(same(unknown, ua), same(known, ka), `${method}: every answer byte-identical but for the nonce, tag and the client's own address and name`)
  }
})

// ------------------------------------------------------------------------------ item 8: dispatcher

// Under garbage traffic a healthy destination "flapped active/inactive 184 times in a minute while
// every probe succeeded": passive marks (a 503 or a timeout on a request that happened to go to it,
// then any response) were reported as state changes — logged at info and, on the probing worker,
// posted to every other worker as `dispatcher-state`. Only probe verdicts change the reported
// state now; passive suspicion stays this worker's routing hint.
t.test('dispatcher-flaps-under-garbage: passive marks from garbage never change the reported state', async t => {
  const infos: Array<Record<string, unknown>> = []
  const posted: Array<Record<string, unknown>> = []
  const log = { ...quietLog, info: (msg: string, f?: Record<string, unknown>) => { if (msg === 'dispatcher destination state') infos.push(f ?? {}) } }
  const { p, sent, run } = await harness(t, `
workers: 1
listen: [udp:127.0.0.1:5060]
domains: [example.com]
timers: { t1: 100ms, t2: 1s, t4: 1s }
dispatcher: { sets: { apps: { probe: { interval: 2s, timeout: 1s }, destinations: ["sip:127.0.0.8:5080"] } } }
routes:
  - { match: { domain: example.com }, action: { dispatch: apps } }
`, { log, postControl: m => { posted.push(m as Record<string, unknown>) } })
  const disp = p.module<DispatcherModule>('dispatcher')!.dispatcher
  const set = disp.get('apps')!
  const dest = set.destinations[0]!
  const APP = { ...UA, address: '127.0.0.8', port: 5080 }
  const probeOk = (): void => { dest.probeSeq++; dest.probeOutstanding = true; disp.probeResult(set, dest, dest.probeSeq, 200) }
  for (let i = 0; i < 30; i++) {
    sent.length = 0
    p.receive(req('INVITE', 'sip:bob@example.com', { headers: ['X-Garbage: ' + 'z'.repeat(i)] }), UA)
    const fwd = sent.find(s => s.text.startsWith('INVITE '))
    t.ok(fwd, `request ${i} dispatched`)
    if (fwd === undefined) continue
    if (i % 3 === 0) p.receive(answerTo(fwd.text, 503), APP) // the backend refuses garbage with 503
    else if (i % 3 === 1) p.receive(answerTo(fwd.text, 400), APP) // ... or 400
    else run(64 * 100 + 100) // ... or ignores it: Timer B
    if (i % 5 === 0) probeOk()
  }
  t.equal(dest.probeState, 'active')
  t.ok(dest.failed > 0, 'the passive marks happened (the destination was suspected)')
  t.same(infos, [], 'no state change logged')
  t.same(posted.filter(m => m['type'] === 'dispatcher-state'), [], 'no state change posted to the other workers')
  t.equal(dest.state, 'active', 'the reported state stayed active')
  // A probe verdict still changes it, and is reported.
  for (let i = 0; i < 3; i++) { dest.probeSeq++; dest.probeOutstanding = true; disp.probeResult(set, dest, dest.probeSeq, 0) }
  t.equal(dest.state, 'inactive')
  t.match(infos, [{ state: 'inactive' }], 'a probe verdict is logged')
  t.match(posted.filter(m => m['type'] === 'dispatcher-state'), [{ state: 'inactive' }], 'and posted')
})

function answerTo(fwd: string, status: number): Buffer {
  const lines = fwd.split('\r\n')
  const keep = lines.filter(l => /^(Via|From|Call-ID|CSeq):/.test(l))
  const to = lines.find(l => l.startsWith('To:'))! + ';tag=tt'
  return Buffer.from([`SIP/2.0 ${status} X`, ...keep, to, 'Content-Length: 0', '', ''].join('\r\n'))
}

// ------------------------------------------------------------------------------ item 8: scanners

t.test('scanner-user-agent-answered: security.drop_user_agents drops scanners without an answer, counted', async t => {
  const { p, sent } = await harness(t, NO_ROUTE)
  const ua = (v: string | null, method = 'OPTIONS', ruri = 'sip:100@127.0.0.1'): Buffer => req(method, ruri, { headers: v === null ? [] : [`User-Agent: ${v}`] })
  for (const v of ['friendly-scanner', 'FRIENDLY-SCANNER', 'sipvicious 0.3.4', 'sipcli/v1.8', 'Mozilla VaxSIPUserAgent/3.1', 'x iWar y']) {
    sent.length = 0
    p.receive(ua(v), UA)
    p.receive(ua(v, 'INVITE', 'sip:0011972599@example.com'), UA)
    p.receive(ua(v, 'REGISTER', 'sip:example.com'), UA)
    t.equal(sent.length, 0, `${v}: no answer at all`)
  }
  t.equal((p.stats() as { security: { scannersDropped: number } }).security.scannersDropped, 18, 'every one counted')
  t.equal(p.counters.arrivalDropped, 18)
  t.equal(p.layer.stats().created.ist + p.layer.stats().created.nist, 0, 'no transaction for any of them')
  for (const v of ['Linphone/5.2 (belle-sip/5.2)', 'sipp', 'sipsak 0.9.8', 'friendly scanner', null]) {
    sent.length = 0
    p.receive(ua(v), UA)
    t.match(sent.at(-1)?.text ?? '', /^SIP\/2\.0 [1-6]\d\d /, `${v ?? 'no User-Agent'}: answered`)
  }
})

t.test('security.drop_user_agents: [] turns it off; a reload applies a new list', async t => {
  const off = await harness(t, NO_ROUTE + 'security: { drop_user_agents: [] }\n')
  off.p.receive(req('OPTIONS', 'sip:127.0.0.1', { headers: ['User-Agent: friendly-scanner'] }), UA)
  t.match(off.sent.at(-1)?.text ?? '', /^SIP\/2\.0 200 /, 'answered when the list is empty')
  t.equal(off.p.module('security'), undefined, 'the module is not even loaded')
  const on = await harness(t, NO_ROUTE)
  on.p.applyConfig(parseConfig(NO_ROUTE + 'security: { drop_user_agents: [Linphone] }\n') as FrozenConfig)
  on.p.receive(req('OPTIONS', 'sip:127.0.0.1', { headers: ['User-Agent: linphone/5'] }), UA)
  on.p.receive(req('OPTIONS', 'sip:127.0.0.1', { headers: ['User-Agent: friendly-scanner'] }), UA)
  t.equal(on.sent.length, 1, 'the new list applies, the old one is gone')
})
