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
/** What a state-changing request carries: the token and a JSON body type. */
const authJson = { ...auth, 'content-type': 'application/json' }

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
  let r = await fetch(`${base}/api/dispatcher/pbx/sip:127.0.0.2:5070/drain`, { method: 'POST', headers: authJson })
  t.equal(r.status, 200)
  t.same(await r.json(), { uri: 'sip:127.0.0.2:5070', state: 'draining' })
  r = await fetch(`${base}/api/dispatcher/pbx/${encodeURIComponent('sip:127.0.0.3:5070;transport=tcp')}/enable`, { method: 'POST', headers: authJson })
  t.equal(r.status, 200)
  t.equal(calls.at(-1), 'dest pbx sip:127.0.0.3:5070;transport=tcp enable')
  r = await fetch(`${base}/api/dispatcher/other/sip:x/disable`, { method: 'POST', headers: authJson })
  t.equal(r.status, 404, 'AdminError keeps its status')
  t.equal(((await r.json()) as { error: { code: string } }).error.code, 'ERR_ADMIN_NOT_FOUND')
  r = await fetch(`${base}/api/dispatcher/pbx/sip:x/explode`, { method: 'POST', headers: authJson })
  t.equal(r.status, 404)
  r = await fetch(`${base}/api/dispatcher/pbx/%E0%A4%A/drain`, { method: 'POST', headers: authJson })
  t.equal(r.status, 400)
})

t.test('backend errors become JSON 500s; bans; reload', async t => {
  let r = await fetch(`${base}/api/bans`, { headers: auth })
  t.equal(r.status, 500)
  t.same(await r.json(), { error: { code: 'ERR_STORE_DOWN', message: 'store unreachable' } })
  r = await fetch(`${base}/api/bans/192.0.2.1`, { method: 'DELETE', headers: authJson })
  t.equal(r.status, 200)
  r = await fetch(`${base}/api/bans/192.0.2.9`, { method: 'DELETE', headers: authJson })
  t.equal(r.status, 404)
  r = await fetch(`${base}/api/reload`, { method: 'POST', headers: authJson })
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
  const s = await startHttpServer({ listen: { address: '127.0.0.1', port: 0 }, admin: { backend: b, token: TOKEN } })
  t.teardown(() => s.close())
  const u = `http://127.0.0.1:${s.port}/api/trace`
  let r = await fetch(u, { method: 'PUT', headers: authJson, body: JSON.stringify({ callIds: ['a@b'] }) })
  t.same(await r.json(), { callIds: ['a@b'], sources: [] })
  r = await fetch(u, { method: 'PUT', headers: authJson, body: '{nope' })
  t.equal(r.status, 400)
  r = await fetch(u, { method: 'PUT', headers: authJson, body: JSON.stringify({ callIds: 'x'.repeat(70_000) }) })
  t.equal(r.status, 413)
  r = await fetch(u, { method: 'PUT', headers: authJson, body: JSON.stringify({ callIds: [1] }) })
  t.equal(r.status, 400)
  r = await fetch(u, { method: 'DELETE', headers: authJson })
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
      sock.write(`PUT /api/trace HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"call`)
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

t.test('garbage and half requests: 400, 431 or 408, and the listener keeps serving', async t => {
  const raw = (bytes: string): Promise<string> => new Promise(resolve => {
    let got = ''
    const sock = connect(server.port, '127.0.0.1', () => sock.write(bytes))
    sock.on('data', d => { got += d.toString() })
    sock.on('close', () => resolve(got))
    sock.on('error', () => resolve(got))
    setTimeout(() => sock.destroy(), 2000)
  })
  t.match(await raw('NOT HTTP AT ALL\r\n\r\n'), /^HTTP\/1\.1 400/, 'garbage: 400')
  t.match(await raw(`GET /api/stats HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n`), /^HTTP\/1\.1 400/, 'bad Content-Length: 400')
  t.match(await raw(`GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20000)}\r\n\r\n`), /^HTTP\/1\.1 431 /, 'oversized headers: 431')
  const r = await fetch(`${base}/metrics`)
  t.equal(r.status, 200, 'still serving')
})

t.test('a client that never finishes its headers gets 408 and is cut off (slowloris)', async t => {
  // node checks the headers timeout (10 s here) on its 30 s connection sweep: within 40 s, bounded at 50
  const got = await new Promise<string>(resolve => {
    let text = ''
    const sock = connect(server.port, '127.0.0.1', () => sock.write('GET /metrics HTTP/1.1\r\nHost: x\r\n'))
    sock.on('data', d => { text += d.toString() })
    sock.on('close', () => resolve(text))
    sock.on('error', () => resolve(text))
    setTimeout(() => { sock.destroy(); resolve(`still open after 50 s: ${text}`) }, 50_000).unref()
  })
  t.match(got, /^HTTP\/1\.1 408 /, 'cut off with 408')
  t.equal((await fetch(`${base}/metrics`)).status, 200, 'still serving')
})

t.test('an idle listener does not wake its thread (issue 17: no timer of its own)', { skip: process.platform !== 'linux' && 'reads /proc/PID/status' }, async t => {
  // uWebSockets.js woke the thread once a second for its Date header timer; node:http has only a
  // 30 s connection check. A child process runs only the listener (this process has HTTP clients
  // with timers of their own); its main thread's voluntary context switches over 6 s: a count,
  // not a time.
  const { spawn } = await import('node:child_process')
  const { readFileSync } = await import('node:fs')
  const entry = new URL('../dist/index.js', import.meta.url).href
  const child = spawn(process.execPath, ['--input-type=module', '-e', `
    const m = await import(${JSON.stringify(entry)})
    const s = await m.startHttpServer({ listen: { address: '127.0.0.1', port: 0 }, metrics: { registry: m.createMetricsRegistry() } })
    process.stdout.write('ready ' + s.port + '\\n')
    process.stdin.on('data', () => { s.close(); process.exit(0) })
  `], { stdio: ['pipe', 'pipe', 'inherit'] })
  t.teardown(() => child.kill())
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => { const m = /ready (\d+)/.exec(d.toString()); if (m) resolve(Number(m[1])) })
    child.once('exit', code => reject(new Error(`listener exited (${code})`)))
  })
  t.equal((await fetch(`http://127.0.0.1:${port}/metrics`, { headers: { connection: 'close' } })).status, 200, 'serving')
  const switches = (): number => Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/task/${child.pid}/status`, 'utf8'))![1])
  // 1 s for start-up's garbage collection tasks, then 6 s: the uWS listener woke 7 times in it,
  // this one 0 or 1
  await new Promise(r => setTimeout(r, 1000))
  const before = switches()
  await new Promise(r => setTimeout(r, 6000))
  const woke = switches() - before
  t.ok(woke <= 3, `the listener's thread woke ${woke} times in 6 s`)
  child.stdin.write('x')
})

