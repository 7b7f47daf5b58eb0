import t from 'tap'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { checkConfigFile, ConfigError, defaultConfig, loadConfigFile, parseConfig } from '@sipedge/config'
import type { Config } from '@sipedge/config'

const fixture = (name: string): string => fileURLToPath(new URL(`fixtures/${name}`, import.meta.url))
const repoFile = (p: string): string => fileURLToPath(new URL(`../../../${p}`, import.meta.url))

function parseError(text: string): ConfigError {
  try {
    parseConfig(text, 'test.yaml')
  } catch (e) {
    if (e instanceof ConfigError) return e
    throw e
  }
  throw new Error('expected a ConfigError')
}

t.test('the configuration from issue #4 is accepted and normalised', async t => {
  const c: Config = loadConfigFile(fixture('issue4.yaml'))
  t.equal(c.workers, 2)
  t.same(c.listen, [
    { proto: 'udp', address: '127.0.0.1', family: 4, port: 5060, advertise: null, tls: null, id: 'udp:127.0.0.1:5060' },
    { proto: 'tcp', address: '127.0.0.1', family: 4, port: 5060, advertise: null, tls: null, id: 'tcp:127.0.0.1:5060' },
  ])
  t.same(c.domains, ['example.com'])
  t.equal(c.registrar.store, 'lmdb:./var/location')
  const apps = c.dispatcher.sets['apps']!
  t.equal(apps.name, 'apps')
  t.equal(apps.algorithm, 'hash-callid')
  t.equal(apps.probe.method, 'OPTIONS')
  t.equal(apps.probe.interval, 5000)
  t.equal(apps.probe.enabled, true)
  t.ok(apps.probe.timeout < apps.probe.interval)
  t.same(apps.destinations.map(d => d.uri), ['sip:127.0.0.2:5070', 'sip:127.0.0.3:5070'])
  t.same(apps.destinations[0], { uri: 'sip:127.0.0.2:5070', weight: 1, priority: 0, attrs: {}, state: 'active' })
  t.equal(c.routes.length, 3)
  t.same(c.routes.map(r => r.index), [0, 1, 2])
  t.same(c.routes[0]!.match.method, ['REGISTER'])
  t.same(c.routes[0]!.match.domain, ['example.com'])
  t.equal(c.routes[0]!.match.source, null)
  t.same(c.routes[0]!.action, { type: 'register' })
  t.same(c.routes[1]!.match.source, ['apps'])
  t.same(c.routes[1]!.action, { type: 'lookup' })
  t.same(c.routes[2]!.match.method, ['INVITE', 'SUBSCRIBE', 'MESSAGE', 'OPTIONS', 'REFER', 'NOTIFY', 'INFO'])
  t.same(c.routes[2]!.action, { type: 'dispatch', set: 'apps' })
  t.same(c.metrics.listen, { address: '127.0.0.1', port: 9090 })
})

t.test('defaults are filled in', async t => {
  const c = loadConfigFile(fixture('issue4.yaml'))
  t.equal(c.limits.max_message_size, 65535)
  t.equal(c.limits.ring_size, 4 * 1024 * 1024)
  t.equal(c.limits.idle_timeout, 300_000)
  t.equal(c.timers.t1, 500)
  t.equal(c.timers.timer_b, 32_000, 'timer B derived as 64*T1')
  t.equal(c.timers.timer_f, 32_000)
  t.equal(c.timers.timer_c, 180_000)
  t.equal(c.proxy.record_route, true)
  t.equal(c.proxy.max_forwards, 70)
  t.equal(c.registrar.min_expires, 60_000)
  t.equal(c.registrar.max_contacts, 10)
  t.equal(c.dialog.timeout, 12 * 3600_000)
  t.equal(c.metrics.path, '/metrics')
  t.equal(c.logging.level, 'info')
  t.same(c.topology_hiding, { enabled: false, call_id: false })
  t.same(c.auth.domains, {})

  const d = defaultConfig()
  t.ok(d.workers >= 1, 'workers defaults to the number of cores')
  t.equal(d.listen.length, 2)
  t.equal(d.registrar.store, d.store, 'registrar.store inherits store')
  t.same(d.routes, [])
  t.same(parseConfig('').routes, [], 'an empty file gives the defaults')
  t.equal(parseConfig('', 'x').timers.timer_b, d.timers.timer_b)

  const derived = parseConfig('timers: { t1: 250ms }\n')
  t.equal(derived.timers.timer_b, 16_000)
  t.equal(parseConfig('timers: { t1: 250ms, timer_b: 20s }\n').timers.timer_b, 20_000)
})

