// Registrar unit tests: REGISTER handling (RFC 3261 §10.3, RFC 3327, RFC 5626 §6) and lookup over
// a real LMDB store in a temp dir, with a fake server transaction that records the responses.
import t from 'tap'
import { join } from 'node:path'
import { parseMessage, type SipMessage } from '@sipedge/sip'
import { parseConfig, type FrozenConfig } from '@sipedge/config'
import { openStores, computeHa1 } from '@sipedge/store'
import type { ServerTransaction } from '@sipedge/transaction'
import { createRegistrar, type LocationRegistrar } from '../dist/index.js'
import { parseDigest, digestResponse } from '../dist/index.js'

interface Resp { status: number; reason: string; headers: Array<[string, string]> }
function fakeTx(): { tx: ServerTransaction; done: Promise<Resp> } {
  let resolve!: (r: Resp) => void
  const done = new Promise<Resp>(r => (resolve = r))
  const tx = { respond(status: number, reason: string, opts?: { headers?: Array<[string, string]> }) { resolve({ status, reason, headers: opts?.headers ?? [] }); return true } }
  return { tx: tx as unknown as ServerTransaction, done }
}
const hv = (r: Resp, name: string): string[] => r.headers.filter(h => h[0].toLowerCase() === name.toLowerCase()).map(h => h[1])

let cseqN = 1
function register(o: { user?: string; domain?: string; callId?: string; cseq?: number; contacts?: string[]; expires?: number; headers?: string[] } = {}): SipMessage {
  const user = o.user ?? 'alice'
  const domain = o.domain ?? 'example.com'
  const lines = [
    `REGISTER sip:${domain} SIP/2.0`,
    'Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK' + Math.random().toString(36).slice(2),
    'Max-Forwards: 70',
    `From: <sip:${user}@${domain}>;tag=f1`,
    `To: <sip:${user}@${domain}>`,
    `Call-ID: ${o.callId ?? 'reg-1@host'}`,
    `CSeq: ${o.cseq ?? cseqN++} REGISTER`,
  ]
  for (const c of o.contacts ?? [`<sip:${user}@10.0.0.5:5060>`]) lines.push('Contact: ' + c)
  if (o.expires !== undefined) lines.push('Expires: ' + o.expires)
  for (const h of o.headers ?? []) lines.push(h)
  lines.push('Content-Length: 0')
  return parseMessage(Buffer.from(lines.join('\r\n') + '\r\n\r\n'))
}
function invite(ruri: string): SipMessage {
  return parseMessage(Buffer.from([
    `INVITE ${ruri} SIP/2.0`, 'Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bKinv1', 'Max-Forwards: 70',
    'From: <sip:app@127.0.0.2>;tag=a', `To: <${ruri}>`, 'Call-ID: inv-1', 'CSeq: 1 INVITE', 'Content-Length: 0', '', ''].join('\r\n')))
}

const SRC = { transport: 'udp' as const, address: '198.51.100.7', port: 40000, socketId: 0 }
const log = { debug() {}, info() {}, warn() {}, error() {} }

async function setup(t: Tap.Test, extra = '', files: Record<string, string> = {}): Promise<{ reg: LocationRegistrar; config: FrozenConfig; dir: string }> {
  const dir = t.testdir(files)
  const config = parseConfig(`
domains: [example.com]
registrar: { store: "lmdb:${join(dir, 'loc')}", min_expires: 60s, default_expires: 1h, max_expires: 2h, max_contacts: 3 }
${extra}`) as FrozenConfig
  const stores = await openStores(config.registrar.store, { sweepIntervalMs: 0 })
  t.teardown(() => stores.close())
  const reg = createRegistrar({ config, stores, workerIndex: 0, log })
  return { reg, config, dir }
}
async function send(reg: LocationRegistrar, m: SipMessage, src = SRC): Promise<Resp> {
  const { tx, done } = fakeTx()
  reg.handleRegister(m, tx, src)
  return done
}