// ------------------------------------------------------------------ issue 14: safe on a public address

/** A listener with a backend that records every state change, to prove refused requests change nothing. */
async function recorder(t: { teardown(fn: () => void): void }, address = '127.0.0.1'): Promise<{ base: string; port: number; changes: string[] }> {
  const changes: string[] = []
  const b = backend(changes)
  b.reload = async () => { changes.push('reload'); return { ok: true, generation: 2 } }
  b.setTraceFilters = async f => { changes.push(`trace ${JSON.stringify(f)}`); return f }
  b.traceFilters = async () => ({ callIds: [], sources: [] })
  b.reopenLogs = async () => { changes.push('reopen') }
  const s = await startHttpServer({ listen: { address, port: 0 }, metrics: { registry: createMetricsRegistry() }, admin: { backend: b, token: TOKEN } })
  t.teardown(() => s.close())
  return { base: `http://127.0.0.1:${s.port}`, port: s.port, changes }
}

t.test('admin-open-by-default: no admin API without a token; /api needs it, /metrics /health /ready do not', async t => {
  const b = backend([])
  for (const token of [undefined, null, '', 'too-short']) {
    await t.rejects(startHttpServer({ listen: { address: '127.0.0.1', port: 0 }, admin: { backend: b, token: token as unknown as string } }),
      { code: 'ERR_ADMIN_NO_TOKEN' }, `token ${JSON.stringify(token)}`)
  }
  const { base, changes } = await recorder(t)
  for (const [method, path] of [['GET', '/api/stats'], ['GET', '/api/registrations'], ['PUT', '/api/trace'], ['POST', '/api/reload']] as const) {
    const body = method === 'GET' ? undefined : '{"callIds":["x"]}'
    let r = await fetch(base + path, { method, headers: { 'content-type': 'application/json' }, ...(body !== undefined ? { body } : {}) })
    t.equal(r.status, 401, `${method} ${path} without a token`)
    t.equal(((await r.json()) as { error: { code: string } }).error.code, 'ERR_ADMIN_UNAUTHORIZED')
    r = await fetch(base + path, { method, headers: { 'content-type': 'application/json', authorization: 'Bearer wrong-token-0123456789' }, ...(body !== undefined ? { body } : {}) })
    t.equal(r.status, 401, `${method} ${path} with a wrong token`)
    await r.arrayBuffer()
    r = await fetch(base + path, { method, headers: { 'content-type': 'application/json', authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` }, ...(body !== undefined ? { body } : {}) })
    t.equal(r.status, 401, `${method} ${path}: only the Bearer scheme`)
    await r.arrayBuffer()
    r = await fetch(base + path, { method, headers: authJson, ...(body !== undefined ? { body } : {}) })
    t.equal(r.status, 200, `${method} ${path} with the token`)
    await r.arrayBuffer()
  }
  t.same(changes.filter(c => c === 'reload' || c.startsWith('trace')), ['trace {"callIds":["x"],"sources":[]}', 'reload'], 'only the authorised requests changed anything')
  for (const path of ['/metrics', '/health', '/ready']) {
    const r = await fetch(base + path)
    t.ok(r.status === 200 || r.status === 503, `${path} readable without a token (${r.status})`)
    await r.arrayBuffer()
  }
})

t.test('admin-cross-origin-post: a browser on another origin cannot drive the API', async t => {
  const { base, port, changes } = await recorder(t)
  const before = changes.length
  // what an HTML form on any web page can send to 127.0.0.1 without a CORS preflight
  for (const type of ['application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'text/plain', 'text/plain;charset=UTF-8']) {
    const r = await fetch(`${base}/api/reload`, { method: 'POST', headers: { ...auth, 'content-type': type }, body: 'a=b' })
    t.equal(r.status, 415, type)
    t.equal(((await r.json()) as { error: { code: string } }).error.code, 'ERR_ADMIN_CONTENT_TYPE')
  }
  let r = await fetch(`${base}/api/reload`, { method: 'POST', headers: auth })
  t.equal(r.status, 415, 'no Content-Type at all')
  await r.arrayBuffer()
  r = await fetch(`${base}/api/trace`, { method: 'DELETE', headers: { ...auth, 'content-type': 'text/plain' } })
  t.equal(r.status, 415, 'DELETE too')
  await r.arrayBuffer()
  for (const origin of ['http://evil.example', 'null', `http://127.0.0.1:${port + 1}`, `https://127.0.0.1:${port}`]) {
    r = await fetch(`${base}/api/reload`, { method: 'POST', headers: { ...authJson, origin } })
    t.equal(r.status, 403, `Origin ${origin}`)
    t.equal(((await r.json()) as { error: { code: string } }).error.code, 'ERR_ADMIN_CROSS_ORIGIN')
  }
  for (const site of ['cross-site', 'same-site']) {
    r = await fetch(`${base}/api/reload`, { method: 'POST', headers: { ...authJson, 'sec-fetch-site': site } })
    t.equal(r.status, 403, `Sec-Fetch-Site: ${site}`)
    await r.arrayBuffer()
  }
  r = await fetch(`${base}/api/stats`, { headers: { ...auth, origin: 'http://evil.example' } })
  t.equal(r.status, 403, 'cross-origin reads are refused as well')
  await r.arrayBuffer()
  t.equal(changes.length, before, 'nothing was changed by any refused request')
  // a CORS preflight gets no CORS headers, so the browser never sends the real request
  r = await fetch(`${base}/api/reload`, { method: 'OPTIONS', headers: { origin: 'http://evil.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' } })
  t.equal(r.status, 403)
  t.same([...r.headers.keys()].filter(k => k.startsWith('access-control-')), [], 'no Access-Control-* header')
  await r.arrayBuffer()
  // the listener's own origin and same-origin fetch metadata are fine
  for (const headers of [{ origin: `http://127.0.0.1:${port}` }, { origin: `http://localhost:${port}` }, { 'sec-fetch-site': 'same-origin' }, { 'sec-fetch-site': 'none' }]) {
    r = await fetch(`${base}/api/reload`, { method: 'POST', headers: { ...authJson, ...headers } })
    t.equal(r.status, 200, JSON.stringify(headers))
    t.same([...r.headers.keys()].filter(k => k.startsWith('access-control-')), [])
    t.equal(r.headers.get('x-content-type-options'), 'nosniff')
    await r.arrayBuffer()
  }
  t.equal(changes.filter(c => c === 'reload').length, 4)
})

t.test('admin: GET never changes state (405 on every state-changing route)', async t => {
  const { base, changes } = await recorder(t)
  const before = changes.length
  for (const path of ['/api/reload', '/api/logs/reopen', '/api/dispatcher/pbx/sip:127.0.0.2:5070/drain', '/api/bans/192.0.2.1']) {
    const r = await fetch(base + path, { headers: auth })
    t.equal(r.status, 405, `GET ${path}`)
    t.equal(((await r.json()) as { error: { code: string } }).error.code, 'ERR_ADMIN_METHOD_NOT_ALLOWED')
    t.notMatch(r.headers.get('allow') ?? '', /GET/)
  }
  const r = await fetch(`${base}/api/trace`, { headers: auth })
  t.equal(r.status, 200, 'GET /api/trace only reads the filters')
  await r.arrayBuffer()
  t.equal(changes.length, before)
})

t.test('admin on a wildcard listener: the Host the client used is the own origin', async t => {
  const { port, changes } = await recorder(t, '0.0.0.0')
  const u = `http://127.0.0.1:${port}/api/reload`
  let r = await fetch(u, { method: 'POST', headers: { ...authJson, origin: `http://127.0.0.1:${port}` } })
  t.equal(r.status, 403, 'a wildcard listener is not enabled for non-loopback use')
  await r.arrayBuffer()
  const s = await startHttpServer({ listen: { address: '0.0.0.0', port: 0 }, admin: { backend: backend(changes), token: TOKEN, enabled: true } })
  t.teardown(() => s.close())
  const v = `http://127.0.0.1:${s.port}/api/dialogs`
  r = await fetch(v, { headers: { ...auth, origin: `http://127.0.0.1:${s.port}` } })
  t.equal(r.status, 200)
  await r.arrayBuffer()
  r = await fetch(v, { headers: { ...auth, origin: 'http://evil.example' } })
  t.equal(r.status, 403)
  await r.arrayBuffer()
})
