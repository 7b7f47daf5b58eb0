// The metrics/admin listener over real HTTP on 127.0.0.1.
import { connect } from 'node:net'
import t from 'tap'
import { AdminError, createMetricsRegistry, isLoopback, startHttpServer, type AdminBackend, type HttpServer } from '../dist/index.js'
import { parseExposition } from './fixtures/expo-parser.js'

const TOKEN = 'secret-token-0123456789'

function backend(calls: string[]): AdminBackend {
  return {
    ready: async () => ({ ready: false, reasons: ['draining'] }),
    stats: async () => ({ workers: 2 }),
    registrations: async q => { calls.push(`regs ${JSON.stringify(q)}`); return { items: [{ aor: 'sip:a@x', bindings: [] }], next: 'c2' } },
    dialogCounts: async () => ({ total: 1, bySet: { pbx: 1 } }),
    dialog: async id => (id === 'abc@host' ? { callId: id } : null),
    dispatcher: async () => ({ sets: [] }),
    setDestinationState: async (set, uri, action) => {
      calls.push(`dest ${set} ${uri} ${action}`)
      if (set !== 'pbx') throw new AdminError('ERR_ADMIN_NOT_FOUND', 'no such set', 404)
      return { uri, state: action === 'drain' ? 'draining' : 'active' }
    },
    bans: async () => { throw Object.assign(new Error('store unreachable'), { code: 'ERR_STORE_DOWN' }) },
    unban: async a => a === '192.0.2.1',
    reload: async () => ({ ok: false, generation: 1, errors: [{ code: 'ERR_CONFIG_TYPE', message: 'x' }] }),
    // slow, to abort mid-way
    dialogCountsSlow: undefined,
    stats2: undefined,
  } as AdminBackend
}

let server: HttpServer
let base: string
const calls: string[] = []
t.before(async () => {
  const b = backend(calls)
  b.stats = () => new Promise(resolve => setTimeout(() => resolve({ workers: 2 }), 150))
  server = await startHttpServer({
    listen: { address: '127.0.0.1', port: 0 },
    metrics: { registry: createMetricsRegistry(), path: '/metrics' },
    admin: { backend: b, token: TOKEN },
    maxBodyBytes: 1024,
  })
  base = `http://127.0.0.1:${server.port}`
})
t.teardown(() => server.close())

const auth = { authorization: `Bearer ${TOKEN}` }

