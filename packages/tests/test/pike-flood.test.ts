// Issue 14 item 3, "pike-flood-3": flood detection in the primary, over real sockets, on the
// `sipedge` command run with the issue's acceptance block (auth + pike) unchanged. Ports
// 25100-25119. Sources are loopback addresses 127.0.0.x; a UDP "backend" on 127.0.0.8 answers
// what is forwarded. Every loop is bounded in count and time; no wall-clock assertion.
import t from 'tap'
import { createHash } from 'node:crypto'
import { createSocket, type Socket as UdpSocket } from 'node:dgram'
import { connect as netConnect } from 'node:net'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { StreamClient, tempDir, sleep, until } from '@sipedge/tests'
import { startSipedge, http, sampleValue } from '../dist/ops.js'
import { parseExposition } from '../../metrics/test/fixtures/expo-parser.js'

const SIP = 25100
const HTTP = 25101
const BACKEND = 25108
const TOKEN = 'pike-flood-token-0123456789abcdef'
const api = `http://127.0.0.1:${HTTP}`

const tmp = tempDir('sipedge-pike-')
t.teardown(tmp.cleanup)
writeFileSync(join(tmp.dir, 'users.yaml'), 'phone01: secret01\nphone02: secret02\n')

const ACCEPTANCE = `auth:
  domains:
    example.com:
      users_file: ./users.yaml
      methods: [REGISTER, INVITE, MESSAGE, SUBSCRIBE]
pike:
  enabled: true
  window: 2s
  max_requests: 100
  ban_time: 60s
  allow: [127.0.0.2/32, 127.0.0.3/32]
  domains:
    bulk.example.com: { max_requests: 5000 }
`
const config = (extra = ''): string => `
workers: 2
listen: [udp:127.0.0.1:${SIP}, tcp:127.0.0.1:${SIP}]
domains: [example.com]
registrar: { store: "lmdb:${join(tmp.dir, 'store')}" }
timers: { t1: 100ms, t2: 1s, t4: 1s }
routes:
  - { match: { method: REGISTER, domain: example.com }, action: register }
  - { match: {}, action: { forward: "sip:127.0.0.8:${BACKEND}" } }
metrics: { listen: 127.0.0.1:${HTTP} }
admin: { token: ${TOKEN} }
${ACCEPTANCE}${extra}`

/** The backend: answers every request 200 and counts what reached it by source of the request's Via. */
class Backend {
  readonly sock: UdpSocket = createSocket('udp4')
  readonly seen = new Map<string, number>()
  constructor() {
    this.sock.on('message', (m, r) => {
      const text = m.toString('latin1')
      const lines = text.split('\r\n')
      if (lines[0]!.startsWith('SIP/2.0') || lines[0]!.startsWith('ACK ')) return
      // the UA's Via is the second one (ours is on top)
      const vias = lines.filter(l => /^(via|v)\s*:/i.test(l))
      const ua = /SIP\/2\.0\/\w+ ([0-9.]+)/.exec(vias[1] ?? '')?.[1] ?? '?'
      this.seen.set(ua, (this.seen.get(ua) ?? 0) + 1)
      const keep = lines.filter(l => /^(via|from|to|call-id|cseq|[vftik])\s*:/i.test(l))
      this.sock.send(Buffer.from(['SIP/2.0 200 OK', ...keep, 'Content-Length: 0', '', ''].join('\r\n'), 'latin1'), r.port, r.address)
    })
  }
  bind(): Promise<void> { return new Promise(r => this.sock.bind(BACKEND, '127.0.0.8', () => r())) }
}

let seq = 0
function request(method: string, ruri: string, addr: string, port: number, o: { transport?: string; from?: string; to?: string; callId?: string; headers?: string[] } = {}): string {
  seq++
  return [
    `${method} ${ruri} SIP/2.0`,
    `Via: SIP/2.0/${o.transport ?? 'UDP'} ${addr}:${port};branch=z9hG4bK-pk${seq}-${Date.now()};rport`,
    'Max-Forwards: 70',
    `From: <sip:${o.from ?? 'flood'}@example.com>;tag=f${seq}`,
    `To: <${o.to ?? ruri}>`,
    `Call-ID: ${o.callId ?? `pk-${seq}-${Date.now()}`}`,
    `CSeq: 1 ${method}`,
    ...(o.headers ?? []),
    'Content-Length: 0', '', ''].join('\r\n')
}