t.test('Date follows the clock: formatted once a second, never stale', async t => {
  const dir = t.testdir({})
  const config = parseConfig(`
domains: [example.com]
registrar: { store: "lmdb:${join(dir, 'loc')}", min_expires: 60s, default_expires: 1h, max_expires: 2h, max_contacts: 3 }
`) as FrozenConfig
  const stores = await openStores(config.registrar.store, { sweepIntervalMs: 0 })
  t.teardown(() => stores.close())
  let now = Date.UTC(2026, 11, 8, 10, 0, 0, 100)
  const reg = createRegistrar({ config, stores, workerIndex: 0, log, now: () => now })
  const dateOf = async (): Promise<string> => hv(await send(reg, register({ expires: 600 })), 'Date')[0]!
  t.equal(await dateOf(), 'Tue, 08 Dec 2026 10:00:00 GMT')
  now += 850 // same second
  t.equal(await dateOf(), 'Tue, 08 Dec 2026 10:00:00 GMT')
  now += 100 // the next one
  t.equal(await dateOf(), 'Tue, 08 Dec 2026 10:00:01 GMT')
  now += 86_400_000
  t.equal(await dateOf(), 'Wed, 09 Dec 2026 10:00:01 GMT')
})

t.test('add, refresh, remove; 200 lists every binding with expires and Date', async t => {
  const { reg } = await setup(t)
  let r = await send(reg, register({ contacts: ['<sip:alice@10.0.0.5:5060>;q=0.5', '<sip:alice@10.0.0.6:5070>'], expires: 600 }))
  t.equal(r.status, 200)
  const cs = hv(r, 'Contact')
  t.equal(cs.length, 2)
  t.match(cs.join(' '), /<sip:alice@10\.0\.0\.5:5060>;expires=600;q=0\.5/)
  t.match(cs.join(' '), /<sip:alice@10\.0\.0\.6:5070>;expires=600/)
  t.equal(hv(r, 'Date').length, 1)
  t.match(hv(r, 'Date')[0], /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$/, 'RFC 1123 form (RFC 3261 §20.17)')
  t.ok(Math.abs(Date.parse(hv(r, 'Date')[0]) - Date.now()) < 2000, 'the current time')
  // refresh one with a contact expires parameter overriding the header
  r = await send(reg, register({ contacts: ['<sip:alice@10.0.0.6:5070>;expires=120'], expires: 600 }))
  t.match(hv(r, 'Contact').join(' '), /10\.0\.0\.6:5070>;expires=120/)
  t.equal(hv(r, 'Contact').length, 2)
  // remove one
  r = await send(reg, register({ contacts: ['<sip:alice@10.0.0.6:5070>'], expires: 0 }))
  t.equal(hv(r, 'Contact').length, 1)
  // query without Contact
  r = await send(reg, register({ contacts: [] }))
  t.equal(r.status, 200)
  t.equal(hv(r, 'Contact').length, 1)
  // lookup: targets in q order, R-URI rewritten, flow = source (NAT)
  const targets = await reg.lookup(invite('sip:alice@example.com'))
  t.ok(Array.isArray(targets))
  const tg = targets as Array<{ uri: string; requestUri?: string; flow?: { address: string; port: number } }>
  t.equal(tg.length, 1)
  t.equal(tg[0]!.requestUri, 'sip:alice@10.0.0.5:5060')
  t.same({ a: tg[0]!.flow!.address, p: tg[0]!.flow!.port }, { a: '198.51.100.7', p: 40000 })
  // star removes all
  r = await send(reg, register({ contacts: ['*'], expires: 0 }))
  t.equal(r.status, 200)
  t.equal(hv(r, 'Contact').length, 0)
  t.same(await reg.lookup(invite('sip:alice@example.com')), { status: 480, reason: 'Temporarily Unavailable' })
  t.same(await reg.lookup(invite('sip:alice@other.org')), { status: 404, reason: 'Not Found' }, 'a domain not served here: 404')
})

