// The admin API of the running product is safe by default (ports 21600-21699): `sipedge` as a
// child process with NO admin section. admin-open-by-default: stats, registrations, trace and
// reload used to answer 200 without a token on loopback; now the first start creates a 0600
// token file next to the lmdb store and logs where, /api needs that token, a restart re-uses it,
// and a token in the configuration wins. admin-cross-origin-post: a form POST or another origin
// is refused. `sipedge admin` reads the token file itself.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { tempDir } from '@sipedge/tests'
import { startSipedge, http, SIPEDGE_MAIN } from '../dist/ops.js'

const SIP = 21600
const HTTP = 21601
const base = `http://127.0.0.1:${HTTP}`
const tmp = tempDir()
t.teardown(tmp.cleanup)
const tokenFile = join(tmp.dir, 'state', 'admin.token')

// no admin section: the admin API shares the metrics listener on loopback, as before
const config = (extra = ''): string => `
workers: 1
listen: [udp:127.0.0.1:${SIP}]
store: "lmdb:${tmp.dir}/state/sipedge"
metrics: { listen: 127.0.0.1:${HTTP} }
${extra}`

function adminCli(file: string, ...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [SIPEDGE_MAIN, 'admin', '-c', file, ...args], { encoding: 'utf8', timeout: 30_000 })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

let firstToken = ''

t.test('admin-open-by-default: first start creates the token file, /api needs the token', async t => {
  t.notOk(existsSync(tokenFile))
  const proc = await startSipedge(tmp.dir, 'a.yaml', config())
  t.teardown(() => proc.stop())
  t.ok(existsSync(tokenFile), 'created next to the lmdb store')
  t.equal(statSync(tokenFile).mode & 0o777, 0o600)
  firstToken = readFileSync(tokenFile, 'utf8').trim()
  t.ok(firstToken.length >= 43)
  const created = proc.output().split('\n').find(l => l.includes('admin API token created'))
  t.ok(created !== undefined && JSON.parse(created).tokenFile === tokenFile, 'the log says where the token is')
  t.notMatch(proc.output(), firstToken, 'the token itself is never logged')
  const ready = JSON.parse(proc.output().split('\n').find(l => l.includes('"msg":"ready"'))!) as { adminTokenFile?: string }
  t.equal(ready.adminTokenFile, tokenFile)

  for (const [method, path] of [['GET', '/api/stats'], ['GET', '/api/registrations'], ['PUT', '/api/trace'], ['POST', '/api/reload']] as const) {
    const body = method === 'PUT' ? { sources: ['127.0.0.1'] } : undefined
    t.equal((await http(method, base + path, { ...(body ? { body } : {}) })).status, 401, `${method} ${path} without a token`)
    t.equal((await http(method, base + path, { token: 'wrong-wrong-wrong-wrong-wrong', ...(body ? { body } : {}) })).status, 401, `${method} ${path} wrong token`)
    t.equal((await http(method, base + path, { token: firstToken, ...(body ? { body } : {}) })).status, 200, `${method} ${path} with the file's token`)
  }
  t.equal((await http('GET', `${base}/api/reload`, { token: firstToken })).status, 405, 'GET never reloads')
  for (const path of ['/metrics', '/health', '/ready']) t.equal((await http('GET', base + path)).status, 200, `${path} stays open`)

  // `sipedge admin` finds the token on its own
  const stats = adminCli(proc.file, 'GET', '/api/stats')
  t.equal(stats.status, 0, stats.stderr)
  t.equal((JSON.parse(stats.stdout) as { state: string }).state, 'running')
  const trace = adminCli(proc.file, 'PUT', '/api/trace', '{"callIds":["cli@x"]}')
  t.equal(trace.status, 0, trace.stderr)
  t.same(JSON.parse(trace.stdout), { callIds: ['cli@x'], sources: [] })
  const nf = adminCli(proc.file, 'GET', '/api/nothing')
  t.equal(nf.status, 1, 'an HTTP error exits 1')
  t.match(nf.stderr, /HTTP 404/)
})

t.test('admin-cross-origin-post: what a web page can send is refused', async t => {
  const proc = await startSipedge(tmp.dir, 'b.yaml', config())
  t.teardown(() => proc.stop())
  const gen = async (): Promise<number> => ((await http('GET', `${base}/api/stats`, { token: firstToken })).json as { generation: number }).generation
  const before = await gen()
  // an HTML form: urlencoded, no preflight, Origin of the attacking page
  let r = await fetch(`${base}/api/reload`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'x=1' })
  t.equal(r.status, 401, 'no token: refused before anything else')
  await r.arrayBuffer()
  r = await fetch(`${base}/api/reload`, { method: 'POST', headers: { authorization: `Bearer ${firstToken}`, 'content-type': 'text/plain' }, body: '{}' })
  t.equal(r.status, 415)
  await r.arrayBuffer()
  r = await fetch(`${base}/api/reload`, { method: 'POST', headers: { authorization: `Bearer ${firstToken}`, 'content-type': 'application/json', origin: 'http://attacker.example' } })
  t.equal(r.status, 403)
  t.same([...r.headers.keys()].filter(k => k.startsWith('access-control-')), [])
  await r.arrayBuffer()
  t.equal(await gen(), before, 'no reload happened')
  t.equal((await http('POST', `${base}/api/reload`, { token: firstToken })).status, 200)
  t.equal(await gen(), before + 1)
})

t.test('a restart re-uses the token file; a configured token wins over it', async t => {
  const again = await startSipedge(tmp.dir, 'c.yaml', config())
  t.equal(readFileSync(tokenFile, 'utf8').trim(), firstToken, 'not regenerated')
  t.notMatch(again.output(), /admin API token created/)
  t.equal((await http('GET', `${base}/api/stats`, { token: firstToken })).status, 200)
  await again.stop()

  const own = 'configured-token-0123456789abcdef'
  const proc = await startSipedge(tmp.dir, 'd.yaml', config(`admin: { token: ${own} }`))
  t.teardown(() => proc.stop())
  t.equal((await http('GET', `${base}/api/stats`, { token: firstToken })).status, 401, 'the file is not used when admin.token is set')
  t.equal((await http('GET', `${base}/api/stats`, { token: own })).status, 200)
  t.equal(adminCli(proc.file, 'GET', '/api/dialogs').status, 0, '`sipedge admin` uses the configured token too')
})
