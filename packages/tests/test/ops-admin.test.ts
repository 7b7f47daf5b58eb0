// The admin HTTP API on the running product (ports 21100-21199): `sipedge` as a child process,
// metrics and admin on two listeners. Bearer token, health/readiness, stats, dispatcher actions
// taking effect in the workers, bans/registrations from the store, trace filters, and reloads:
// a bad file is refused with its errors and the old configuration keeps running; a good one
// bumps the generation (log line and sipedge_config_generation).
import t from 'tap'
import { writeFileSync } from 'node:fs'
import { tempDir, UdpClient, sipRequest, waitForOutput } from '@sipedge/tests'
import { startSipedge, http, sampleValue } from '../dist/ops.js'
import { parseExposition } from '../../metrics/test/fixtures/expo-parser.js'

const SIP = 21100
const METRICS = 21101
const ADMIN = 21102
const TOKEN = 'ops-admin-token-0123456789abcdef'
const api = `http://127.0.0.1:${ADMIN}`
const D1 = 'sip:127.0.0.2:21110'
const D2 = 'sip:127.0.0.2:21111'

const tmp = tempDir()
t.teardown(tmp.cleanup)

const config = (domains: string): string => `
workers: 2
listen: [udp:127.0.0.1:${SIP}]
domains: [${domains}]
registrar: { store: "lmdb:${tmp.dir}/store" }
dispatcher:
  sets:
    apps:
      algorithm: round-robin
      probe: false
      destinations: [${D1}, ${D2}]
routes:
  - name: apps
    match: { method: INVITE }
    action: { dispatch: apps }
metrics: { listen: 127.0.0.1:${METRICS} }
admin: { listen: 127.0.0.1:${ADMIN}, token: ${TOKEN} }
`

const proc = await startSipedge(tmp.dir, 'admin.yaml', config('127.0.0.1'))
t.teardown(() => proc.stop())
/** token null: no Authorization header. */
const get = (path: string, token: string | null = TOKEN) => http('GET', api + path, token === null ? {} : { token })
const post = (path: string, token: string | null = TOKEN) => http('POST', api + path, token === null ? {} : { token })

async function generationMetric(): Promise<number> {
  const r = await http('GET', `http://127.0.0.1:${METRICS}/metrics`)
  return sampleValue(parseExposition(r.text), 'sipedge_config_generation', 'sipedge_config_generation')
}

async function destState(uri: string): Promise<string | undefined> {
  const r = await get('/api/dispatcher')
  const sets = (r.json as { sets: Array<{ name: string; destinations: Array<{ uri: string; state: string }> }> }).sets
  return sets.find(s => s.name === 'apps')?.destinations.find(d => d.uri === uri)?.state
}

t.test('authentication: /api needs the bearer token, /health and /ready do not', async t => {
  const none = await get('/api/stats', null)
  t.equal(none.status, 401)
  t.equal((none.json as { error: { code: string } }).error.code, 'ERR_ADMIN_UNAUTHORIZED')
  t.equal((await get('/api/stats', 'wrong-token-wrong-token-wrong')).status, 401)
  t.equal((await post('/api/reload', null)).status, 401, 'no reload without the token')
  const h = await get('/health', null)
  t.equal(h.status, 200)
  t.equal((h.json as { status: string }).status, 'ok')
  const r = await get('/ready', null)
  t.equal(r.status, 200)
  t.same(r.json, { ready: true, reasons: [] })
  const onMetrics = (await http('GET', `http://127.0.0.1:${METRICS}/api/stats`, { token: TOKEN })).status
  t.ok(onMetrics === 403 || onMetrics === 404, `the metrics listener serves no admin routes (${onMetrics})`)
  t.equal((await http('GET', `${api}/metrics`)).status, 404, 'the admin listener serves no metrics')
})

t.test('stats: engine counters, rings and every worker answer', async t => {
  const c = new UdpClient()
  await c.bind()
  t.teardown(() => c.close())
  t.equal((await c.request(sipRequest(), SIP)).status, 200)
  const r = await get('/api/stats')
  t.equal(r.status, 200)
  const s = r.json as { generation: number; state: string; counters: { udpIn: number }; rings: unknown[]; workers: Array<{ worker: number; proxy?: { requestsIn: number } }> }
  t.equal(s.generation, 1)
  t.equal(s.state, 'running')
  t.ok(s.counters.udpIn >= 1)
  t.equal(s.rings.length, 4, 'in and out ring per worker')
  t.same(s.workers.map(w => w.worker), [0, 1])
  t.equal(s.workers.reduce((n, w) => n + (w.proxy?.requestsIn ?? 0), 0) >= 1, true, 'proxy counters from the workers')
})

