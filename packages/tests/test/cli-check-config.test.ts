// `sipedge check-config` finds every error the start would trip over (issue #16 defect 6), the
// start and a reload refuse them the same way, and the admin API's default listener is where
// docs/operations-observability.md says. Ports 24600-24699.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { tempDir, UdpClient, sipRequest, waitForOutput, makeCert } from '@sipedge/tests'
import { startSipedge, http, SIPEDGE_MAIN } from '../dist/ops.js'

const tmp = tempDir('sipedge-check-config-')
t.teardown(tmp.cleanup)
const SIP = 24600
const HTTP = 24601
const TOKEN = 'check-config-test-token-0123456789'

function file(name: string, text: string): string {
  const f = join(tmp.dir, name)
  writeFileSync(f, text)
  return f
}
const run = (...args: string[]) => spawnSync(process.execPath, [SIPEDGE_MAIN, ...args], { encoding: 'utf8', timeout: 60_000 })
const base = `workers: 1\nlisten: [udp:127.0.0.1:${SIP}]\nmetrics: { listen: 127.0.0.1:${HTTP} }\nstore: "lmdb:${tmp.dir}/store"\n`
const withUsers = (usersFile: string): string => `${base}domains: [example.com]
auth:
  domains:
    example.com:
      users_file: ${usersFile}
routes:
  - { match: { method: REGISTER }, action: register }
`

t.test('check-config-missing-users-file: check-config and the start both refuse a users_file that does not exist, naming file:line', async t => {
  const missing = join(tmp.dir, 'no-such-users.txt')
  const cfg = file('missing-users.yaml', withUsers(missing))
  const r = run('check-config', cfg)
  t.equal(r.status, 1, `check-config exits 1 (stdout: ${r.stdout})`)
  t.match(r.stderr, `${cfg}:9:`, 'file:line of users_file')
  t.match(r.stderr, /auth\.domains\.example\.com\.users_file: users file .*no-such-users\.txt does not exist/)
  const start = run('--config', cfg)
  t.equal(start.status, 1, 'the start refuses it too, before anything listens')
  t.match(start.stderr, /users_file: users file .*does not exist/)
  writeFileSync(missing, 'alice:example.com:0123456789abcdef0123456789abcdef\n')
  const ok = run('check-config', cfg)
  t.equal(ok.status, 0, ok.stderr)
  t.match(ok.stdout, /: OK/)
})

t.test('check-config-bad-users-file: a users file the auth code cannot load is reported with its own line', async t => {
  const users = file('bad-users.txt', 'alice:example.com:0123456789abcdef0123456789abcdef\nbob:example.com:not-hex\n')
  const r = run('check-config', file('bad-users.yaml', withUsers(users)))
  t.equal(r.status, 1)
  t.match(r.stderr, /users_file: .*bad-users\.txt:2: HA1 is not 32 hex digits/)
})

t.test('check-config-tls-files: a tls listener whose certificate is missing or does not match its key', async t => {
  const a = makeCert(tmp.dir, 'a', 'a.test')
  const b = makeCert(tmp.dir, 'b', 'b.test')
  const cfg = (cert: string, key: string): string => `workers: 1\nlisten: [udp:127.0.0.1:${SIP}, tls:127.0.0.1:${SIP + 1}]\nmetrics: { listen: 127.0.0.1:${HTTP} }\ntls:\n  certificates: [{ cert: ${cert}, key: ${key} }]\n`
  const gone = run('check-config', file('tls-missing.yaml', cfg(join(tmp.dir, 'none.crt'), a.key)))
  t.equal(gone.status, 1)
  t.match(gone.stderr, /tls\.certificates\[0\]\.cert: certificate .*none\.crt does not exist/)
  const mismatch = run('check-config', file('tls-mismatch.yaml', cfg(a.cert, b.key)))
  t.equal(mismatch.status, 1)
  t.match(mismatch.stderr, /tls\.certificates\[0\]\.cert: certificate .*a\.crt with key .*b\.key cannot be used/)
  t.equal(run('check-config', file('tls-ok.yaml', cfg(a.cert, a.key))).status, 0)
})

t.test('check-config-log-dir and check-config-admin-token: what the start failed on', async t => {
  const log = run('check-config', file('log.yaml', `${base}logging: { file: ${join(tmp.dir, 'no-dir', 'x.log')} }\n`))
  t.equal(log.status, 1)
  t.match(log.stderr, /logging\.file: log file: directory .*no-dir does not exist/)
  const admin = run('check-config', file('admin.yaml', `workers: 1\nlisten: [udp:127.0.0.1:${SIP}]\nmetrics: { listen: 0.0.0.0:${HTTP} }\nadmin: { enabled: true }\n`))
  t.equal(admin.status, 1)
  t.match(admin.stderr, /admin\.token: .*needs admin\.token/)
})

t.test('check-config-missing-users-file on reload: SIGHUP with a users_file that does not exist is rejected, the old configuration keeps serving', async t => {
  const users = file('users.txt', 'alice:example.com:0123456789abcdef0123456789abcdef\n')
  const edge = await startSipedge(tmp.dir, 'reload.yaml', withUsers(users))
  t.teardown(() => edge.stop())
  writeFileSync(edge.file, withUsers(join(tmp.dir, 'gone.txt')))
  const rejected = waitForOutput(edge.child, /configuration reload rejected/, 20_000)
  edge.child.kill('SIGHUP')
  const line = await rejected
  t.match(line, /users_file: users file .*gone\.txt does not exist/)
  t.match(line, /"code":"ERR_CONFIG_INVALID"/)
  const c = new UdpClient()
  await c.bind()
  t.teardown(() => c.close())
  const r = await c.request(sipRequest({ method: 'REGISTER', uri: 'sip:example.com', extraHeaders: ['Contact: <sip:alice@127.0.0.1:5999>'] }).replace(/From: <[^>]+>/, 'From: <sip:alice@example.com>').replace(/To: <[^>]+>/, 'To: <sip:alice@example.com>'), SIP)
  t.equal(r.status, 401, 'still authenticating with the old users file')
  t.equal((await edge.stop()).code, 0)
})

t.test('ops-admin-listen-default: with admin.listen unset the admin API answers on metrics.listen, as the docs say', async t => {
  const edge = await startSipedge(tmp.dir, 'admin-default.yaml', `${base}admin: { token: ${TOKEN} }\n`)
  t.teardown(() => edge.stop())
  t.equal((await http('GET', `http://127.0.0.1:${HTTP}/api/stats`)).status, 401, 'no token: 401 (there is no admin API without one)')
  const r = await http('GET', `http://127.0.0.1:${HTTP}/api/stats`, { token: TOKEN })
  t.equal(r.status, 200, 'GET /api/stats on the metrics listener')
  const doc = readFileSync(fileURLToPath(new URL('../../../docs/operations-observability.md', import.meta.url)), 'utf8')
  const admin = doc.slice(doc.indexOf('## Admin API'), doc.indexOf('## Logs'))
  t.notMatch(admin, /9091/, 'no separate default port in the docs')
  t.match(admin, /next to `\/metrics` on `metrics\.listen` when `admin\.listen` is null\s+\(the default/, 'the docs name the shared listener')
  t.equal((await edge.stop()).code, 0)
})
