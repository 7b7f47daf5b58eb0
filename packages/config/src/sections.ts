// The one schema: every key, its default, its range and what it does. docs/configuration.md
// is generated from this file (renderConfigDocs), and a test keeps the two in sync.
import { availableParallelism, hostname } from 'node:os'
import { isIPv4 } from 'node:net'
import { dirname, join as joinPath } from 'node:path'
import { alt, bool, BAD, Ctx, duration, int, join, list, mapOf, obj, offOr, oneOf, size, str, xform } from './schema.js'
import type { ObjS, Schema } from './schema.js'
import { HEADER_NAME_RE, isHostname, parseCidr, parseStoreUrl, q } from './values.js'
import type { AddHeader, AddrPort, Destination, ListenSpec, ProbeConfig, RouteAction, TopologyHidingConfig } from './types.js'
import {
  PROTOS, ALGORITHMS, LOG_LEVELS, RESERVED_HEADERS, SECOND, MINUTE, HOUR, DAY, KiB, MiB, GiB, checkName, setRef, method,
  domainName, sipUri, storeUrl, addrPort, hostPort, isLoopbackAddress, noCrLf, codeList, range, LISTEN_EXAMPLE, listenString,
  listenSpec,
} from './fields.js'

// ---------------------------------------------------------------- routes

const routeMatch = obj({
  method: list(method()).single().min(1).nullable().def(null)
    .desc('Request method(s), e.g. `INVITE` or `[INVITE, MESSAGE]`. Case-sensitive (RFC 3261 §7.1).'),
  domain: list(domainName()).single().min(1).nullable().def(null)
    .desc('Domain(s) of the request (host of the Request-URI). `*.example.com` matches any subdomain.'),
  source: list(setRef()).single().min(1).nullable().def(null)
    .desc('The request comes from a destination of this dispatcher set (or of one of these sets): traffic from the application servers.'),
  source_net: list(str('CIDR').check(v => {
    const r = parseCidr(v)
    return r.ok ? undefined : r.error
  }, 'IPv4/IPv6 address or CIDR block')).single().min(1).nullable().def(null)
    .desc('Source address of the request is in this network (or one of these), e.g. `10.0.0.0/8`.'),
  user_prefix: list(str('prefix').numeric().check(v => (/^[^\s@;:]+$/.test(v) ? undefined : `expected a user-part prefix without spaces, '@', ';' or ':', got ${q(v)}`), 'user-part prefix (digits kept as written: `0049`)')).single().min(1).nullable().def(null)
    .desc('User part of the Request-URI starts with this prefix (or one of these), e.g. `"+49"` or `0049`.'),
  header: list(obj({
    name: str('header name').required().lowerCase().check(v => (HEADER_NAME_RE.test(v) ? undefined : `${q(v)} is not a header name`)).desc('Header name (any case).'),
    regex: str('regular expression').required().check(v => {
      try { new RegExp(v); return undefined } catch (e) { return `invalid regular expression ${q(v)}: ${(e as Error).message.replace(/^Invalid regular expression: /, '')}` }
    }, 'JavaScript regular expression').desc('Regular expression tested against the header value (any of its lines); anchor it with `^…$` to match the whole value.'),
    ignore_case: bool().def(false).desc('Match the regular expression without regard to case.'),
  })).single().min(1).nullable().def(null)
    .desc('Header condition(s) `{ name, regex }`; all listed conditions must hold.'),
  transport: list(oneOf(PROTOS)).single().min(1).nullable().def(null)
    .desc('Transport the request arrived on.'),
}).desc('Conditions, all optional; all given conditions must hold; `match: {}` (or no `match`) matches every request. A list inside a condition matches if any element does.')

const rejectAction = alt<{ code: number; reason: string | null }>({
  number: xform(int(300, 699), (code): { code: number; reason: string | null } => ({ code, reason: null })),
  map: xform(obj({
    code: int(300, 699).required().desc('Status code of the final response.'),
    reason: str('reason phrase').check(noCrLf('reason phrase')).nullable().def(null).desc('Reason phrase; default: the standard phrase of the code.'),
  }), (o) => ({ code: o['code'] as number, reason: o['reason'] as string | null })),
}, 'status code or mapping')

const ACTION_DOC = '`register`, `lookup`, `{ dispatch: SET }`, `{ forward: URI }`, `{ reject: CODE }`'
const routeAction = alt<RouteAction>({
  string: xform(
    str('string').check(v => {
      if (v === 'register' || v === 'lookup') return undefined
      if (v === 'dispatch' || v === 'forward' || v === 'reject')
        return `expected one of register, lookup, got ${q(v)} (${v} needs an argument: \`action: { ${v}: ${v === 'dispatch' ? 'SET' : v === 'forward' ? 'URI' : 'CODE'} }\`)`
      return `expected one of register, lookup, got ${q(v)}`
    }, 'one of `register`, `lookup`'),
    (v): RouteAction => ({ type: v as 'register' | 'lookup' }),
  ),
  map: xform(obj({
    dispatch: setRef().nullable().def(null).desc('Send to the dispatcher set of this name (it must exist in `dispatcher.sets`).'),
    forward: sipUri().nullable().def(null).desc('Send to this fixed next hop, e.g. `sip:10.0.0.9:5060;transport=tcp`.'),
    reject: rejectAction.nullable().def(null).desc('Answer with this final response: `reject: 403` or `reject: { code: 403, reason: Forbidden }` (code 300-699).'),
  }).finish((o, path, ctx) => {
    const given = ['dispatch', 'forward', 'reject'].filter(k => o[k] !== null)
    if (given.length !== 1)
      ctx.issue(given.length === 0 ? 'ERR_CONFIG_REQUIRED' : 'ERR_CONFIG_CONFLICT', path, ctx.posOf(path),
        given.length === 0 ? `expected exactly one of dispatch, forward, reject` : `expected exactly one of dispatch, forward, reject, got ${given.join(' and ')}`)
  }), (o): RouteAction => {
    if (o['dispatch'] !== null) return { type: 'dispatch', set: o['dispatch'] as string }
    if (o['forward'] !== null) return { type: 'forward', uri: o['forward'] as string }
    const r = o['reject'] as { code: number; reason: string | null }
    return { type: 'reject', code: r.code, reason: r.reason }
  }),
}, ACTION_DOC)
routeAction.desc(`What to do with a matching request: one of ${ACTION_DOC}. \`register\` handles REGISTER as the registrar for the domain; \`lookup\` sends to the registered contacts of the Request-URI (480 when none, for known and unknown users alike).`)

