// Digest authentication: nonces (stateless, stale, tampered, replay), users files, 401/407/403.
import t from 'tap'
import { join } from 'node:path'
import { parseMessage, type SipMessage } from '@sipedge/sip'
import { parseConfig, type FrozenConfig } from '@sipedge/config'
import { computeHa1 } from '@sipedge/store'
import {
  DigestAuth, NonceCodec, NonceCounts, parseDigest, digestResponse, loadUsersFile, sameDigest, type AuthResult,
} from '../dist/index.js'
import { createRegistrar, AuthModule } from '../dist/index.js'
import type { CoreApi, Source } from '@sipedge/proxy'

const log = { debug() {}, info() {}, warn() {}, error() {} }

function req(method: string, ruri: string, headers: string[] = [], from = 'sip:alice@example.com'): SipMessage {
  return parseMessage(Buffer.from([
    `${method} ${ruri} SIP/2.0`, 'Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKa1', 'Max-Forwards: 70',
    `From: <${from}>;tag=f`, `To: <${ruri}>`, 'Call-ID: c1', `CSeq: 1 ${method}`, ...headers, 'Content-Length: 0', '', ''].join('\r\n')))
}
function answer(r: AuthResult, i: number, o: { user?: string; password?: string; method?: string; uri?: string; nc?: string; kind?: 'Authorization' | 'Proxy-Authorization' } = {}): string {
  if (r.ok) throw new Error('not a challenge')
  const ch = parseDigest(r.headers[i]![1].replace('Digest', 'Digest username="x", uri="y", response="z",'))!
  const alg = ch.algorithm as 'MD5' | 'SHA-256'
  const user = o.user ?? 'alice'
  const uri = o.uri ?? 'sip:example.com'
  const nc = o.nc ?? '00000001'
  const resp = digestResponse(alg, computeHa1(user, ch.realm, o.password ?? 'secret', alg), o.method ?? 'REGISTER', { nonce: ch.nonce, uri, qop: 'auth', nc, cnonce: 'cn' })
  return `${o.kind ?? 'Authorization'}: Digest username="${user}", realm="${ch.realm}", nonce="${ch.nonce}", uri="${uri}", response="${resp}", algorithm=${alg}, qop=auth, nc=${nc}, cnonce="cn"`
}

t.test('nonce codec: verifies across instances with one key, stale after ttl, rejects tampering', async t => {
  let now = 1_700_000_000_000
  const key = Buffer.alloc(32, 7)
  const a = new NonceCodec(key, 1000, () => now)
  const b = new NonceCodec(key, 1000, () => now)
  const n = a.issue('r')
  t.equal(b.check(n, 'r'), 'ok', 'another worker with the same key accepts it')
  t.equal(b.check(n, 'other'), 'invalid', 'bound to the realm')
  t.equal(new NonceCodec(Buffer.alloc(32, 8), 1000, () => now).check(n, 'r'), 'invalid', 'another key rejects it')
  const bad = (n[0] === 'A' ? 'B' : 'A') + n.slice(1)
  t.equal(b.check(bad, 'r'), 'invalid', 'tampered timestamp')
  t.equal(b.check('short', 'r'), 'invalid')
  now += 1500
  t.equal(b.check(n, 'r'), 'stale')
  const c = new NonceCounts(2)
  t.ok(c.advance('n1', 1))
  t.notOk(c.advance('n1', 1), 'same nc is a replay')
  t.ok(c.advance('n1', 2))
  t.ok(c.advance('n2', 1))
  t.ok(c.advance('n3', 1))
  t.equal(c.size, 2, 'bounded LRU')
  t.ok(sameDigest('ABCD', 'abcd'))
  t.notOk(sameDigest('abcd', 'abc'))
})

t.test('parseDigest: quoted commas, escapes, missing fields', async t => {
  const c = parseDigest('Digest username="a\\"b", realm="x, y", nonce="n", uri="sip:a", response="r", qop=auth, nc=00000001, cnonce="c"')!
  t.equal(c.username, 'a"b')
  t.equal(c.realm, 'x, y')
  t.equal(c.algorithm, 'MD5', 'default algorithm')
  t.equal(parseDigest('Basic abc'), null)
  t.equal(parseDigest('Digest username="a"'), null)
  t.equal(parseDigest('Digest username="a'), null)
})