t.test('the result is deeply frozen', async t => {
  const c = loadConfigFile(fixture('issue4.yaml'))
  t.ok(Object.isFrozen(c))
  t.ok(Object.isFrozen(c.listen))
  t.ok(Object.isFrozen(c.listen[0]))
  t.ok(Object.isFrozen(c.routes[2]!.match.method))
  t.ok(Object.isFrozen(c.dispatcher.sets['apps']!.destinations[0]!.attrs))
  t.throws(() => { (c as { workers: number }).workers = 9 }, TypeError)
  t.ok(Object.isFrozen(defaultConfig().timers))
  t.same(structuredClone(c), c, 'plain data, survives structured clone')
})

t.test('the checked-in default file validates', async t => {
  const c = loadConfigFile(repoFile('packages/config/defaults/sipedge.yaml'))
  t.same(c.listen.map(l => l.id), ['udp:127.0.0.1:5060', 'tcp:127.0.0.1:5060'])
  t.equal(c.registrar.store, 'lmdb:./var/location')
  t.same(c.metrics.listen, { address: '127.0.0.1', port: 9090 })
  t.ok(c.routes.some(r => r.action.type === 'register'))
  t.ok(c.routes.some(r => r.action.type === 'lookup'))
  t.notOk(c.routes.some(r => r.action.type === 'dispatch'), 'needs no backend')
})

t.test('checkConfigFile', async t => {
  const good = checkConfigFile(fixture('issue4.yaml'))
  t.equal(good.ok, true)
  const bad = checkConfigFile(fixture('bad/unknown-key.yaml'))
  t.equal(bad.ok, false)
  if (!bad.ok) t.equal(bad.error.code, 'ERR_CONFIG_INVALID')
  const missing = checkConfigFile(fixture('does-not-exist.yaml'))
  t.equal(missing.ok, false)
  if (!missing.ok) {
    t.equal(missing.error.code, 'ERR_CONFIG_READ')
    t.match(missing.error.message, /does-not-exist\.yaml/)
  }
})