function parseHeaderLine(v: string): AddHeader | string {
  const i = v.indexOf(':')
  if (i <= 0) return `expected "Name: value", got ${q(v)}`
  const name = v.slice(0, i).trim()
  return { name, value: v.slice(i + 1).trim() }
}
function checkAddHeader(h: AddHeader): string | undefined {
  if (!HEADER_NAME_RE.test(h.name)) return `${q(h.name)} is not a header name`
  if (RESERVED_HEADERS.includes(h.name.toLowerCase())) return `header ${h.name} is managed by the proxy and cannot be added by a route`
  return noCrLf('header value')(h.value)
}
const addHeaders = alt<AddHeader[]>({
  map: xform(mapOf(str('header value').numeric().check(noCrLf('header value')), 'header'), (m, path, ctx) => {
    const out = Object.entries(m).map(([name, value]) => ({ name, value }))
    for (const h of out) {
      const err = checkAddHeader(h)
      if (err) { ctx.issue('ERR_CONFIG_FORMAT', join(path, h.name), ctx.posOf(join(path, h.name)), err); return BAD }
    }
    return out
  }),
  seq: xform(list(str('"Name: value"')), (lines, path, ctx) => {
    const out: AddHeader[] = []
    let bad = false
    lines.forEach((l, i) => {
      const h = parseHeaderLine(l)
      const err = typeof h === 'string' ? h : checkAddHeader(h)
      if (err !== undefined) { ctx.issue('ERR_CONFIG_FORMAT', `${path}[${i}]`, ctx.posOf(`${path}[${i}]`), err); bad = true } else out.push(h as AddHeader)
    })
    return bad ? BAD : out
  }),
}, 'mapping of header to value, or list of "Name: value"')

const routeRule = obj({
  name: str('name').check(checkName('route name')).nullable().def(null).desc('Optional name, used in logs and metrics instead of the index.'),
  match: routeMatch,
  action: routeAction.required(),
  rewrite_host: hostPort('rewrite_host').nullable().def(null).desc('Replace the host (and port, if given) of the Request-URI before forwarding.'),
  add_headers: addHeaders.def([]).desc('Headers appended to the forwarded request: `{ X-Tenant: blue }` or `["X-Tenant: blue"]`. Core headers (Via, Route, Call-ID, CSeq, From, To, Max-Forwards, Content-Length) cannot be added.'),
  topology_hiding: bool().nullable().def(null, 'the top-level `topology_hiding`').desc('Hide the topology of requests (and the dialogs they create) routed by this rule, or not; in-dialog requests follow the dialog\'s edge URI either way.'),
})

// ---------------------------------------------------------------- dispatcher

const DEFAULT_PROBE: ProbeConfig = {
  enabled: true, method: 'OPTIONS', interval: 10 * SECOND, timeout: 2 * SECOND, ok_codes: range(200, 299), failures_down: 3, successes_up: 2,
}
const probeObject = obj({
  enabled: bool().def(true).desc('Probe the destinations of this set.'),
  method: method().def('OPTIONS').desc('Method of the probe request.'),
  interval: duration(SECOND, HOUR).def(DEFAULT_PROBE.interval).desc('Time between two probes of one destination (probes of a set are spread over the interval).'),
  timeout: duration(100, MINUTE).def(DEFAULT_PROBE.timeout).desc('A probe without a final response after this long counts as failed. Must be shorter than `interval`.'),
  ok_codes: codeList().def(DEFAULT_PROBE.ok_codes, '`["2xx"]`').desc('Response codes that count as alive, e.g. `["2xx", 404]` for servers that answer OPTIONS with 404.'),
  failures_down: int(1, 100).def(3).desc('Consecutive failed probes that mark a destination down.'),
  successes_up: int(1, 100).def(2).desc('Consecutive good probes that bring a down destination back.'),
}).finish((o, path, ctx) => {
  if ((o['timeout'] as number) >= (o['interval'] as number))
    ctx.issue('ERR_CONFIG_CONFLICT', join(path, 'timeout'), ctx.posOf(join(path, 'timeout')), 'probe timeout must be shorter than probe interval')
})
const probe = alt<ProbeConfig>({
  map: probeObject as unknown as Schema<ProbeConfig>,
  boolean: xform(bool(), (b): ProbeConfig => ({ ...DEFAULT_PROBE, ok_codes: [...DEFAULT_PROBE.ok_codes], enabled: b })),
}, 'mapping or boolean').def(DEFAULT_PROBE, 'enabled, with the defaults below')
  .desc('Health probing (OPTIONS pings). `probe: false` turns it off; a destination that is down receives no new requests.')

const destinationObject = obj({
  uri: sipUri().required().desc('Address of the server, e.g. `sip:10.0.0.5:5060` or `sip:app1.internal;transport=tcp`.'),
  weight: int(0, 1000).def(1).desc('Share of traffic for `weighted` (0: only when all others are down).'),
  priority: int(0, 1000).def(0).desc('Lower is preferred: destinations of a higher priority value are used only when all lower ones are down.'),
  attrs: mapOf(str('value').numeric(), 'attribute').def({}).desc('Free-form attributes (strings), shown in the admin API and available to routing.'),
  state: oneOf(['active', 'disabled', 'draining', 'inactive']).def('active').desc('Operator state: `active`; `draining`: keeps its dialogs, gets no new ones (zero-downtime maintenance); `disabled` (or the older name `inactive`): gets no new requests and is not probed. A reload resets run-time admin changes (admin API) to this value. Probing separately marks an active destination down/up.'),
})
const destination = alt<Destination>({
  string: xform(sipUri(), (uri): Destination => ({ uri, weight: 1, priority: 0, attrs: {}, state: 'active' })),
  map: destinationObject as unknown as Schema<Destination>,
}, 'SIP URI or mapping')