/** A UDP UA bound to addr that keeps the start lines it receives. */
class Ua {
  readonly sock = createSocket('udp4')
  readonly got: string[] = []
  port = 0
  constructor(readonly addr: string) { this.sock.on('message', m => { const s = m.toString('latin1'); this.got.push(s) }) }
  async bind(): Promise<this> { await new Promise<void>(r => this.sock.bind(0, this.addr, () => r())); this.port = this.sock.address().port; return this }
  send(text: string): void { this.sock.send(Buffer.from(text, 'latin1'), SIP, '127.0.0.1') }
  /** Sends `n` requests in bursts of 50 (a flood well inside one 2 s window). */
  async flood(n: number, ruri: string, method = 'INVITE'): Promise<void> {
    for (let i = 0; i < n; i++) {
      this.send(request(method, ruri, this.addr, this.port))
      if (i % 50 === 49) await sleep(5)
    }
  }
  /** A request and its first answer (any status), retransmitted like a UAC; undefined after ms. */
  async ask(method: string, ruri: string, ms = 4_000): Promise<string | undefined> {
    const callId = `ask-${++seq}-${Date.now()}`
    // a REGISTER names its address of record in To
    const text = request(method, ruri, this.addr, this.port, { callId, ...(method === 'REGISTER' ? { from: 'phone01', to: 'sip:phone01@example.com' } : {}) })
    const deadline = Date.now() + ms
    let next = 0
    while (Date.now() < deadline) {
      if (Date.now() >= next) { this.send(text); next = Date.now() + 500 }
      const r = this.got.find(g => g.includes(`Call-ID: ${callId}`) && !/^SIP\/2\.0 100 /.test(g))
      if (r !== undefined) return r.slice(0, r.indexOf('\r\n'))
      await sleep(20)
    }
    return undefined
  }
  close(): void { try { this.sock.close() } catch { /* closed */ } }
}

interface BanItem { address: string; reason: string; domain: string | null; origin: string; dropped: number; since: string; until: string; expiresInSeconds: number }
const bans = async (): Promise<BanItem[]> => ((await http('GET', `${api}/api/bans`, { token: TOKEN })).json as { items: BanItem[] }).items
const banOf = async (a: string): Promise<BanItem | undefined> => (await bans()).find(b => b.address === a)
async function metric(family: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const r = await http('GET', `${api}/metrics`)
  return sampleValue(parseExposition(r.text), family, name, labels)
}
const invitesSeen = (): Promise<number> => metric('sipedge_requests_received_total', 'sipedge_requests_received_total', { method: 'INVITE' })

const backend = new Backend()
await backend.bind()
t.teardown(() => backend.sock.close())
// users_file ./users.yaml is relative to the working directory of the process (the acceptance block is used unchanged)
const cwd = process.cwd()
process.chdir(tmp.dir)
const proc = await startSipedge(tmp.dir, 'pike.yaml', config()).finally(() => process.chdir(cwd))
t.teardown(() => proc.stop())
const uas: Ua[] = []
t.teardown(() => { for (const u of uas) u.close() })
const ua = async (addr: string): Promise<Ua> => { const u = await new Ua(addr).bind(); uas.push(u); return u }