t.test('q order, default expiry, max expiry cut, max_contacts', async t => {
  const { reg } = await setup(t)
  let r = await send(reg, register({ contacts: ['<sip:a@10.0.0.1>;q=0.1', '<sip:a@10.0.0.2>;q=0.9', '<sip:a@10.0.0.3>'] }))
  t.equal(r.status, 200)
  t.match(hv(r, 'Contact').join(' '), /10\.0\.0\.3>;expires=3600/, 'default expiry 1h')
  const tg = await reg.lookup(invite('sip:alice@example.com')) as Array<{ requestUri: string }>
  t.same(tg.map(x => x.requestUri), ['sip:a@10.0.0.3', 'sip:a@10.0.0.2', 'sip:a@10.0.0.1'])
  r = await send(reg, register({ contacts: ['<sip:a@10.0.0.4>'], expires: 99999 }))
  t.match(hv(r, 'Contact').join(' '), /10\.0\.0\.4>;expires=7200/, 'cut to max 2h')
  t.equal(hv(r, 'Contact').length, 3, 'max_contacts 3: the oldest dropped')
  t.equal(reg.counters.bindingsDropped, 1)
})

t.test('423 Interval Too Brief with Min-Expires; 400 for bad star use; 420 for Require', async t => {
  const { reg } = await setup(t)
  let r = await send(reg, register({ expires: 30 }))
  t.equal(r.status, 423)
  t.same(hv(r, 'Min-Expires'), ['60'])
  r = await send(reg, register({ contacts: ['*'], expires: 60 }))
  t.equal(r.status, 400)
  r = await send(reg, register({ contacts: ['*'] }))
  t.equal(r.status, 400, 'star without Expires')
  r = await send(reg, register({ contacts: ['*', '<sip:a@10.0.0.1>'], expires: 0 }))
  t.equal(r.status, 400, 'star with another contact')
  r = await send(reg, register({ headers: ['Require: foo, path'] }))
  t.equal(r.status, 420)
  t.same(hv(r, 'Unsupported'), ['foo'])
  r = await send(reg, register({ domain: 'other.org' }))
  t.equal(r.status, 404)
})

t.test('§10.3 step 7: same Call-ID with CSeq not higher fails with 500', async t => {
  const { reg } = await setup(t)
  let r = await send(reg, register({ callId: 'c1', cseq: 10 }))
  t.equal(r.status, 200)
  r = await send(reg, register({ callId: 'c1', cseq: 10 }))
  t.equal(r.status, 500)
  r = await send(reg, register({ callId: 'c1', cseq: 9, contacts: ['*'], expires: 0 }))
  t.equal(r.status, 500, 'star with an old CSeq')
  r = await send(reg, register({ callId: 'c2', cseq: 1 }))
  t.equal(r.status, 200, 'another Call-ID updates regardless of CSeq')
  r = await send(reg, register({ callId: 'c2', cseq: 2, contacts: ['*'], expires: 0 }))
  t.equal(r.status, 200)
})

t.test('Path stored, echoed with Supported: path, used as Route on lookup', async t => {
  const { reg } = await setup(t)
  let r = await send(reg, register({ headers: ['Path: <sip:edge1.example.net;lr>', 'Path: <sip:edge2.example.net;lr>'] }))
  t.equal(hv(r, 'Path').length, 0, 'no Path echoed without Supported: path')
  r = await send(reg, register({ headers: ['Supported: path', 'Path: <sip:edge1.example.net;lr>, <sip:edge2.example.net;lr>'] }))
  t.same(hv(r, 'Path'), ['<sip:edge1.example.net;lr>, <sip:edge2.example.net;lr>'])
  const tg = await reg.lookup(invite('sip:alice@example.com')) as Array<{ uri: string; requestUri: string; headers: Array<[string, string]>; flow?: unknown }>
  t.equal(tg[0]!.uri, 'sip:edge1.example.net;lr')
  t.equal(tg[0]!.requestUri, 'sip:alice@10.0.0.5:5060')
  t.same(tg[0]!.headers, [['Route', '<sip:edge1.example.net;lr>, <sip:edge2.example.net;lr>']])
  t.equal(tg[0]!.flow, undefined)
})