const dispatcherSet = obj({
  algorithm: oneOf(ALGORITHMS).def('hash-callid').desc('How a destination is chosen for a new dialog or out-of-dialog request: `hash-callid` (sticky per Call-ID), `hash-from-user`, `hash-to-user`, `round-robin`, `weighted` (by `weight`), `least-dialogs` (fewest active dialogs).'),
  destinations: list(destination).min(1).required().desc('The servers of the set: URI strings or `{ uri, weight, priority, attrs, state }`.'),
  probe,
  failover: obj({
    on_timeout: bool().def(true).desc('Try the next destination when the chosen one does not answer (Timer B/F, or no provisional response).'),
    codes: codeList().def(range(500, 599), '`["5xx"]`').desc('Final responses that make the proxy try the next destination instead of relaying them.'),
    max_attempts: int(1, 16).def(3).desc('Destinations tried for one request, the first included.'),
  }).desc('Failover to another destination of the set.'),
}).finish((o, path, ctx) => {
  const dests = o['destinations'] as Destination[]
  if (o['algorithm'] === 'weighted' && dests.every(d => d.weight === 0))
    ctx.issue('ERR_CONFIG_CONFLICT', join(path, 'destinations'), ctx.posOf(join(path, 'destinations')), 'algorithm weighted needs at least one destination with weight > 0')
})

// ---------------------------------------------------------------- sections

const workers = int(0, 256).def(null, 'the CPUs sipedge may run on, less one')
  .desc('Worker threads that run parsing, transactions and routing, sharded by Call-ID; the primary thread owns the sockets. `0` runs everything in the primary thread: no thread crossing per message, the cheapest on a single CPU, and what the default gives there. Default: `os.availableParallelism() - 1` (the CPUs of the process\'s affinity mask, so `taskset -c 0 sipedge …` runs 0 workers and a quad-core node 3).')

const tls = obj({
  certificates: list(obj({
    cert: str('path').required().desc('PEM certificate chain file.'),
    key: str('path').required().desc('PEM private key file.'),
    server_names: list(domainName()).single().def([]).desc('Server names (SNI) for which this certificate is presented; empty: the default certificate.'),
  })).def([]).desc('Certificates for `tls` and `wss` listeners, chosen by SNI. Files are re-read on reload.'),
  min_version: oneOf(['TLSv1.2', 'TLSv1.3']).def('TLSv1.2').desc('Lowest TLS version accepted.'),
  verify_client: bool().def(false).desc('Ask clients for a certificate and refuse those that do not present a valid one (mutual TLS).'),
  ca: str('path').nullable().def(null).desc('PEM bundle of CAs trusted for client certificates; default: the system store.'),
}).desc('TLS settings shared by `tls` and `wss` listeners.')

const limits = obj({
  max_message_size: size(1 * KiB, 16 * MiB).def(65535).desc('Largest SIP message accepted (bytes); larger ones are answered 413 or, on streams, close the connection.'),
  max_connections: int(1, 1_000_000).def(10_000).desc('Open TCP/TLS/WS connections at most; further connections are refused, unless an accepted connection has only ever sent keep-alive pings (no SIP message either way) for half of `idle_timeout` (at most 10 s): the oldest such one is closed to make room.'),
  max_connections_per_source: int(0, 1_000_000).nullable().def(null, 'a tenth of `max_connections`, at least 16')
    .desc('Accepted TCP/TLS/WS connections from one remote IP address at most; further ones are refused at accept and counted (`sipedge_connection_events_total{event="refused_per_source"}`), so one source cannot take every slot. Raise it for many clients behind one NAT address. 0: no limit.'),
  idle_timeout: duration(SECOND, DAY).def(5 * MINUTE).desc('A stream connection with no traffic for this long is closed. NAT keep-alive pings (CRLF) count as traffic only on a connection that has carried a SIP message: one that has only ever pinged is closed when this time has passed since it opened.'),
  partial_message_timeout: duration(100, 5 * MINUTE).def(10 * SECOND).desc('A stream connection that holds an incomplete message this long is closed.'),
  ring_size: size(64 * KiB, 1 * GiB).def(4 * MiB).desc('Bytes of each inbound and outbound ring between the primary and a worker. What a ring can hold while its consumer stalls (a GC pause); while the consumer keeps up only its first eighth is written, so the rest costs address space, not memory (`sipedge_ring_touched_bytes`).'),
}).finish((o, path, ctx) => {
  if (o['max_connections_per_source'] === null) o['max_connections_per_source'] = Math.max(16, Math.floor((o['max_connections'] as number) / 10))
  if ((o['ring_size'] as number) < 2 * (o['max_message_size'] as number) + 256)
    ctx.issue('ERR_CONFIG_CONFLICT', join(path, 'ring_size'), ctx.posOf(join(path, 'ring_size')), 'ring_size must hold at least two messages of max_message_size')
}).desc('Size, connection and time limits.')

const timers = obj({
  t1: duration(50, 10 * SECOND).def(500).desc('RTT estimate (RFC 3261 §17.1.1.1); base of the retransmission timers.'),
  t2: duration(SECOND, MINUTE).def(4 * SECOND).desc('Longest retransmit interval for non-INVITE requests and INVITE responses.'),
  t4: duration(SECOND, MINUTE).def(5 * SECOND).desc('Longest time a message stays in the network.'),
  timer_b: duration(SECOND, 10 * MINUTE).nullable().def(null, '64 × t1 (32s)').desc('INVITE client transaction timeout (RFC 3261 §17.1.1.2).'),
  timer_f: duration(SECOND, 10 * MINUTE).nullable().def(null, '64 × t1 (32s)').desc('Non-INVITE client transaction timeout (RFC 3261 §17.1.2.2).'),
  timer_c: duration(MINUTE, HOUR).def(3 * MINUTE).desc('Proxy INVITE transaction timeout after a provisional response (RFC 3261 §16.6 step 11, which asks for more than 3 minutes).'),
}).finish((o, path, ctx) => {
  const t1 = o['t1'] as number
  if (o['timer_b'] === null) o['timer_b'] = 64 * t1
  if (o['timer_f'] === null) o['timer_f'] = 64 * t1
  if ((o['t2'] as number) < t1) ctx.issue('ERR_CONFIG_CONFLICT', join(path, 't2'), ctx.posOf(join(path, 't2')), 't2 must not be shorter than t1')
  for (const k of ['timer_b', 'timer_f'])
    if ((o[k] as number) < t1) ctx.issue('ERR_CONFIG_CONFLICT', join(path, k), ctx.posOf(join(path, k)), `${k} must not be shorter than t1`)
}).desc('SIP transaction timers. All timers derive from these in one place.')