t.test('pike-flood-3: an INVITE flood from one source is banned and dropped before any worker sees it; others are still answered', async t => {
  const legit = await ua('127.0.0.60')
  t.match(await legit.ask('REGISTER', 'sip:example.com'), /^SIP\/2\.0 401 /, 'a REGISTER from a quiet source is answered (challenge)')
  const invitesBefore = await invitesSeen()

  const flooder = await ua('127.0.0.50')
  await flooder.flood(400, 'sip:carol@example.com')
  t.ok(await until(async () => (await banOf('127.0.0.50')) !== undefined, 5_000), 'the flooding source is listed in GET /api/bans')
  const b = (await banOf('127.0.0.50'))!
  t.equal(b.reason, 'flood')
  t.equal(b.origin, 'pike')
  t.equal(b.domain, null)
  t.ok(b.expiresInSeconds > 50 && b.expiresInSeconds <= 60, `expires with ban_time 60s (${b.expiresInSeconds} s left)`)
  t.ok(Date.parse(b.until) - Date.parse(b.since) === 60_000, 'since + 60 s = until')
  // Workers count every frame they receive: at most the 100 under the threshold (plus the one
  // that crossed it is dropped) reached them; the other ~300 never entered a ring.
  await sleep(300)
  const reached = (await invitesSeen()) - invitesBefore
  t.ok(reached <= 101, `INVITEs that reached a worker: ${reached} of 400`)
  t.ok(reached >= 50, 'the ones under the threshold were handled')
  // read again: `b` was taken the moment the ban appeared, while the rest of the flood could still
  // sit in the socket buffer (CI 2026-12-07: 270 then, the metric read after the sleep had them all)
  const dropped = (await banOf('127.0.0.50'))!.dropped
  t.ok(dropped >= 299 - 1, `dropped unparsed and counted on the ban: ${dropped}`)
  t.ok(await metric('sipedge_pike_dropped_total', 'sipedge_pike_dropped_total') >= 299, 'sipedge_pike_dropped_total')
  t.ok(await metric('sipedge_bans_total', 'sipedge_bans_total', { reason: 'flood' }) >= 1, 'sipedge_bans_total{reason="flood"}')
  t.ok(await metric('sipedge_bans_active', 'sipedge_bans_active') >= 1, 'sipedge_bans_active')

  // the banned source gets nothing, while a REGISTER from another source is answered
  t.equal(await flooder.ask('OPTIONS', 'sip:127.0.0.1', 1_200), undefined, 'banned: no answer')
  t.match(await legit.ask('REGISTER', 'sip:example.com'), /^SIP\/2\.0 401 /, 'the quiet source is still answered')
  const allowed = await ua('127.0.0.2')
  t.match(await allowed.ask('REGISTER', 'sip:example.com'), /^SIP\/2\.0 401 /, 'an allow-listed source is answered')
})

t.test('pike-flood-3: a banned source\'s TCP connections are closed and new ones refused', async t => {
  const conn = await tcpFrom('127.0.0.51')
  t.teardown(() => conn.close())
  for (let i = 0; i < 300 && !conn.closed; i++) {
    conn.write(request('INVITE', 'sip:carol@example.com', '127.0.0.51', 5060, { transport: 'TCP' }))
    if (i % 50 === 49) await sleep(5)
  }
  t.ok(await conn.waitClosed(5_000), 'the connection that flooded is closed by the proxy')
  t.equal((await banOf('127.0.0.51'))?.reason, 'flood')
  const again = await tcpFrom('127.0.0.51')
  t.teardown(() => again.close())
  t.ok(await again.waitClosed(3_000), 'a new connection from the banned address is closed at once')
  const other = await tcpFrom('127.0.0.61')
  t.teardown(() => other.close())
  other.write(request('OPTIONS', 'sip:127.0.0.1', '127.0.0.61', 5060, { transport: 'TCP' }))
  const [r] = await other.waitFor(1, 5_000)
  t.equal(r?.status, 200, 'another source over TCP is answered')
})

t.test('pike-flood-3: a domain with a higher threshold is not banned at a rate that bans others; allow-listed sources never', async t => {
  const bulk = await ua('127.0.0.70')
  await bulk.flood(300, 'sip:feed@bulk.example.com', 'NOTIFY')
  const allowed = await ua('127.0.0.3')
  await allowed.flood(300, 'sip:carol@example.com')
  await sleep(500)
  t.equal(await banOf('127.0.0.70'), undefined, '300 requests to bulk.example.com in a window: under its 5000')
  t.equal(await banOf('127.0.0.3'), undefined, '300 INVITEs from an allow-listed source: never banned')
  t.match(await bulk.ask('OPTIONS', 'sip:127.0.0.1'), /^SIP\/2\.0 200 /, 'the bulk source is still answered')
  t.match(await allowed.ask('OPTIONS', 'sip:127.0.0.1'), /^SIP\/2\.0 200 /, 'the allow-listed source is still answered')
  t.ok((backend.seen.get('127.0.0.70') ?? 0) >= 250, `the bulk requests were forwarded (${backend.seen.get('127.0.0.70') ?? 0})`)
})