// Each bad file: the error code, and the first issue's code, key path and line.
const corpus: Array<[file: string, code: string, issueCode: string, path: string, line: number, message?: RegExp]> = [
  ['wrong-type.yaml', 'ERR_CONFIG_INVALID', 'ERR_CONFIG_TYPE', 'workers', 1, /expected integer, got string "two"/],
  ['unknown-key.yaml', 'ERR_CONFIG_INVALID', 'ERR_CONFIG_UNKNOWN_KEY', 'wokers', 3, /did you mean 'workers'/],
  ['renamed-key.yaml', 'ERR_CONFIG_INVALID', 'ERR_CONFIG_RENAMED_KEY', 'max_msg_size', 2, /limits\.max_message_size/],
  ['bad-listen-proto.yaml', 'ERR_CONFIG_INVALID', 'ERR_CONFIG_FORMAT', 'listen[1]', 3, /PROTO/],
  ['bad-listen-port.yaml', 'ERR_CONFIG_INVALID', 'ERR_CONFIG_FORMAT', 'listen[0]', 2, /1 to 65535/],
  ['bad-listen-address.yaml', 'ERR_CONFIG_INVALID', 'ERR_CONFIG_FORMAT', 'listen[0]', 2, /IPv4/],
  ['tls-without-cert.yaml', 'ERR_CONFIG_INVALID', 'ERR_CONFIG_REQUIRED', 'listen[0]', 2, /certificate/],
  ['bad-cidr.yaml', 'ERR_CONFIG_INVALID', 'ERR_CONFIG_FORMAT', 'routes[0].match.source_net', 3, /0-32/],
  ['bad-regex.yaml', 'ERR_CONFIG_INVALID', 'ERR_CONFIG_FORMAT', 'routes[0].match.header.regex', 3, /regular expression/],
  ['unknown-dispatch-set.yaml', 'ERR_CONFIG_INVALID', 'ERR_CONFIG_REFERENCE', 'routes[0].action.dispatch', 7, /unknown dispatcher set "app".*apps/],
  ['unknown-source-set.yaml', 'ERR_CONFIG_INVALID', 'ERR_CONFIG_REFERENCE', 'routes[0].match.source[1]', 6, /"media"/],
  ['reject-code-range.yaml', 'ERR_CONFIG_INVALID', 'ERR_CONFIG_RANGE', 'routes[0].action.reject', 3, /300 to 699/],
  ['reject-code-range-object.yaml', 'ERR_CONFIG_INVALID', 'ERR_CONFIG_RANGE', 'routes[0].action.reject.code', 3, /300 to 699/],
  ['duration-negative.yaml', 'ERR_CONFIG_INVALID', 'ERR_CONFIG_FORMAT', 'timers.t1', 2, /plain number is seconds/],
  ['bad-duration.yaml', 'ERR_CONFIG_INVALID', 'ERR_CONFIG_FORMAT', 'dialog.timeout', 2, /duration/],
  ['bad-size.yaml', 'ERR_CONFIG_INVALID', 'ERR_CONFIG_FORMAT', 'limits.max_message_size', 2, /size/],
  ['yaml-syntax.yaml', 'ERR_CONFIG_YAML', 'ERR_CONFIG_YAML', '', 4],
  ['yaml-duplicate-key.yaml', 'ERR_CONFIG_YAML', 'ERR_CONFIG_YAML', '', 2, /unique/],
  ['bad-algorithm.yaml', 'ERR_CONFIG_INVALID', 'ERR_CONFIG_ENUM', 'dispatcher.sets.apps.algorithm', 4, /expected one of hash-callid, hash-from-user.*got "hash-calid" \(did you mean "hash-callid"\?\)/],
  ['bad-destination-uri.yaml', 'ERR_CONFIG_INVALID', 'ERR_CONFIG_FORMAT', 'dispatcher.sets.apps.destinations[1]', 6, /sip: or sips: URI/],
  ['two-actions.yaml', 'ERR_CONFIG_INVALID', 'ERR_CONFIG_CONFLICT', 'routes[0].action', 3, /exactly one/],
  ['missing-action.yaml', 'ERR_CONFIG_INVALID', 'ERR_CONFIG_REQUIRED', 'routes[0].action', 2, /action/],
  ['bad-action-string.yaml', 'ERR_CONFIG_INVALID', 'ERR_CONFIG_FORMAT', 'routes[0].action', 2, /register, lookup.*dispatch: SET/],
  ['lowercase-method.yaml', 'ERR_CONFIG_INVALID', 'ERR_CONFIG_FORMAT', 'routes[0].match.method', 2, /"INVITE"/],
]

for (const [file, code, issueCode, path, line, message] of corpus) {
  t.test(`bad/${file}`, async t => {
    const p = fixture(`bad/${file}`)
    const err = t.throws(() => loadConfigFile(p)) as ConfigError
    t.type(err, ConfigError)
    t.equal(err.code, code)
    t.ok(err.issues.length >= 1)
    const first = err.issues[0]!
    t.equal(first.code, issueCode)
    t.equal(first.path, path)
    t.equal(first.line, line)
    t.ok(first.column >= 1)
    if (message) t.match(first.message, message)
    t.match(err.message, `${p}:${line}:${first.column}: ${path === '' ? '(top level)' : path}: `, 'message is FILE:LINE:COL: KEY: message')
    const r = checkConfigFile(p)
    t.equal(r.ok, false)
  })
}

t.test('all issues are collected, in file order', async t => {
  const err = t.throws(() => loadConfigFile(fixture('bad/many-errors.yaml'))) as ConfigError
  t.equal(err.code, 'ERR_CONFIG_INVALID')
  t.same(err.issues.map(i => [i.code, i.path, i.line]), [
    ['ERR_CONFIG_UNKNOWN_KEY', 'wokers', 1],
    ['ERR_CONFIG_FORMAT', 'listen[0]', 3],
    ['ERR_CONFIG_FORMAT', 'timers.t1', 5],
    ['ERR_CONFIG_REFERENCE', 'routes[0].action.dispatch', 7],
  ])
  const lines = err.message.split('\n')
  t.equal(lines.length, 5, 'one summary line and one line per issue')
  t.match(lines[1], /many-errors\.yaml:1:1: wokers: unknown key 'wokers'/)
})