const proxy = obj({
  record_route: bool().def(true).desc('Insert Record-Route so in-dialog requests come back through this proxy (needed for NAT, topology hiding and sticky dialogs).'),
  max_forwards: int(1, 255).def(70).desc('Max-Forwards set on requests that arrive without one; requests arriving with 0 are answered 483.'),
  // Off by default: a product name (and any version in it) tells a scanner which exploits to try.
  server_header: str('string').check(noCrLf('server_header')).nullable().def(null).desc('Server header on locally generated responses (e.g. `sipedge`); null: no header, which tells scanners nothing about the software.'),
  user_agent: str('string').check(noCrLf('user_agent')).def('sipedge').desc('User-Agent of requests this proxy originates (probes, keep-alives, BYE on dialog timeout).'),
}).desc('Stateful proxy behaviour.')

const registrar = obj({
  store: storeUrl().nullable().def(null, 'value of `store`').desc('Where registrations live: `lmdb:PATH` (embedded, one node), `redis://HOST:PORT/DB` (shared by an HA pair), `redis+sentinel://HOST:PORT[,HOST:PORT...]/NAME/DB` (Redis behind Sentinel; docs/ha.md).'),
  min_expires: duration(SECOND, DAY).def(60 * SECOND).desc('Shorter registrations are answered 423 Interval Too Brief with this Min-Expires.'),
  default_expires: duration(SECOND, 7 * DAY).def(HOUR).desc('Expiry used when a REGISTER gives none.'),
  max_expires: duration(SECOND, 7 * DAY).def(2 * HOUR).desc('Longer requested expiries are cut down to this.'),
  max_contacts: int(1, 1000).def(10).desc('Contacts per address-of-record; beyond it the oldest is dropped.'),
}).rename([{ key: 'db_url', use: 'registrar.store' }]).finish((o, path, ctx) => {
  const [min, def, max] = [o['min_expires'] as number, o['default_expires'] as number, o['max_expires'] as number]
  if (!(min <= def && def <= max))
    ctx.issue('ERR_CONFIG_CONFLICT', join(path, 'default_expires'), ctx.posOf(join(path, 'default_expires')), 'expected min_expires <= default_expires <= max_expires')
}).desc('Registrar and location service (RFC 3261 §10). Expiries are durations; the values sent in SIP are whole seconds.')

/**
 * User-Agents, as these clients send them, that give up on any 401/407 carrying a SHA-256
 * challenge (checked with the real clients, docs/clients.md): baresip 1.0.0 (Debian 12
 * `baresip-core`: "baresip v1.0.0 (x86_64/linux)") whatever the order of the challenges; SIP.js
 * 0.21 ("SIP.js/0.21.1") and JsSIP 3.13 ("JsSIP 3.13.8") read only the first challenge and
 * abort when it is not MD5.
 */
export const MD5_ONLY_USER_AGENTS_DEFAULT: readonly string[] = ['^baresip v[01]\\.', '^SIP\\.js/', '^JsSIP ']

const regex = () => str('regular expression').check(v => {
  try { new RegExp(v); return undefined } catch (e) { return `invalid regular expression ${q(v)}: ${(e as Error).message.replace(/^Invalid regular expression: /, '')}` }
}, 'JavaScript regular expression')

const auth = obj({
  md5_only_user_agents: list(regex()).single().def([...MD5_ONLY_USER_AGENTS_DEFAULT], '`["^baresip v[01]\\\\.", "^SIP\\\\.js/", "^JsSIP "]`')
    .desc('Clients whose User-Agent matches one of these regular expressions (case-sensitive, unanchored unless written with `^`) are challenged with MD5 alone, if MD5 is in the domain\'s `algorithms`; every other client gets all of `algorithms`. For clients that give up on a 401/407 carrying a SHA-256 challenge instead of answering the MD5 one next to it: baresip 1.x whatever the order, SIP.js and JsSIP when SHA-256 comes first (docs/clients.md). This is no downgrade an attacker could not do anyway: an MD5 answer is accepted whenever MD5 is in `algorithms`. `[]`: every client gets every algorithm.'),
  domains: mapOf(obj({
    realm: str('realm').check(noCrLf('realm')).nullable().def(null, 'the domain').desc('Realm of the challenges.'),
    users_file: str('path').required().desc('File of credentials `user:realm:HA1` (htdigest style; HA1 for MD5 or SHA-256 per line `algorithm=` suffix), re-read on reload.'),
    algorithms: list(oneOf(['SHA-256', 'MD5'])).single().min(1).unique().def(['SHA-256', 'MD5']).desc('Digest algorithms offered, in order of preference (RFC 8760 §3: one challenge per algorithm, preferred first).'),
    nonce_ttl: duration(5 * SECOND, HOUR).def(5 * MINUTE).desc('How long a nonce is accepted; older ones get a challenge with stale=true.'),
    methods: list(method()).single().min(1).unique().def(['REGISTER']).desc('Requests from clients of this domain that must authenticate.'),
  }), 'domain').keys(k => (isHostname(k) || isIPv4(k) ? undefined : `auth domain ${q(k)} is not a domain name`))
    .desc('Digest authentication per local domain (each must be listed in `domains`).'),
  // docs/security.md "Authentication throttling": counted in the store of registrar.store, so
  // every worker (lmdb) and every node (Redis) sees the same counts.
  throttle: obj({
    max_failures: int(1, 1000).def(5).desc('Wrong answers (or answers for users that do not exist: the same thing to a client) from one user at one source address within `window` before that pair is answered 403 without a password check, until the window ends. Per pair, so a guesser elsewhere cannot lock a real user out.'),
    window: duration(SECOND, DAY).def(5 * MINUTE).desc('The counting window; it starts at the first failure and is fixed.'),
    ban_users: int(0, 1_000_000).def(10).desc('Distinct users that one source address fails against within `window` before it is banned (a scanner spraying guesses over many users). 0: never.'),
    ban_failures: int(0, 1_000_000).def(30).desc('Failures from one source address within `window` before it is banned. 0: never.'),
    ban_time: duration(MINUTE, 30 * DAY).def(HOUR).desc('How long a ban lasts: requests from the address are dropped without an answer; the ban is reported to the primary (`ban` control message) and written to the BanStore.'),
  }).desc('Throttling of failed digest authentication, across every worker and node.'),
}).desc('Digest authentication (RFC 3261 §22, RFC 8760).')