t.test('outbound: two flows of one instance kept apart, Require: outbound, flow on lookup', async t => {
  const { reg } = await setup(t)
  const inst = '+sip.instance="<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>"'
  const tcp1 = { transport: 'tcp' as const, address: '198.51.100.7', port: 50001, socketId: 1, connId: 11 }
  const tcp2 = { transport: 'tcp' as const, address: '198.51.100.7', port: 50002, socketId: 1, connId: 12 }
  let r = await send(reg, register({ callId: 'ob1', contacts: [`<sip:alice@10.0.0.5;transport=tcp;ob>;${inst};reg-id=1`], headers: ['Supported: outbound, path'] }), tcp1)
  t.equal(r.status, 200)
  t.same(hv(r, 'Require'), ['outbound'])
  r = await send(reg, register({ callId: 'ob2', contacts: [`<sip:alice@10.0.0.5;transport=tcp;ob>;${inst};reg-id=2`], headers: ['Supported: outbound, path'] }), tcp2)
  t.equal(hv(r, 'Contact').length, 2, 'same contact URI, two reg-ids: two bindings')
  t.match(hv(r, 'Contact').join(' '), /reg-id=1/)
  const tg = await reg.lookup(invite('sip:alice@example.com')) as Array<{ flow: { connId: number; transport: string } }>
  t.same(tg.map(x => x.flow.connId).sort(), [11, 12])
  // refresh flow 1 from a new connection: replaces binding (instance, 1) only
  r = await send(reg, register({ callId: 'ob1', contacts: [`<sip:alice@10.0.0.5;transport=tcp;ob>;${inst};reg-id=1`], headers: ['Supported: outbound'] }), { ...tcp1, connId: 21 })
  t.equal(hv(r, 'Contact').length, 2)
  const tg2 = await reg.lookup(invite('sip:alice@example.com')) as Array<{ flow: { connId: number } }>
  t.same(tg2.map(x => x.flow.connId).sort(), [12, 21])
  // without Supported: outbound the reg-id is ignored (RFC 5626 §6)
  r = await send(reg, register({ user: 'bob', callId: 'ob3', contacts: [`<sip:bob@10.0.0.9>;${inst};reg-id=1`] }))
  t.same(hv(r, 'Require'), [])
  t.notMatch(hv(r, 'Contact').join(' '), /reg-id/)
})

// Issue "Safe on a public address" 8: 404 for unknown and 480 for known users let scanners
// enumerate the users; every user of our domains without a binding now gets 480.
t.test('lookup-enumerates-users: expired bindings and unknown users both get 480', async t => {
  let now = Date.now()
  const dir = t.testdir({ 'users.json': JSON.stringify({ users: { alice: 'pw' } }) })
  const config = parseConfig(`
domains: [example.com]
registrar: { store: "lmdb:${join(dir, 'loc')}", min_expires: 1s }
auth: { domains: { example.com: { users_file: ${join(dir, 'users.json')}, methods: [INVITE] } } }
`) as FrozenConfig
  const stores = await openStores(config.registrar.store, { sweepIntervalMs: 0, now: () => now })
  t.teardown(() => stores.close())
  const reg = createRegistrar({ config, stores, workerIndex: 0, log, now: () => now })
  t.equal((await send(reg, register({ expires: 2 }))).status, 200)
  t.ok(Array.isArray(await reg.lookup(invite('sip:alice@example.com'))))
  now += 3000
  t.same(await reg.lookup(invite('sip:alice@example.com')), { status: 480, reason: 'Temporarily Unavailable' })
  t.equal(await stores.location.sweepExpired(now), 1, 'swept')
  t.same(await reg.lookup(invite('sip:nobody@example.com')), { status: 480, reason: 'Temporarily Unavailable' }, 'a user that does not exist: the same answer')
})