t.test('users files: htdigest lines, JSON, YAML with plain passwords', async t => {
  const dir = t.testdir({
    'u.txt': `# comment\nalice:r:${computeHa1('alice', 'r', 'pw')}\nalice:r:${computeHa1('alice', 'r', 'pw', 'SHA-256')}\nbob:other:${computeHa1('bob', 'other', 'x')}\n`,
    'u.json': JSON.stringify({ users: { alice: 'pw', carol: { ha1_md5: computeHa1('carol', 'r', 'c') } } }),
    'u.yaml': 'users:\n  - username: alice\n    password: pw\n  - username: dave\n    ha1_sha256: ' + computeHa1('dave', 'r', 'd', 'SHA-256') + '\n',
    'bad.txt': 'alice:r:nothex\n',
  })
  const txt = loadUsersFile(join(dir, 'u.txt'), 'r')
  t.equal(txt.size, 1, 'other realm skipped')
  t.same(txt.get('r', 'alice'), { ha1Md5: computeHa1('alice', 'r', 'pw'), ha1Sha256: computeHa1('alice', 'r', 'pw', 'SHA-256') })
  const json = loadUsersFile(join(dir, 'u.json'), 'r')
  t.equal(json.get('r', 'alice')!.ha1Sha256, computeHa1('alice', 'r', 'pw', 'SHA-256'), 'password hashed at load')
  t.equal(json.get('r', 'carol')!.ha1Md5, computeHa1('carol', 'r', 'c'))
  const yaml = loadUsersFile(join(dir, 'u.yaml'), 'r')
  t.equal(yaml.get('r', 'alice')!.ha1Md5, computeHa1('alice', 'r', 'pw'))
  t.equal(yaml.get('r', 'dave')!.ha1Md5, undefined)
  t.throws(() => loadUsersFile(join(dir, 'bad.txt'), 'r'), { code: 'ERR_AUTH_USERS_FILE' })
  t.throws(() => loadUsersFile(join(dir, 'missing.txt'), 'r'), { code: 'ERR_AUTH_USERS_FILE' })
})

function makeAuth(t: Tap.Test, now: () => number, extra = ''): { auth: DigestAuth; config: FrozenConfig } {
  const dir = t.testdir({ 'users.json': JSON.stringify({ users: { alice: 'secret', bob: 'pw' } }) })
  const config = parseConfig(`
domains: [example.com]
auth: { domains: { example.com: { users_file: ${join(dir, 'users.json')}, nonce_ttl: 5s, methods: [REGISTER, INVITE, MESSAGE] ${extra} } } }
`) as FrozenConfig
  return { auth: new DigestAuth({ config, now, log, maxFailures: 3, checkUri: true }), config }
}