const dispatcher = obj({
  sets: mapOf(dispatcherSet, 'name').keys(checkName('set name')).desc('Named sets of application servers; routes send to them with `{ dispatch: NAME }`.'),
}).desc('Sets of application/media servers, balancing, health probing and failover.')

const dialog = obj({
  timeout: duration(MINUTE, 7 * DAY).def(12 * HOUR).desc('A dialog without in-dialog traffic for this long is forgotten.'),
  send_bye_on_timeout: bool().def(false).desc('Send BYE to both sides when a dialog times out.'),
  secret: str('string').check(v => (v.length >= 16 ? undefined : 'secret must be at least 16 characters')).nullable().def(null, 'derived per host')
    .desc('Key that signs the Record-Route parameters (HMAC-SHA256). Unset: a key derived from this host (/etc/machine-id and host name), the same for every worker and restart of this host but different on other hosts: set the same value on all nodes of an HA pair so either can route in-dialog requests.'),
  enabled: bool().def(true).desc('Track record-routed dialogs (sticky sessions and per-destination counts for `least-dialogs` for dispatched ones; counts, `/api/dialogs` and timeouts for all). Off: in-dialog requests still reach their destination through the signed Record-Route parameter.'),
  store: storeUrl().nullable().def(null, 'value of `store`').desc('Where dialogs are mirrored (asynchronously, off the message path) so another node or a restarted worker can continue them: `lmdb:PATH` or `redis://HOST:PORT/DB` (shared by an HA pair).'),
  mirror: bool().def(true).desc('Mirror dialogs to `dialog.store`; off: dialogs live only in the memory of the worker that owns the Call-ID (the Record-Route parameter still keeps them sticky).'),
}).desc('Dialog tracking for sticky sessions.')

const topologyHidingObject = obj({
  enabled: bool().def(true).desc('In the mapping form (on unless set to false): hide the topology of requests, and of the dialogs they create, routed by rules that do not say otherwise (`routes[].topology_hiding`).'),
  call_id: bool().def(false).desc('Also mask the Call-ID towards the side a dialog-creating request is forwarded to (the application side of a call from a phone), and restore it on the way back. Call-IDs quoted inside other headers (Replaces, Refer-To) are not rewritten: attended transfer across the edge needs this off.'),
})
const topologyHiding = alt<TopologyHidingConfig>({
  boolean: xform(bool(), (b): TopologyHidingConfig => ({ enabled: b, call_id: false })),
  map: topologyHidingObject as unknown as Schema<TopologyHidingConfig>,
}, 'boolean or mapping').def({ enabled: false, call_id: false }, '`false`')
  .desc('Topology hiding (docs/topology-hiding.md): each side of a dialog sees the edge as the only hop, one Via, Record-Route reduced to the edge, the far side\'s Contact replaced by an edge URI that carries, encrypted and authenticated with the `dialog.secret` key, what in-dialog routing needs (so it survives restarts, worker crashes and a fail-over to the other node). `true`, `false`, or `{ enabled, call_id }`.')


const cidrList = (what: string) => list(str('CIDR').check(v => { const r = parseCidr(v); return r.ok ? undefined : r.error }, what))
const nat = obj({
  force_rport: bool().def(true).desc('RFC 3581 for UDP even when the client did not ask: `received` and `rport` are filled in on its Via and responses go to the source address and port (stream responses always use the connection).'),
  fix_contact: bool().def(true).desc('Reach a client behind NAT where it really is: a request to its registration goes to the source address and port (and connection) the REGISTER came from, and in-dialog requests towards it (caller or callee) go to the flow recorded in our Record-Route, never to its private Contact. The Contact itself is not changed. See docs/nat.md.'),
  private_networks: cidrList('IPv4/IPv6 CIDR block').single().def(['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', '169.254.0.0/16', 'fc00::/7', 'fe80::/10'], 'RFC 1918, RFC 6598 `100.64.0.0/10`, `169.254.0.0/16`, `fc00::/7`, `fe80::/10`')
    .desc('A client whose Contact host is in one of these blocks is behind NAT (as is one whose source address or port differs from its Via sent-by). Loopback is never private.'),
  keepalive: obj({
    enabled: bool().def(false).desc('Ping registered clients behind NAT so their NAT binding stays open, and remove a binding that stops answering.'),
    interval: duration(5 * SECOND, 10 * MINUTE).def(30 * SECOND).desc('Interval between two pings of one client; each binding has its own phase, so pings are spread evenly over the interval.'),
    method: oneOf(['auto', 'options', 'crlf']).def('auto').desc('`auto`: OPTIONS over UDP, the RFC 5626 double-CRLF ping over TCP/TLS, a ping frame over WebSocket; `options`: OPTIONS over UDP (streams as `auto`); `crlf`: a CRLF datagram over UDP (no answer expected, so UDP bindings are never removed) and CRLF/ping frames on streams.'),
    failures_remove: int(1, 100).def(3).desc('Consecutive pings without an answer after which the binding is removed (counted in `sipedge_nat_bindings_removed_total`).'),
  }).desc('NAT keep-alive pings (docs/nat.md).'),
}).desc('NAT traversal helpers (RFC 3581, RFC 5626).')