t.test('dispatcher: destinations listed; drain and enable take effect in the workers', async t => {
  const r = await get('/api/dispatcher')
  t.equal(r.status, 200)
  const sets = (r.json as { sets: Array<{ name: string; algorithm: string; destinations: Array<{ uri: string; state: string }> }> }).sets
  t.same(sets.map(s => s.name), ['apps'])
  t.same(sets[0]!.destinations.map(d => [d.uri, d.state]), [[D1, 'active'], [D2, 'active']])

  const drained = await post(`/api/dispatcher/apps/${D1}/drain`)
  t.equal(drained.status, 200, drained.text)
  t.equal((drained.json as { state: string }).state, 'draining', 'answer carries the new state')
  t.equal(await destState(D1), 'draining', 'GET shows draining')
  t.equal(await destState(D2), 'active')
  const enc = await post(`/api/dispatcher/apps/${encodeURIComponent(D1)}/enable`)
  t.equal(enc.status, 200, 'percent-encoded URI accepted')
  t.equal(await destState(D1), 'active')
  t.equal((await post('/api/dispatcher/apps/sip:10.9.9.9:5060/drain')).status, 404, 'unknown destination')
  t.equal((await post(`/api/dispatcher/nosuchset/${D1}/drain`)).status, 404, 'unknown set')
})

t.test('registrations, dialogs, bans', async t => {
  const r = await get('/api/registrations?limit=10')
  t.equal(r.status, 200, r.text)
  t.same(r.json, { items: [], next: null })
  t.equal((await get('/api/registrations?limit=0')).status, 400)
  const one = await get(`/api/registrations?aor=${encodeURIComponent('sip:nobody@127.0.0.1')}`)
  t.same(one.json, { items: [], next: null })
  const d = await get('/api/dialogs')
  t.equal(d.status, 200)
  t.equal((d.json as { total: number }).total, 0)
  const b = await get('/api/bans')
  t.equal(b.status, 200)
  t.same(b.json, { items: [] })
  t.equal((await http('DELETE', `${api}/api/bans/192.0.2.1`, { token: TOKEN })).status, 404, 'lifting a ban that does not exist')
})

t.test('trace filters: set, read back, clear', async t => {
  const put = await http('PUT', `${api}/api/trace`, { token: TOKEN, body: { callIds: ['abc@test'], sources: ['127.0.0.9'] } })
  t.equal(put.status, 200)
  t.same(put.json, { callIds: ['abc@test'], sources: ['127.0.0.9'] })
  t.same((await get('/api/trace')).json, { callIds: ['abc@test'], sources: ['127.0.0.9'] })
  t.same((await http('DELETE', `${api}/api/trace`, { token: TOKEN })).json, { callIds: [], sources: [] })
})

t.test('reload: a bad file is refused and the old configuration stays; a good one bumps the generation', async t => {
  t.equal(await generationMetric(), 1)
  writeFileSync(proc.file, config('127.0.0.1').replace('algorithm: round-robin', 'algorithm: bogus-algorithm'))
  const rejected = waitForOutput(proc.child, /configuration reload rejected/)
  const bad = await post('/api/reload')
  t.equal(bad.status, 400)
  const body = bad.json as { ok: boolean; generation: number; error: { code: string }; errors: Array<{ code: string; message: string; path?: string }> }
  t.equal(body.ok, false)
  t.equal(body.error.code, 'ERR_CONFIG_INVALID')
  t.equal(body.generation, 1, 'generation unchanged')
  t.ok(body.errors.some(e => e.path === 'dispatcher.sets.apps.algorithm'), 'the error names the key')
  t.match(await rejected, /admin\.yaml:\d+:\d+/)
  t.equal(await generationMetric(), 1, 'sipedge_config_generation unchanged')
  const c = new UdpClient()
  await c.bind()
  t.teardown(() => c.close())
  t.equal((await c.request(sipRequest(), SIP)).status, 200, 'still serving with the old configuration')
  t.equal(await destState(D1), 'active', 'old dispatcher still in force')

  // good file: a new domain and one destination less
  writeFileSync(proc.file, config('127.0.0.1, reloaded.example').replace(`, ${D2}]`, ']'))
  const reloaded = waitForOutput(proc.child, /"msg":"configuration reloaded"/)
  const ok = await post('/api/reload')
  t.equal(ok.status, 200, ok.text)
  t.same(ok.json, { ok: true, generation: 2 })
  t.match(await reloaded, /"generation":2/, 'log line says what is live')
  t.equal(await generationMetric(), 2, 'sipedge_config_generation')
  t.equal(((await get('/api/stats')).json as { generation: number }).generation, 2)
  t.equal(await destState(D2), undefined, 'the workers run the new dispatcher')
  t.equal((await c.request(sipRequest({ uri: 'sip:reloaded.example' }), SIP)).status, 200, 'the new domain is ours')
  const m = await http('GET', `http://127.0.0.1:${METRICS}/metrics`)
  const f = parseExposition(m.text)
  t.equal(sampleValue(f, 'sipedge_config_reloads_total', 'sipedge_config_reloads_total', { result: 'ok' }), 1)
  t.equal(sampleValue(f, 'sipedge_config_reloads_total', 'sipedge_config_reloads_total', { result: 'error' }), 1)
})

t.test('SIGTERM: exit 0 with the last lines written', async t => {
  const { code } = await proc.stop()
  t.equal(code, 0)
  t.match(proc.output(), /"msg":"exit"/)
})
