// Files the configuration names, checked with `resources` (what `sipedge check-config`, the
// start and a reload use): issue #16 defect 6, and the config side of defect 3.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ConfigError, parseConfig, checkConfigFile, defaultConfig } from '@sipedge/config'

const dir = mkdtempSync(join(tmpdir(), 'sipedge-config-res-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

function issuesOf(text: string, resources: Parameters<typeof parseConfig>[2] = { resources: true }): ConfigError {
  try {
    parseConfig(text, 'res.yaml', resources)
  } catch (e) {
    if (e instanceof ConfigError) return e
    throw e
  }
  throw new Error('expected a ConfigError')
}

const users = join(dir, 'users.txt')
writeFileSync(users, 'alice:example.com:0123456789abcdef0123456789abcdef\n')
const authYaml = (file: string): string => `domains: [example.com]
auth:
  domains:
    example.com:
      users_file: ${file}
`

t.test('check-config-missing-users-file: a users_file that does not exist is an error at its line', async t => {
  const missing = join(dir, 'nope.txt')
  t.doesNotThrow(() => parseConfig(authYaml(missing)), 'plain text parsing does not look at files')
  const e = issuesOf(authYaml(missing))
  t.equal(e.code, 'ERR_CONFIG_INVALID')
  t.equal(e.issues.length, 1)
  t.match(e.issues[0], { code: 'ERR_CONFIG_FILE', path: 'auth.domains.example.com.users_file', line: 5 })
  t.match(e.issues[0]!.message, /does not exist/)
  t.doesNotThrow(() => parseConfig(authYaml(users), 'ok.yaml', { resources: true }), 'an existing file passes')
  t.doesNotThrow(() => parseConfig(authYaml('"store:"'), 'ok.yaml', { resources: true }), 'store: is no file')
})

t.test('check-config-missing-users-file: a directory or an unreadable file is refused too', async t => {
  t.match(issuesOf(authYaml(dir)).issues[0], { code: 'ERR_CONFIG_FILE', message: /not a regular file/ })
  if (process.getuid?.() !== 0) {
    const locked = join(dir, 'locked.txt')
    writeFileSync(locked, 'x')
    chmodSync(locked, 0o000)
    t.match(issuesOf(authYaml(locked)).issues[0], { code: 'ERR_CONFIG_FILE', message: /not readable/ })
  }
})

t.test('check-config-missing-users-file: the injected loader sees the file and its errors are reported at the key', async t => {
  const seen: Array<[string, string]> = []
  const e = issuesOf(authYaml(users), {
    resources: { usersFile: (p, realm) => { seen.push([p, realm]); throw new Error(`${p}:1: HA1 is not 32 hex digits for MD5`) } },
  })
  t.same(seen, [[users, 'example.com']], 'called with the path and the realm')
  t.match(e.issues[0], { code: 'ERR_CONFIG_FILE', path: 'auth.domains.example.com.users_file', line: 5, message: /HA1 is not 32 hex digits/ })
})

t.test('check-config-tls-files: missing or mismatched certificate files of tls/wss listeners', async t => {
  const missing = issuesOf(`listen: [tls:127.0.0.1:5061]\ntls:\n  certificates:\n    - { cert: ${join(dir, 'no.crt')}, key: ${join(dir, 'no.key')} }\n`)
  t.same(missing.issues.map(i => [i.code, i.path, i.line]), [
    ['ERR_CONFIG_FILE', 'tls.certificates[0].cert', 4],
    ['ERR_CONFIG_FILE', 'tls.certificates[0].key', 4],
  ])
  // two real certificates: a key that belongs to the other one is refused
  const mk = (n: string): void => execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-subj', `/CN=${n}`, '-days', '1', '-keyout', join(dir, `${n}.key`), '-out', join(dir, `${n}.crt`)], { stdio: 'ignore' })
  mk('a')
  mk('b')
  const good = `listen: [{ proto: wss, address: 127.0.0.1, port: 8443, tls: { cert: ${join(dir, 'a.crt')}, key: ${join(dir, 'a.key')} } }]\n`
  t.doesNotThrow(() => parseConfig(good, 'good.yaml', { resources: true }))
  const bad = issuesOf(good.replace('a.key', 'b.key'))
  t.match(bad.issues[0], { code: 'ERR_CONFIG_FILE', path: 'listen[0].tls.cert', message: /cannot be used/ })
  // certificates no tls/wss listener uses are not opened at start, so not checked either
  t.doesNotThrow(() => parseConfig(`tls:\n  certificates:\n    - { cert: /nonexistent.crt, key: /nonexistent.key }\n`, 'x.yaml', { resources: true }))
})

t.test('check-config-log-file: a log file in a directory that does not exist', async t => {
  const e = issuesOf(`logging: { file: ${join(dir, 'no-such-dir', 'sipedge.log')} }\n`)
  t.match(e.issues[0], { code: 'ERR_CONFIG_FILE', path: 'logging.file', line: 1, message: /does not exist/ })
  t.doesNotThrow(() => parseConfig(`logging: { file: ${join(dir, 'sipedge.log')} }\n`, 'x.yaml', { resources: true }), 'created by the sink')
})

t.test('check-config-lmdb-dir: an LMDB store under a regular file cannot be created', async t => {
  const file = join(dir, 'plain-file')
  writeFileSync(file, '')
  const text = `store: "lmdb:${file}/loc"\nroutes: [{ match: { method: REGISTER }, action: register }]\n`
  t.match(issuesOf(text).issues[0], { code: 'ERR_CONFIG_FILE', path: 'store', line: 1, message: /not a directory/ })
  mkdirSync(join(dir, 'var'))
  t.doesNotThrow(() => parseConfig(`store: "lmdb:${join(dir, 'var', 'a', 'b')}"\nroutes: [{ match: { method: REGISTER }, action: register }]\n`, 'x.yaml', { resources: true }), 'created below an existing directory')
})

t.test('check-config-admin-token: admin enabled on a public metrics listener without a token is a config error', async t => {
  // Startup refused this; check-config said OK.
  const e = issuesOf('metrics: { listen: 0.0.0.0:9090 }\nadmin: { enabled: true }\n', {})
  t.match(e.issues[0], { code: 'ERR_CONFIG_CONFLICT', path: 'admin.token', line: 2 })
  t.doesNotThrow(() => parseConfig('metrics: { listen: 0.0.0.0:9090 }\nadmin: { enabled: true, token: 0123456789abcdef0 }\n'))
  t.doesNotThrow(() => parseConfig('metrics: { listen: 127.0.0.1:9090 }\nadmin: { enabled: true }\n'))
})

t.test('checkConfigFile passes the options through', async t => {
  const f = join(dir, 'cfg.yaml')
  writeFileSync(f, authYaml(join(dir, 'nope.txt')))
  t.equal(checkConfigFile(f).ok, true, 'without resources: only the file itself')
  const r = checkConfigFile(f, { resources: true })
  t.equal(r.ok, false)
  if (!r.ok) t.match(r.error.issues[0], { code: 'ERR_CONFIG_FILE', line: 5 })
})

t.test('md5-only-user-agents-baresip: the default challenges baresip 1.0, SIP.js and JsSIP with MD5 only', async t => {
  const list = defaultConfig().auth.md5_only_user_agents
  const match = (ua: string): boolean => list.some(p => new RegExp(p).test(ua))
  // As these clients send it (captured from a real REGISTER of Debian 12's baresip-core 1.0.0,
  // and from the library sources of SIP.js 0.21.2 and JsSIP 3.13.8).
  t.ok(match('baresip v1.0.0 (x86_64/linux)'), 'baresip 1.0.0')
  t.ok(match('SIP.js/0.21.1'), 'SIP.js 0.21.2 (it says 0.21.1)')
  t.ok(match('JsSIP 3.13.8'), 'JsSIP 3.13.8')
  t.notOk(match('Linphone/5.2.0 (belle-sip/5.2.0)'), 'other clients keep SHA-256')
  t.notOk(match('sipp'), 'sipp')
  t.notOk(match('baresip v3.10.1 (x86_64/linux)'), 'a later baresip is not covered by default')
  t.same(defaultConfig().auth.domains, {})
  const c = parseConfig('auth: { md5_only_user_agents: "^OldPhone/" }\n')
  t.same(c.auth.md5_only_user_agents, ['^OldPhone/'], 'one pattern or a list')
  t.same(parseConfig('auth: { md5_only_user_agents: [] }\n').auth.md5_only_user_agents, [], 'off')
  const bad = issuesOf('auth:\n  md5_only_user_agents: ["(unclosed"]\n', {})
  t.match(bad.issues[0], { code: 'ERR_CONFIG_FORMAT', path: 'auth.md5_only_user_agents[0]', line: 2 })
})