const pikeFields = (inherit: boolean) => ({
  enabled: (inherit ? bool().nullable().def(null, 'inherits `pike.enabled`') : bool().def(false))
    .desc(inherit ? 'Count requests to this domain (on its own window and threshold).' : 'Count requests per source address in the primary, before they reach a worker, and ban a source over `max_requests` per `window` for `ban_time`. Bans (also those of auth and the admin API) apply whether this is on or not.'),
  window: (inherit ? duration(100, MINUTE).nullable().def(null, 'inherits `pike.window`') : duration(100, MINUTE).def(2 * SECOND))
    .desc('Sampling window: requests are counted over the last `window` (a sliding estimate from two buckets).'),
  max_requests: (inherit ? int(1, 1_000_000).nullable().def(null, 'inherits `pike.max_requests`') : int(1, 1_000_000).def(60))
    .desc(inherit ? 'Requests per source address and window to this domain (Request-URI host) above which the source is banned; requests to it are not counted against the global threshold.' : 'Requests (responses are not counted) per source address and window above which the source is banned.'),
  ban_time: (inherit ? duration(SECOND, DAY).nullable().def(null, 'inherits `pike.ban_time`') : duration(SECOND, DAY).def(5 * MINUTE))
    .desc('How long a banned source is ignored: its datagrams and stream messages are dropped unread, its connections closed and new ones refused.'),
})
const pike = obj({
  ...pikeFields(false),
  allow: list(str('CIDR').check(v => { const r = parseCidr(v); return r.ok ? undefined : r.error })).single().def(['127.0.0.0/8', '::1/128'])
    .desc('Sources (IPv4 and IPv6 CIDR blocks) never counted nor banned in the primary (a worker\'s auth ban of one is not taken over; the auth throttle still applies): application servers, monitoring, trusted peers. The IP-literal destinations of the dispatcher sets are never banned either.'),
  domains: mapOf(obj(pikeFields(true)), 'domain').desc('Per-domain thresholds, chosen by the Request-URI host read from the start line (without a parse); unset keys inherit the global value.'),
}).finish(o => {
  for (const d of Object.values(o['domains'] as Record<string, Record<string, unknown>>))
    for (const k of ['enabled', 'window', 'max_requests', 'ban_time'] as const) if (d[k] === null) d[k] = o[k]
}).desc('Flood detection and bans (pike), in the primary (docs/security.md "Flood detection (pike)").')

const metrics = obj({
  listen: offOr(addrPort()).def({ address: '127.0.0.1', port: 9090 }, '`127.0.0.1:9090`').desc('HTTP address of the Prometheus endpoint; `false` turns it off.'),
  path: str('path').check(v => (v.startsWith('/') ? undefined : 'path must start with /')).def('/metrics').desc('HTTP path of the metrics.'),
}).rename([{ key: 'port', use: 'metrics.listen', note: 'as ADDRESS:PORT' }]).desc('Prometheus metrics.')

// RFC 6750 §2.1 b64token: what can follow "Bearer " in an Authorization header.
const B64TOKEN_RE = /^[A-Za-z0-9\-._~+/]+=*$/
const admin = obj({
  enabled: bool().def(false).desc('Serve the admin API (`/api`) on a non-loopback address too; on a loopback address it is always served. Either way every `/api` request needs the bearer token (`token` or `token_file`).'),
  listen: addrPort().nullable().def(null, '`null` (the metrics listener)').desc('HTTP address of the admin API; `null` serves it on `metrics.listen`, next to `/metrics`.'),
  token: str('string').check(v => (v.length < 16 ? 'token must be at least 16 characters' : B64TOKEN_RE.test(v) ? undefined : 'token may hold only letters, digits and -._~+/ (RFC 6750 b64token)'))
    .nullable().def(null).desc('Bearer token that every `/api` request must carry (`Authorization: Bearer <token>`, compared in constant time). Wins over `token_file`.'),
  token_file: str('path').nullable().def(null, '`admin.token` in the directory of the `store` LMDB database (`./var/admin.token` with the default store)')
    .desc('File with the bearer token, used when `token` is not set. Missing on the first start: created with a random 256-bit token, mode 0600, and its path logged; re-used on every later start. A relative path is relative to the working directory, as for `store`. Read it with `sipedge admin` or `curl -H "Authorization: Bearer $(cat FILE)"`.'),
}).finish((o, path, ctx) => {
  const l = o['listen'] as AddrPort | null
  if (l === null) return // shares metrics.listen: checked in finishRoot, where both are known
  if (o['enabled'] === true && !isLoopbackAddress(l.address) && o['token'] === null && o['token_file'] === null)
    ctx.issue('ERR_CONFIG_CONFLICT', join(path, 'token'), ctx.posOf(join(path, 'listen')), 'admin API on a non-loopback address needs a token (`token`, or a `token_file` you provision)')
}).desc('Admin HTTP API (docs/security.md "Admin API").')

// Substrings of the User-Agent of well-known SIP scanners. Kamailio 5.6's default kamailio.cfg
// (route[REQINIT]) drops `friendly|scanner|sipcli|sipvicious|VaxSIPUserAgent|pplsip` silently;
// the widely published iptables string-match rules block friendly-scanner, sipcli/,
// VaxSIPUserAgent/ and pplsip; community lists add sundayddr, iWar and sip-scan. Kamailio's bare
// "friendly" and "scanner" are narrowed to "friendly-scanner" (fewer false positives). sipsak and
// SIPp are left out on purpose: operators monitor and load-test with them.
const SCANNER_USER_AGENTS = ['friendly-scanner', 'sipvicious', 'sipcli', 'VaxSIPUserAgent', 'pplsip', 'sundayddr', 'iWar', 'sip-scan']
const security = obj({
  drop_user_agents: list(str('substring').check(v => (v.trim() === '' ? 'must not be empty' : noCrLf('drop_user_agents')(v)))).single().def(SCANNER_USER_AGENTS)
    .desc('Requests whose User-Agent contains one of these strings (ASCII case-insensitive) are dropped without any answer and counted: a scanner learns nothing and gets nothing to reflect. `[]` turns it off. The default lists well-known SIP scanners (SIPVicious `friendly-scanner`, `sipcli`, ...); the diagnostic tools sipsak and SIPp are deliberately not on it.'),
}).desc('Protections for a node on a public address (docs/security.md).')