t.test('REGISTER with digest auth: 401, then 200; wrong user 403', async t => {
  const users = `alice:example.com:${computeHa1('alice', 'example.com', 'secret', 'SHA-256')}\nalice:example.com:${computeHa1('alice', 'example.com', 'secret')}\nbob:example.com:${computeHa1('bob', 'example.com', 'pw')}\n`
  const dir = t.testdirName
  const { reg } = await setup(t, `auth: { domains: { example.com: { users_file: ${join(dir, 'users.txt')} } } }`, { 'users.txt': users })
  let r = await send(reg, register({ callId: 'a1', cseq: 1 }))
  t.equal(r.status, 401)
  const ch = hv(r, 'WWW-Authenticate')
  t.equal(ch.length, 2)
  t.match(ch[0]!, /algorithm=SHA-256/, 'SHA-256 first (RFC 8760)')
  t.match(ch[1]!, /algorithm=MD5/)
  for (const alg of ['SHA-256', 'MD5'] as const) {
    const c = parseDigest(ch[alg === 'MD5' ? 1 : 0]!.replace('Digest', 'Digest username="alice", uri="sip:example.com", response="x",'))!
    const ha1 = computeHa1('alice', 'example.com', 'secret', alg)
    // One nonce is shared by both challenges: its nonce-count goes on from 1 to 2.
    const nc = alg === 'MD5' ? '00000002' : '00000001'
    const cred = { nonce: c.nonce, uri: 'sip:example.com', qop: 'auth', nc, cnonce: 'abc' }
    const resp = digestResponse(alg, ha1, 'REGISTER', cred)
    const auth = `Authorization: Digest username="alice", realm="example.com", nonce="${c.nonce}", uri="sip:example.com", response="${resp}", algorithm=${alg}, qop=auth, nc=${nc}, cnonce="abc"`
    r = await send(reg, register({ callId: 'a1', cseq: alg === 'MD5' ? 3 : 2, headers: [auth] }))
    t.equal(r.status, 200, `${alg} accepted`)
    // replay of the same nc
    r = await send(reg, register({ callId: 'a1', cseq: alg === 'MD5' ? 13 : 12, headers: [auth] }))
    t.equal(r.status, 401, `${alg} replayed nc re-challenged`)
  }
  // bob's credentials for alice's AOR
  r = await send(reg, register({ user: 'alice', callId: 'b1', cseq: 1 }))
  const c = parseDigest(hv(r, 'WWW-Authenticate')[1]!.replace('Digest', 'Digest username="x", uri="y", response="z",'))!
  const resp = digestResponse('MD5', computeHa1('bob', 'example.com', 'pw'), 'REGISTER', { nonce: c.nonce, uri: 'sip:example.com', qop: 'auth', nc: '00000001', cnonce: 'q' })
  r = await send(reg, register({ user: 'alice', callId: 'b1', cseq: 2, headers: [`Authorization: Digest username="bob", realm="example.com", nonce="${c.nonce}", uri="sip:example.com", response="${resp}", algorithm=MD5, qop=auth, nc=00000001, cnonce="q"`] }))
  t.equal(r.status, 403)
})

t.test('store failure: 503 with Retry-After, no throw', async t => {
  const config = parseConfig('domains: [example.com]') as FrozenConfig
  const boom = () => Promise.reject(Object.assign(new Error('redis down'), { code: 'ERR_STORE_UNAVAILABLE' }))
  const location = { get: boom, update: boom } as never
  const warns: string[] = []
  const reg = createRegistrar({ config, stores: { location }, workerIndex: 0, log: { ...log, warn: (m: string) => warns.push(m) } })
  const r = await send(reg, register())
  t.equal(r.status, 503)
  t.same(hv(r, 'Retry-After'), ['5'])
  await send(reg, register())
  t.equal(warns.length, 1, 'log line rate-limited')
  t.same(await reg.lookup(invite('sip:alice@example.com')), { status: 503, reason: 'Location Service Unavailable' })
})