t.test('401 challenge, stale=true after the ttl with a right answer, wrong password re-challenged then 403', async t => {
  let now = Date.now()
  const { auth } = makeAuth(t, () => now)
  const realm = auth.realmFor('example.com', 'REGISTER')!
  const first = auth.verify(req('REGISTER', 'sip:example.com'), realm, 'www', '10.0.0.5') as AuthResult
  t.equal(first.ok, false)
  if (first.ok) return
  t.equal(first.status, 401)
  t.match(first.headers[0]![1], /^Digest realm="example.com", nonce="[A-Za-z0-9_-]{40}", algorithm=SHA-256, qop="auth"$/)
  const good = auth.verify(req('REGISTER', 'sip:example.com', [answer(first, 0)]), realm, 'www', '10.0.0.5') as AuthResult
  t.same(good, { ok: true, user: 'alice', realm: 'example.com', domain: 'example.com' })
  // digest uri must match the Request-URI
  const wrongUri = auth.verify(req('REGISTER', 'sip:example.com', [answer(first, 0, { nc: '00000002', uri: 'sip:evil.com' })]), realm, 'www', '10.0.0.5') as AuthResult
  t.equal(!wrongUri.ok && wrongUri.status, 400)
  now += 6000
  const stale = auth.verify(req('REGISTER', 'sip:example.com', [answer(first, 1, { nc: '00000003' })]), realm, 'www', '10.0.0.5') as AuthResult
  t.equal(!stale.ok && stale.status, 401)
  t.match(!stale.ok && stale.headers[0]![1], /stale=true/)
  // wrong password: a new challenge (not stale), three times -> 403
  const ch = auth.verify(req('REGISTER', 'sip:example.com'), realm, 'www', '10.0.0.9') as AuthResult
  for (let i = 1; i <= 3; i++) {
    const r = auth.verify(req('REGISTER', 'sip:example.com', [answer(ch, 0, { password: 'nope', nc: '0000000' + i })]), realm, 'www', '10.0.0.9') as AuthResult
    if (i < 3) {
      t.equal(!r.ok && r.status, 401, `failure ${i}: re-challenged`)
      t.notMatch(!r.ok && r.headers[0]![1], /stale/)
    } else {
      t.equal(!r.ok && r.status, 403, 'failure 3: forbidden')
    }
  }
  const after = auth.verify(req('REGISTER', 'sip:example.com', [answer(ch, 0, { nc: '00000009' })]), realm, 'www', '10.0.0.9') as AuthResult
  t.equal(!after.ok && after.status, 403, 'still locked within the window')
  t.equal(auth.counters.forbidden, 2)
  const unknown = auth.verify(req('REGISTER', 'sip:example.com', [answer(first, 0, { user: 'mallory', nc: '00000004' }).replace(/nonce="[^"]+"/, `nonce="${(ch as { headers: Array<[string, string]> }).headers[0]![1].match(/nonce="([^"]+)"/)![1]}"`)]), realm, 'www', '10.0.0.7') as AuthResult
  t.equal(!unknown.ok && unknown.status, 401, 'unknown user: challenged')
})

t.test('algorithms: MD5 only when configured', async t => {
  const { auth } = makeAuth(t, Date.now, ', algorithms: [MD5]')
  const realm = auth.realmFor('example.com', 'REGISTER')!
  const r = auth.verify(req('REGISTER', 'sip:example.com'), realm, 'www', '1.2.3.4') as AuthResult
  t.equal(!r.ok && r.headers.length, 1)
  t.match(!r.ok && r.headers[0]![1], /algorithm=MD5/)
})

t.test('authorize (proxy): INVITE from a phone gets 407, then passes; AS sources trusted; From must match', async t => {
  const dir = t.testdir({ 'users.json': JSON.stringify({ users: { alice: 'secret' } }) })
  const config = parseConfig(`
domains: [example.com]
auth: { domains: { example.com: { users_file: ${join(dir, 'users.json')}, methods: [REGISTER, INVITE] } } }
dispatcher: { sets: { apps: { probe: false, destinations: [sip:127.0.0.2:5080] } } }
`) as FrozenConfig
  const core = { log, now: () => Date.now(), workerIndex: 0 } as unknown as CoreApi
  const auth = new AuthModule({ config, core, slot: 0, stores: null, module: () => undefined })
  const reg = { authorize: (m: SipMessage, s: Source) => auth.onArrival(m, s) }
  const phone = { transport: 'udp' as const, address: '10.0.0.5', port: 5060 }
  const r1 = reg.authorize(req('INVITE', 'sip:bob@example.com'), phone) as { status: number; headers: Array<[string, string]> }
  t.equal(r1.status, 407)
  t.equal(r1.headers[0]![0], 'Proxy-Authenticate')
  const ok = reg.authorize(req('INVITE', 'sip:bob@example.com', [answer({ ok: false, status: 407, reason: '', headers: r1.headers }, 1, { method: 'INVITE', uri: 'sip:bob@example.com', kind: 'Proxy-Authorization' })]), phone)
  t.equal(ok, null, 'authenticated INVITE goes on')
  const r2 = reg.authorize(req('INVITE', 'sip:bob@example.com'), { transport: 'udp', address: '127.0.0.2', port: 5080 })
  t.equal(r2, null, 'application server not challenged')
  t.equal(reg.authorize(req('OPTIONS', 'sip:bob@example.com'), phone), null, 'method not listed')
  t.equal(reg.authorize(req('INVITE', 'sip:bob@example.com', [], 'sip:x@elsewhere.org'), phone), null, 'foreign From domain: not ours to authenticate')
  const r3 = reg.authorize(req('INVITE', 'sip:bob@example.com', [], 'sip:carol@example.com'), phone) as { status: number; headers: Array<[string, string]> }
  const bad = reg.authorize(req('INVITE', 'sip:bob@example.com', [answer({ ok: false, status: 407, reason: '', headers: r3.headers }, 1, { method: 'INVITE', uri: 'sip:bob@example.com', kind: 'Proxy-Authorization' })], 'sip:carol@example.com'), phone) as { status: number }
  t.equal(bad.status, 403, 'alice authenticating as From carol')
})