// ---- issue 15 (HA pair): this node's identity and drain (docs/ha.md)
const node = obj({
  id: str('string').check(v => (v.trim() === '' ? 'must not be empty' : noCrLf('node.id')(v))).nullable().def(null, '`HOST:ADDRESS:PORT` (host name and the first listener)')
    .desc('Name of this node among the nodes sharing a Redis store: stamped on the bindings and dialogs it writes, used for its liveness key and in `GET /api/node`. Must differ between nodes.'),
  drain_timeout: duration(SECOND, 7 * DAY).def(10 * MINUTE)
    .desc('A drain (`POST /api/node/drain` or SIGUSR2) waits at most this long for the dialogs and transactions of this node to end, then the process exits 0 anyway.'),
  heartbeat_interval: duration(100, MINUTE).def(SECOND)
    .desc('With a Redis store: how often this node writes its liveness key and reads the other nodes\' (docs/ha.md "Node liveness").'),
  liveness_timeout: duration(500, 10 * MINUTE).def(3 * SECOND)
    .desc('With a Redis store: the TTL of the liveness key. A node not heard of for this long is gone: the bindings only its connections reached are skipped by every other node at once. Keep it a few times `heartbeat_interval`.'),
  drain_retry_after: duration(SECOND, HOUR).def(30 * SECOND)
    .desc('Retry-After (seconds) of the 503 a draining node answers to new dialogs (INVITE, SUBSCRIBE, REFER outside a dialog) and REGISTERs.'),
}).desc('This node of an HA pair or cluster (docs/ha.md): identity and drain.')

const logging = obj({
  level: oneOf(LOG_LEVELS).def('info').desc('Log level.'),
  modules: mapOf(oneOf(LOG_LEVELS), 'module').def({}).desc('Per-module levels, e.g. `{ dispatcher: debug }`.'),
  file: str('path').nullable().def(null).desc('Log file; null: standard output. Written off the hot path.'),
  rotate: obj({
    size: offOr(size(KiB, 100 * GiB)).def(100 * MiB).desc('Rotate when the file reaches this size; `false`: never by size.'),
    interval: offOr(duration(MINUTE, 30 * DAY)).def(DAY).desc('Rotate at this interval; `false`: never by time.'),
    keep: int(1, 1000).def(7).desc('Rotated files kept.'),
  }).desc('Rotation of `file` (also on SIGHUP / admin reopen).'),
}).desc('Structured logging.')

const helperThreadNice = int(0, 19).def(null, '19 when `workers` is 0, else 0')
  .desc('Nice increment given at start to the threads of the process that handle no SIP message (V8\'s garbage-collector and compiler threads, libuv\'s pool, the log thread), so that on a busy CPU they take the time the message-handling thread leaves idle instead of preempting it (Linux; each thread\'s own nice value, at most 19). `0` leaves them as they are. The threads that handle messages (the primary, the workers) keep the process\'s priority. The default raises it only when one thread handles every message (`workers: 0`); with worker threads it leaves them as they are: with several handling threads on one CPU, lowered helpers were measured to cost 24–48 MB of RSS and a one-way p99 of 38–315 ms against 17–20 ms at 2,000 requests a second with `workers: 2` (a priority inversion, docs/performance.md). A change needs a restart.')

export const configSchema: ObjS = obj({
  workers,
  helper_thread_nice: helperThreadNice,
  listen: list(listenSpec).single().min(1).def(
    [listenString.fn('udp:127.0.0.1:5060', '', new Ctx(null, null), null), listenString.fn('tcp:127.0.0.1:5060', '', new Ctx(null, null), null)] as ListenSpec[],
    '`[udp:127.0.0.1:5060, tcp:127.0.0.1:5060]`',
  ).desc(`Sockets to listen on: \`PROTO:ADDR:PORT\` strings (${LISTEN_EXAMPLE}) or mappings \`{ proto, address, port, tls, advertise }\`. \`tls\`/\`wss\` listeners need a certificate (\`tls.certificates\` or the listener's own \`tls\`).`),
  domains: list(domainName()).single().unique().def([]).desc('Local domains: this proxy is the registrar for them, and requests for them are routed here.'),
  tls,
  limits,
  timers,
  proxy,
  store: storeUrl().def('lmdb:./var/sipedge').desc('Default store for registrations, dialogs and bans. Relative paths are relative to the working directory. LMDB durability: `lmdb:PATH?sync=100ms` (default) writes every commit to the OS at once (a restart or crash loses nothing) and flushes the disk within 100 ms (a power loss can lose the last 100 ms of registrations); `?sync=commit` flushes every commit to disk (slower: one fsync per write). See docs/stores.md "Durability".'),
  registrar,
  auth,
  dispatcher,
  routes: list(routeRule).def([]).desc(`Routing rules, tried in order: the first rule whose \`match\` holds decides. Actions: ${ACTION_DOC}.`),
  dialog,
  topology_hiding: topologyHiding,
  nat,
  pike,
  security,
  node,
  metrics,
  admin,
  logging,
}).rename([
  { key: 'listeners', use: 'listen' },
  { key: 'max_msg_size', use: 'limits.max_message_size' },
  { key: 'children', use: 'workers' },
  { key: 'log_level', use: 'logging.level' },
  { key: 'record_route', use: 'proxy.record_route' },
  { key: 'tcp_connection_lifetime', use: 'limits.idle_timeout' },
  { key: 'routing', use: 'routes' },
  { key: 'dispatchers', use: 'dispatcher.sets' },
]).finish(finishRoot)

// ---------------------------------------------------------------- cross-section checks