t.test('pike-flood-3: a worker\'s auth ban (spraying guesses across users) becomes a primary ban with its reason', async t => {
  const sprayer = await ua('127.0.0.80')
  const md5 = (s: string): string => createHash('md5').update(s).digest('hex')
  // auth.throttle defaults: banned after failures against 10 distinct users (or 30 failures)
  for (let u = 0; u < 12 && (await banOf('127.0.0.80')) === undefined; u++) {
    const user = `guess${u}`
    const ch = sprayer.got.length
    const callId = `spray-${u}-${Date.now()}`
    const to = `sip:${user}@example.com`
    sprayer.send(request('REGISTER', 'sip:example.com', sprayer.addr, sprayer.port, { from: user, to, callId }))
    await until(() => sprayer.got.length > ch, 2_000)
    const md5Challenge = (sprayer.got[ch] ?? '').split('\r\n').find(l => /^WWW-Authenticate:.*algorithm=MD5/i.test(l)) ?? ''
    const nonce = /nonce="([^"]+)"/.exec(md5Challenge)?.[1]
    if (nonce === undefined) continue
    const resp = md5(`${md5(`${user}:example.com:wrong`)}:${nonce}:00000001:cn:auth:${md5('REGISTER:sip:example.com')}`)
    sprayer.send(request('REGISTER', 'sip:example.com', sprayer.addr, sprayer.port, { from: user, to, callId, headers: [
      `Authorization: Digest username="${user}", realm="example.com", nonce="${nonce}", uri="sip:example.com", response="${resp}", algorithm=MD5, qop=auth, nc=00000001, cnonce="cn"`,
    ] }))
    await until(() => sprayer.got.length > ch + 1, 2_000)
  }
  t.ok(await until(async () => (await banOf('127.0.0.80')) !== undefined, 5_000), 'listed in GET /api/bans')
  const b = (await banOf('127.0.0.80'))!
  t.equal(b.reason, 'auth')
  t.equal(b.origin, 'worker')
  const dropped = await metric('sipedge_pike_dropped_total', 'sipedge_pike_dropped_total')
  t.equal(await sprayer.ask('REGISTER', 'sip:example.com', 1_200), undefined, 'its requests get nothing')
  t.ok(await metric('sipedge_pike_dropped_total', 'sipedge_pike_dropped_total') > dropped, 'dropped by the primary, before the workers')
})

t.test('pike-flood-3: DELETE /api/bans/ADDRESS lifts a ban; a reloaded ban_time applies and a ban expires', async t => {
  const del = (a: string) => http('DELETE', `${api}/api/bans/${encodeURIComponent(a)}`, { token: TOKEN })
  t.equal((await http('DELETE', `${api}/api/bans/127.0.0.50`)).status, 401, 'no token: 401')
  t.equal((await http('DELETE', `${api}/api/bans/127.0.0.50`, { token: TOKEN, body: undefined, ms: 5_000 })).status, 200, 'lifted')
  t.equal(await banOf('127.0.0.50'), undefined, 'no longer listed')
  t.equal((await del('127.0.0.50')).status, 404, 'lifting it again: 404')
  const was = uas.find(u => u.addr === '127.0.0.50')!
  t.match(await was.ask('OPTIONS', 'sip:127.0.0.1'), /^SIP\/2\.0 200 /, 'the lifted source is answered again')
  t.equal((await del('127.0.0.80')).status, 200, 'the auth ban is lifted too (primary, store and workers)')
  t.match(await uas.find(u => u.addr === '127.0.0.80')!.ask('OPTIONS', 'sip:127.0.0.1'), /^SIP\/2\.0 200 /, 'and that source is answered again')

  // SIGHUP with ban_time 2s: applied without a restart
  writeFileSync(proc.file, config().replace('ban_time: 60s', 'ban_time: 2s'))
  proc.child.kill('SIGHUP')
  t.ok(await until(() => /"generation":2/.test(proc.output()), 10_000), 'reloaded')
  t.notMatch(proc.output(), /restartNeededFor":\[[^\]]*pike/, 'pike needs no restart')
  const short = await ua('127.0.0.52')
  await short.flood(200, 'sip:carol@example.com')
  t.ok(await until(async () => (await banOf('127.0.0.52')) !== undefined, 5_000), 'banned')
  const b = (await banOf('127.0.0.52'))!
  t.equal(Date.parse(b.until) - Date.parse(b.since), 2_000, 'for the reloaded ban_time')
  t.ok(await until(async () => (await banOf('127.0.0.52')) === undefined, 8_000), 'the ban expires')
  t.match(await short.ask('OPTIONS', 'sip:127.0.0.1'), /^SIP\/2\.0 200 /, 'and the source is answered again')
})

async function tcpFrom(localAddress: string): Promise<StreamClient> {
  const s = netConnect({ port: SIP, host: '127.0.0.1', localAddress })
  await new Promise<void>((resolve, reject) => { s.once('connect', resolve); s.once('error', reject) })
  return new StreamClient(s)
}