t.test('columns point at the value', async t => {
  const e = parseError('dispatcher:\n  sets:\n    apps:\n      algorithm: foo\n      destinations: [sip:a.example]\n')
  t.same([e.issues[0]!.line, e.issues[0]!.column], [4, 18])
  t.equal(e.issues[0]!.message, 'expected one of hash-callid, hash-from-user, hash-to-user, round-robin, weighted, least-dialogs, got "foo"')
})

t.test('listen specs', async t => {
  const c = parseConfig(`
listen:
  - udp:0.0.0.0:5060
  - tcp:[::1]:5070
  - ws:127.0.0.1:8080
  - proto: tls
    address: "::"
    port: 5061
    advertise: sip.example.com:5061
    tls: { cert: ./c.pem, key: ./k.pem, sni: sip.example.com }
  - wss:0.0.0.0:8443
tls:
  certificates:
    - { cert: a.pem, key: a.key }
`)
  t.same(c.listen.map(l => l.id), ['udp:0.0.0.0:5060', 'tcp:[::1]:5070', 'ws:127.0.0.1:8080', 'tls:[::]:5061', 'wss:0.0.0.0:8443'])
  t.equal(c.listen[1]!.family, 6)
  t.equal(c.listen[1]!.address, '::1')
  t.same(c.listen[3]!.advertise, { host: 'sip.example.com', port: 5061 })
  t.same(c.listen[3]!.tls, { cert: './c.pem', key: './k.pem', sni: ['sip.example.com'] })
  t.same(parseConfig('listen: udp:127.0.0.1:5060').listen.length, 1, 'a single spec is a list of one')

  for (const [spec, re] of [
    ['udp:::1:5060', /brackets/],
    ['udp:[::g]:5060', /IPv6/],
    ['udp:127.0.0.1:0', /1 to 65535/],
    ['udp:127.0.0.1', /port missing/],
    ['127.0.0.1:5060', /PROTO/],
    ['udp:1.2.3:5060', /IPv4/],
  ] as const) {
    const e = parseError(`listen:\n  - ${spec.includes('::') || spec.includes('[') ? JSON.stringify(spec) : spec}\n`)
    t.equal(e.issues[0]!.path, 'listen[0]', spec)
    t.match(e.issues[0]!.message, re, spec)
  }
  t.equal(parseError('listen:\n  - udp:127.0.0.1:5060\n  - udp:127.0.0.1:5060\n').issues[0]!.code, 'ERR_CONFIG_CONFLICT')
  t.equal(parseError('listen:\n  - { proto: udp, address: 127.0.0.1, port: 5060, tls: { cert: a, key: b } }\n').issues[0]!.path, 'listen[0].tls')
  t.equal(parseError('listen:\n  - { proto: udp, address: 127.0.0.1 }\n').issues[0]!.path, 'listen[0].port')
})

t.test('route actions and matches', async t => {
  const c = parseConfig(`
dispatcher:
  sets:
    pbx:
      algorithm: weighted
      destinations:
        - { uri: "sip:10.0.0.1:5060;transport=tcp", weight: 3, attrs: { zone: 1 } }
        - uri: sip:10.0.0.2
          state: draining
      probe: false
routes:
  - action: { reject: 403 }
    match: { user_prefix: [0049, "+49"], source_net: [10.0.0.0/8, "fd00::/8"] }
  - action: { reject: { code: 480, reason: Temporarily Unavailable } }
    match: { header: [{ name: X-Tenant, regex: "^blue$", ignore_case: true }], transport: [tls, wss] }
  - action: { forward: "sips:gw.example.net:5061" }
    match: { domain: "*.Example.COM" }
    rewrite_host: gw.example.net
    add_headers: { X-Edge: sipedge-1 }
  - action: { dispatch: pbx }
    add_headers: ["X-A: 1"]
`)
  const [r0, r1, r2, r3] = c.routes
  t.same(r0!.action, { type: 'reject', code: 403, reason: null })
  t.same(r0!.match.user_prefix, ['0049', '+49'], 'digit prefixes keep their leading zeros')
  t.same(r0!.match.source_net, ['10.0.0.0/8', 'fd00::/8'])
  t.same(r1!.action, { type: 'reject', code: 480, reason: 'Temporarily Unavailable' })
  t.same(r1!.match.header, [{ name: 'x-tenant', regex: '^blue$', ignore_case: true }])
  t.same(r1!.match.transport, ['tls', 'wss'])
  t.same(r2!.action, { type: 'forward', uri: 'sips:gw.example.net:5061' })
  t.same(r2!.match.domain, ['*.example.com'])
  t.same(r2!.rewrite_host, { host: 'gw.example.net', port: null })
  t.same(r2!.add_headers, [{ name: 'X-Edge', value: 'sipedge-1' }])
  t.same(r3!.add_headers, [{ name: 'X-A', value: '1' }])
  const pbx = c.dispatcher.sets['pbx']!
  t.equal(pbx.probe.enabled, false)
  t.same(pbx.destinations[0]!.attrs, { zone: '1' })
  t.equal(pbx.destinations[1]!.state, 'draining')
  t.ok(pbx.failover.codes.includes(503))

  t.equal(parseError('routes:\n  - action: { forward: "http://x" }\n').issues[0]!.path, 'routes[0].action.forward')
  t.equal(parseError('routes:\n  - action: lookup\n    add_headers: { Via: x }\n').issues[0]!.path, 'routes[0].add_headers.Via')
})