t.test('GET /metrics: Prometheus text, no auth needed', async t => {
  const r = await fetch(`${base}/metrics`)
  t.equal(r.status, 200)
  t.equal(r.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8')
  t.ok(parseExposition(await r.text()).has('sipedge_ready'))
})

t.test('bearer token on /api', async t => {
  let r = await fetch(`${base}/api/dialogs`)
  t.equal(r.status, 401)
  t.same(((await r.json()) as { error: { code: string } }).error.code, 'ERR_ADMIN_UNAUTHORIZED')
  t.match(r.headers.get('www-authenticate') ?? '', /^Bearer/)
  r = await fetch(`${base}/api/dialogs`, { headers: { authorization: 'Bearer wrong-token-0123456789' } })
  t.equal(r.status, 401)
  r = await fetch(`${base}/api/dialogs`, { headers: auth })
  t.equal(r.status, 200)
  t.same(await r.json(), { total: 1, bySet: { pbx: 1 } })
  t.match(r.headers.get('content-type') ?? '', /^application\/json/)
  r = await fetch(`${base}/api/nothing-here`)
  t.equal(r.status, 401, 'unknown /api paths do not reveal themselves without the token')
})

t.test('health and ready need no token', async t => {
  let r = await fetch(`${base}/health`)
  t.equal(r.status, 200)
  t.equal(((await r.json()) as { status: string }).status, 'ok')
  r = await fetch(`${base}/ready`)
  t.equal(r.status, 503)
  t.same(await r.json(), { ready: false, reasons: ['draining'] })
})

t.test('routing: 404 and 405', async t => {
  let r = await fetch(`${base}/nope`)
  t.equal(r.status, 404)
  t.equal(((await r.json()) as { error: { code: string } }).error.code, 'ERR_ADMIN_NOT_FOUND')
  r = await fetch(`${base}/metrics`, { method: 'POST' })
  t.equal(r.status, 405)
  t.equal(r.headers.get('allow'), 'GET')
  r = await fetch(`${base}/api/reload`, { headers: auth })
  t.equal(r.status, 405)
  r = await fetch(`${base}/api/dialogs/nope%40host`, { headers: auth })
  t.equal(r.status, 404)
  r = await fetch(`${base}/api/dialogs/abc%40host`, { headers: auth })
  t.same(await r.json(), { callId: 'abc@host' })
})

t.test('registrations paging parameters', async t => {
  let r = await fetch(`${base}/api/registrations?aor=sip%3Aa%40x&cursor=c1&limit=2`, { headers: auth })
  t.same(await r.json(), { items: [{ aor: 'sip:a@x', bindings: [] }], next: 'c2' })
  t.equal(calls.at(-1), 'regs {"limit":2,"aor":"sip:a@x","cursor":"c1"}')
  r = await fetch(`${base}/api/registrations`, { headers: auth })
  t.equal(calls.at(-1), 'regs {"limit":100}')
  r = await fetch(`${base}/api/registrations?limit=0`, { headers: auth })
  t.equal(r.status, 400)
})

t.test('dispatcher actions with raw or encoded URIs', async t => {
  let r = await fetch(`${base}/api/dispatcher/pbx/sip:127.0.0.2:5070/drain`, { method: 'POST', headers: auth })
  t.equal(r.status, 200)
  t.same(await r.json(), { uri: 'sip:127.0.0.2:5070', state: 'draining' })
  r = await fetch(`${base}/api/dispatcher/pbx/${encodeURIComponent('sip:127.0.0.3:5070;transport=tcp')}/enable`, { method: 'POST', headers: auth })
  t.equal(r.status, 200)
  t.equal(calls.at(-1), 'dest pbx sip:127.0.0.3:5070;transport=tcp enable')
  r = await fetch(`${base}/api/dispatcher/other/sip:x/disable`, { method: 'POST', headers: auth })
  t.equal(r.status, 404, 'AdminError keeps its status')
  t.equal(((await r.json()) as { error: { code: string } }).error.code, 'ERR_ADMIN_NOT_FOUND')
  r = await fetch(`${base}/api/dispatcher/pbx/sip:x/explode`, { method: 'POST', headers: auth })
  t.equal(r.status, 404)
  r = await fetch(`${base}/api/dispatcher/pbx/%E0%A4%A/drain`, { method: 'POST', headers: auth })
  t.equal(r.status, 400)
})

t.test('backend errors become JSON 500s; bans; reload', async t => {
  let r = await fetch(`${base}/api/bans`, { headers: auth })
  t.equal(r.status, 500)
  t.same(await r.json(), { error: { code: 'ERR_STORE_DOWN', message: 'store unreachable' } })
  r = await fetch(`${base}/api/bans/192.0.2.1`, { method: 'DELETE', headers: auth })
  t.equal(r.status, 200)
  r = await fetch(`${base}/api/bans/192.0.2.9`, { method: 'DELETE', headers: auth })
  t.equal(r.status, 404)
  r = await fetch(`${base}/api/reload`, { method: 'POST', headers: auth })
  t.equal(r.status, 400)
  const body = (await r.json()) as { error: { code: string }; errors: unknown[] }
  t.equal(body.error.code, 'ERR_CONFIG_INVALID')
  t.equal(body.errors.length, 1)
  r = await fetch(`${base}/api/trace`, { headers: auth })
  t.equal(r.status, 501, 'optional backend method missing')
})

t.test('request bodies: JSON checked, size limited', async t => {
  const b = backend([])
  let filters = { callIds: [] as string[], sources: [] as string[] }
  b.traceFilters = async () => filters
  b.setTraceFilters = async f => (filters = f)
  const s = await startHttpServer({ listen: { address: '127.0.0.1', port: 0 }, admin: { backend: b } })
  t.teardown(() => s.close())
  const u = `http://127.0.0.1:${s.port}/api/trace`
  let r = await fetch(u, { method: 'PUT', body: JSON.stringify({ callIds: ['a@b'] }) })
  t.same(await r.json(), { callIds: ['a@b'], sources: [] })
  r = await fetch(u, { method: 'PUT', body: '{nope' })
  t.equal(r.status, 400)
  r = await fetch(u, { method: 'PUT', body: JSON.stringify({ callIds: 'x'.repeat(70_000) }) })
  t.equal(r.status, 413)
  r = await fetch(u, { method: 'PUT', body: JSON.stringify({ callIds: [1] }) })
  t.equal(r.status, 400)
  r = await fetch(u, { method: 'DELETE' })
  t.same(await r.json(), { callIds: [], sources: [] })
  r = await fetch(`http://127.0.0.1:${s.port}/metrics`)
  t.equal(r.status, 404, 'no metrics route when not asked for')
})

t.test('an aborted request does not crash the server', async t => {
  // /api/stats answers after 150 ms; the client goes away after 20 ms
  await new Promise<void>((resolve, reject) => {
    const sock = connect(server.port, '127.0.0.1', () => {
      sock.write(`GET /api/stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`)
      setTimeout(() => { sock.destroy(); resolve() }, 20)
    })
    sock.on('error', reject)
  })
  // a POST whose body never completes, then aborted
  await new Promise<void>(resolve => {
    const sock = connect(server.port, '127.0.0.1', () => {
      sock.write(`PUT /api/trace HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Length: 100\r\n\r\n{"call`)
      setTimeout(() => { sock.destroy(); resolve() }, 20)
    })
  })
  await new Promise(r => setTimeout(r, 250))
  const r = await fetch(`${base}/api/stats`, { headers: auth })
  t.equal(r.status, 200)
  t.same(await r.json(), { workers: 2 })
})

t.test('listen errors and loopback rule', async t => {
  await t.rejects(startHttpServer({ listen: { address: '127.0.0.1', port: server.port }, metrics: { registry: createMetricsRegistry() } }), { code: 'ERR_METRICS_LISTEN' })
  t.ok(isLoopback('127.0.0.1'))
  t.ok(isLoopback('::1'))
  t.notOk(isLoopback('0.0.0.0'))
  t.notOk(isLoopback('192.0.2.10'))
})