/** `workers` when the configuration sets none: one thread per CPU the process may use, the primary included. */
function defaultWorkers(): number {
  return Math.max(0, availableParallelism() - 1)
}

function finishRoot(o: Record<string, unknown>, _path: string, ctx: Ctx): void {
  if (o['workers'] === null) o['workers'] = defaultWorkers()
  if (o['helper_thread_nice'] === null) o['helper_thread_nice'] = o['workers'] === 0 ? 19 : 0
  const reg = o['registrar'] as Record<string, unknown>
  if (reg['store'] === null) reg['store'] = o['store']
  const dlg = o['dialog'] as Record<string, unknown>
  if (dlg['store'] === null) dlg['store'] = o['store']
  finishAdmin(o, ctx)
  finishNode(o)

  const sets = (o['dispatcher'] as { sets: Record<string, Record<string, unknown>> }).sets
  for (const [name, set] of Object.entries(sets)) {
    // name first, so it reads well when logged
    const copy = { name, ...set }
    for (const k of Object.keys(set)) delete set[k]
    Object.assign(set, copy)
  }

  const domains = o['domains'] as string[]
  const authDomains = (o['auth'] as { domains: Record<string, Record<string, unknown>> }).domains
  for (const [d, a] of Object.entries(authDomains)) {
    if (a['realm'] === null) a['realm'] = d
    if (!domains.includes(d.toLowerCase()))
      ctx.issue('ERR_CONFIG_REFERENCE', `auth.domains.${d}`, ctx.keyPositions.get(`auth.domains.${d}`) ?? ctx.posOf('auth.domains'), `auth domain ${q(d)} is not listed in domains${domains.length ? ` (${domains.join(', ')})` : ''}`)
  }

  const listen = o['listen'] as ListenSpec[]
  const certs = (o['tls'] as { certificates: unknown[] }).certificates
  const seen = new Map<string, number>()
  listen.forEach((l, i) => {
    const p = `listen[${i}]`
    const secure = l.proto === 'tls' || l.proto === 'wss'
    if (secure && l.tls === null && certs.length === 0)
      ctx.issue('ERR_CONFIG_REQUIRED', p, ctx.posOf(p), `${l.proto} listener ${l.id} needs a certificate: add tls.certificates or a tls: { cert, key } on the listener`)
    if (!secure && l.tls !== null)
      ctx.issue('ERR_CONFIG_CONFLICT', `${p}.tls`, ctx.posOf(`${p}.tls`), `tls settings are only for tls and wss listeners, not ${l.proto}`)
    const prev = seen.get(l.id)
    if (prev !== undefined) ctx.issue('ERR_CONFIG_CONFLICT', p, ctx.posOf(p), `${l.id} is listed twice (also listen[${prev}])`)
    seen.set(l.id, i)
  })
  // udp and tcp may share a port; tcp, tls, ws and wss are all stream sockets and may not.
  const streams = new Map<string, number>()
  listen.forEach((l, i) => {
    if (l.proto === 'udp') return
    const key = `${l.address}|${l.port}`
    const prev = streams.get(key)
    if (prev !== undefined && listen[prev]!.id !== l.id)
      ctx.issue('ERR_CONFIG_CONFLICT', `listen[${i}]`, ctx.posOf(`listen[${i}]`), `${l.id} uses the same TCP port as ${listen[prev]!.id}`)
    streams.set(key, i)
  })

  // admin.listen null: the admin API shares metrics.listen; enabled there on a public address it
  // needs a token. Checked here (not only when the command starts) so check-config finds it.
  const adm = o['admin'] as { enabled: boolean; listen: AddrPort | null; token: string | null }
  const met = o['metrics'] as { listen: AddrPort | null }
  if (adm.listen === null && adm.enabled && adm.token === null && met.listen !== null && !isLoopbackAddress(met.listen.address))
    ctx.issue('ERR_CONFIG_CONFLICT', 'admin.token', ctx.keyPositions.get('admin.enabled') ?? ctx.posOf('admin'), `the admin API is enabled on metrics.listen ${met.listen.address}:${met.listen.port}, not a loopback address: it needs admin.token (or a loopback admin.listen)`)

  const routes = o['routes'] as Array<Record<string, unknown>>
  routes.forEach((r, i) => {
    const rule = { index: i, ...r }
    for (const k of Object.keys(r)) delete r[k]
    Object.assign(r, rule)
  })
}

/** node.id default: host name and the first listener (two nodes on one host differ by address). */
function finishNode(o: Record<string, unknown>): void {
  const n = o['node'] as Record<string, unknown>
  if (n['id'] !== null) return
  const l = (o['listen'] as ListenSpec[])[0]
  n['id'] = l === undefined ? hostname() : `${hostname()}:${l.address.includes(':') ? `[${l.address}]` : l.address}:${l.port}`
}

/** Admin on the metrics listener (admin.listen null): the token rule there; token_file's default. */
function finishAdmin(o: Record<string, unknown>, ctx: Ctx): void {
  const a = o['admin'] as Record<string, unknown>
  const m = (o['metrics'] as { listen: AddrPort | null }).listen
  if (a['listen'] === null && m !== null && a['enabled'] === true && !isLoopbackAddress(m.address) && a['token'] === null && a['token_file'] === null)
    ctx.issue('ERR_CONFIG_CONFLICT', 'admin.token', ctx.posOf('admin'), 'admin API on a non-loopback address (metrics.listen) needs a token (`token`, or a `token_file` you provision)')
  if (a['token_file'] === null) {
    // next to the embedded store: the state directory the operator already keeps and backs up
    const st = parseStoreUrl(o['store'] as string)
    const dir = st.ok && st.value.kind === 'lmdb' ? dirname(st.value.path.replace(/\?.*$/, '')) : './var'
    a['token_file'] = joinPath(dir, 'admin.token')
  }
}

export function unknownSet(name: string, names: readonly string[]): string {
  return `unknown dispatcher set ${q(name)} (${names.length ? `defined sets: ${names.join(', ')}` : 'no sets are defined under dispatcher.sets'})`
}