t.test('topology_hiding: a boolean or a mapping, and per route', async t => {
  t.same(parseConfig('topology_hiding: true').topology_hiding, { enabled: true, call_id: false })
  t.same(parseConfig('topology_hiding: { call_id: true }').topology_hiding, { enabled: true, call_id: true }, 'the mapping form is on unless it says enabled: false')
  t.same(parseConfig('topology_hiding: { enabled: false, call_id: true }').topology_hiding, { enabled: false, call_id: true })
  const c = parseConfig('routes:\n  - { action: lookup, topology_hiding: false }\n  - { action: lookup }\n')
  t.equal(c.routes[0]!.topology_hiding, false)
  t.equal(c.routes[1]!.topology_hiding, null, 'unset: the top-level value decides')
  t.equal(parseError('topology_hiding: { callid: true }').issues[0]!.code, 'ERR_CONFIG_UNKNOWN_KEY')
  t.equal(parseError('topology_hiding: yes please').issues[0]!.code, 'ERR_CONFIG_TYPE')
  t.equal(parseError('routes:\n  - { action: lookup, topology_hiding: 1 }\n').issues[0]!.path, 'routes[0].topology_hiding')
})

t.test('durations and sizes', async t => {
  const c = parseConfig('limits: { max_message_size: 64KiB, ring_size: 1MiB, idle_timeout: 1h30m }\ntimers: { t1: 0.5s }\n')
  t.equal(c.limits.max_message_size, 65536)
  t.equal(c.limits.ring_size, 1024 * 1024)
  t.equal(c.limits.idle_timeout, 5_400_000)
  t.equal(c.timers.t1, 500)
  const e = parseError('limits: { ring_size: 1KiB }\n')
  t.equal(e.issues[0]!.code, 'ERR_CONFIG_RANGE')
  t.equal(e.issues[0]!.path, 'limits.ring_size')
})

t.test('cross-field checks', async t => {
  t.equal(parseError('registrar: { min_expires: 2h, max_expires: 1h }\n').issues[0]!.code, 'ERR_CONFIG_CONFLICT')
  t.equal(parseError('domains: [a.example]\nauth:\n  domains:\n    b.example: { users_file: u }\n').issues[0]!.path, 'auth.domains.b.example')
  const a = parseConfig('domains: [a.example]\nauth:\n  domains:\n    a.example: { users_file: ./users }\n')
  t.same(a.auth.domains['a.example'], { realm: 'a.example', users_file: './users', algorithms: ['SHA-256', 'MD5'], nonce_ttl: 300_000, methods: ['REGISTER'] })
  t.equal(parseError('admin: { enabled: true, listen: 0.0.0.0:9091 }\n').issues[0]!.path, 'admin.token')
  const p = parseConfig('pike:\n  max_requests: 100\n  domains:\n    example.com: { window: 5s }\n')
  t.same(p.pike.domains['example.com'], { enabled: false, window: 5000, max_requests: 100, ban_time: 300_000 })
  t.equal(parseConfig('metrics: { listen: false }\n').metrics.listen, null)
})

t.test('admin-open-by-default: admin keys for a token on every start', async t => {
  const d = defaultConfig()
  t.same(d.admin, { enabled: false, listen: null, token: null, token_file: 'var/admin.token' }, 'token file next to the default lmdb store')
  t.equal(parseConfig('store: "lmdb:/srv/sip/db?sync=commit"\n').admin.token_file, '/srv/sip/admin.token')
  t.equal(parseConfig('store: redis://127.0.0.1:6379/0\n').admin.token_file, 'var/admin.token', 'no lmdb directory: ./var')
  t.equal(parseConfig('admin: { token_file: /etc/sipedge/token }\n').admin.token_file, '/etc/sipedge/token')
  // a non-loopback admin listener needs a token the operator chose: in the file or a file they provision
  t.equal(parseConfig('admin: { enabled: true, listen: 0.0.0.0:9091, token_file: /etc/t }\n').admin.listen?.address, '0.0.0.0')
  const shared = parseError('admin: { enabled: true }\nmetrics: { listen: 0.0.0.0:9090 }\n')
  t.same([shared.issues[0]!.code, shared.issues[0]!.path], ['ERR_CONFIG_CONFLICT', 'admin.token'], 'also when it shares metrics.listen')
  t.equal(parseError('admin: { token: "has spaces in the token" }\n').issues[0]!.path, 'admin.token', 'RFC 6750 b64token only')
  t.equal(parseError('admin: { token: short }\n').issues[0]!.path, 'admin.token')
})

t.test('security defaults: no Server header, known scanners dropped', async t => {
  const d = defaultConfig()
  t.equal(d.proxy.server_header, null)
  t.ok(d.security.drop_user_agents.includes('friendly-scanner'))
  t.notOk(d.security.drop_user_agents.some(u => /sipsak|sipp/i.test(u)), 'monitoring and load tools are not scanners')
  t.same(parseConfig('security: { drop_user_agents: [] }\n').security.drop_user_agents, [])
  t.same(parseConfig('security: { drop_user_agents: evil-ua }\n').security.drop_user_agents, ['evil-ua'], 'a single string is a list of one')
  t.equal(parseError('security: { drop_user_agents: [""] }\n').issues[0]!.path, 'security.drop_user_agents[0]')
  t.equal(parseConfig('proxy: { server_header: sipedge }\n').proxy.server_header, 'sipedge')
})

t.test('errors travel across threads as plain data', async t => {
  const e = parseError('wokers: 1\n')
  const back = ConfigError.fromJSON(structuredClone(e.toJSON()))
  t.equal(back.code, e.code)
  t.same(back.issues, e.issues)
  t.equal(back.message, e.message)
})

t.test('config imports no other sipedge package', async t => {
  const pkg = JSON.parse(readFileSync(repoFile('packages/config/package.json'), 'utf8')) as { dependencies?: Record<string, string> }
  t.same(Object.keys(pkg.dependencies ?? {}).filter(d => d.startsWith('@sipedge/')), [])
})

t.test('a plain number for a duration is seconds', async t => {
  const c = parseConfig('timers:\n  t1: 1\nregistrar:\n  min_expires: 60\n  default_expires: "3600"\n')
  t.equal(c.timers.t1, 1000)
  t.equal(c.registrar.min_expires, 60_000)
  t.equal(c.registrar.default_expires, 3_600_000)
})

t.test('store URLs: redis+sentinel:// (issue 15); node section defaults', async t => {
  const c = parseConfig('store: "redis+sentinel://127.0.0.1:26379,10.0.0.2/mymaster/1"\n')
  t.equal(c.registrar.store, 'redis+sentinel://127.0.0.1:26379,10.0.0.2/mymaster/1', 'accepted, inherited by registrar.store')
  t.match(parseError('store: "redis+sentinel://127.0.0.1:99999/m"\n').issues[0]!.message, /port/)
  t.match(parseError('store: "redis+sentinel://127.0.0.1:26379"\n').issues[0]!.message, /redis\+sentinel/, 'the name is required')
  const d = parseConfig('listen: [udp:127.0.0.11:5070]\n')
  t.match(d.node.id, /:127\.0\.0\.11:5070$/, 'node.id defaults to host:first listener')
  t.equal(d.node.drain_timeout, 600_000)
  t.equal(d.node.liveness_timeout, 3000)
  t.equal(parseConfig('node: { id: edge-a }\n').node.id, 'edge-a')
  t.equal(parseError('node: { id: "" }\n').issues[0]!.path, 'node.id')
})
