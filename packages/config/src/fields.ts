// Field builders the configuration sections share (names, methods, URIs, addresses,
// store URLs, status-code lists) and the `listen` entry. sections.ts composes them.
import { isIPv4, isIPv6 } from 'node:net'
import { alt, int, join, list, obj, oneOf, str, xform } from './schema.js'
import type { Schema } from './schema.js'
import { checkSipUri, isHostname, METHOD_TOKEN_RE, parseHostPort, parseStoreUrl, q } from './values.js'
import type { AddrPort, HostPort, ListenSpec, Proto } from './types.js'

export const PROTOS = ['udp', 'tcp', 'tls', 'ws', 'wss'] as const
export const ALGORITHMS = ['hash-callid', 'hash-from-user', 'hash-to-user', 'round-robin', 'weighted', 'least-dialogs'] as const
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const
export const KNOWN_METHODS = ['INVITE', 'ACK', 'BYE', 'CANCEL', 'OPTIONS', 'REGISTER', 'PRACK', 'SUBSCRIBE', 'NOTIFY', 'PUBLISH', 'INFO', 'REFER', 'MESSAGE', 'UPDATE']
/** Headers a route may not add: the proxy core owns them (RFC 3261 §16.6). */
export const RESERVED_HEADERS = ['via', 'call-id', 'cseq', 'from', 'to', 'content-length', 'max-forwards', 'route', 'record-route']

export const SECOND = 1000
export const MINUTE = 60 * SECOND
export const HOUR = 60 * MINUTE
export const DAY = 24 * HOUR
export const KiB = 1024
export const MiB = 1024 * KiB
export const GiB = 1024 * MiB

// ---------------------------------------------------------------- value helpers

export const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/
export const checkName = (what: string) => (k: string): string | undefined =>
  NAME_RE.test(k) ? undefined : `${what} ${q(k)} must be letters, digits, '-' or '_' (at most 64, starting with a letter or digit)`

/** A dispatcher set name used by a route; checked against dispatcher.sets after parsing. */
export const setRef = () =>
  str('set name').check(checkName('set name'), 'name of a `dispatcher.sets` entry').then((v, path, ctx) => {
    ctx.refs.push({ name: v, path })
    return v
  })

export const method = () =>
  str('method').check(v => {
    if (!METHOD_TOKEN_RE.test(v)) return `${q(v)} is not a SIP method token`
    if (v !== v.toUpperCase() && KNOWN_METHODS.includes(v.toUpperCase()))
      return `SIP methods are case-sensitive: write ${q(v.toUpperCase())}, not ${q(v)}`
    return undefined
  }, 'SIP method token, e.g. `INVITE`')

export const domainName = () =>
  str('domain').lowerCase().check(v => {
    const d = v.startsWith('*.') ? v.slice(2) : v
    if (isHostname(d) || isIPv4(d) || (d.startsWith('[') && isIPv6(d.slice(1, -1)))) return undefined
    return `expected a domain name such as "example.com" or "*.example.com", got ${q(v)}`
  }, 'domain name, IP address, or `*.domain` wildcard')

export const sipUri = () => str('SIP URI').check(checkSipUri, '`sip:` or `sips:` URI')

export const storeUrl = () =>
  str('store URL').check(v => {
    const r = parseStoreUrl(v)
    return r.ok ? undefined : r.error
  }, '`lmdb:PATH`, `redis://HOST[:PORT][/DB]`, `rediss://...`')

export const addrPort = () =>
  xform(
    str('ADDRESS:PORT').check(v => {
      const r = parseHostPort(v, { requirePort: true, ipOnly: true })
      return r.ok ? undefined : `${r.error}; expected ADDRESS:PORT such as "127.0.0.1:9090" or "[::1]:9090"`
    }, 'IPv4 `ADDR:PORT` or `[IPv6]:PORT`'),
    (v): AddrPort => {
      const r = parseHostPort(v, { requirePort: true, ipOnly: true })
      if (!r.ok) throw new Error('unreachable')
      return { address: r.value.host, port: r.value.port! }
    },
  )

export const hostPort = (what: string) =>
  xform(
    str('HOST[:PORT]').check(v => {
      const r = parseHostPort(v, { requirePort: false, ipOnly: false })
      return r.ok ? undefined : `${what}: ${r.error}`
    }, 'host name or IP, optional `:PORT`'),
    (v): HostPort => {
      const r = parseHostPort(v, { requirePort: false, ipOnly: false })
      if (!r.ok) throw new Error('unreachable')
      return { host: r.value.host.toLowerCase(), port: r.value.port }
    },
  )

export const isLoopbackAddress = (a: string): boolean => a.startsWith('127.') || a === '::1' || a.startsWith('::ffff:127.')

export const noCrLf = (what: string) => (v: string): string | undefined => (/[\r\n\0]/.test(v) ? `${what} must not contain line breaks` : undefined)

/** Status codes: `503`, `"5xx"` (a whole class); normalised to a sorted list of numbers. */
export const codeList = () =>
  xform(
    list(
      alt<number | string>({
        number: int(100, 699) as Schema<number | string>,
        string: str('status class').check(v => (/^[1-6]xx$/.test(v) ? undefined : `expected a status code or a class such as "2xx", got ${q(v)}`), 'status code 100-699 or class `1xx`-`6xx`') as Schema<number | string>,
      }, 'status code or class'),
    ).single().min(1),
    (v): number[] => {
      const out = new Set<number>()
      for (const c of v) {
        if (typeof c === 'number') out.add(c)
        else for (let i = 0, base = Number(c[0]) * 100; i < 100; i++) out.add(base + i)
      }
      return [...out].sort((a, b) => a - b)
    },
  )
export const range = (lo: number, hi: number): number[] => Array.from({ length: hi - lo + 1 }, (_, i) => lo + i)

// ---------------------------------------------------------------- listen

export function listenId(l: { proto: string; address: string; port: number; family: 4 | 6 }): string {
  return `${l.proto}:${l.family === 6 ? `[${l.address}]` : l.address}:${l.port}`
}

export const LISTEN_EXAMPLE = 'e.g. "udp:0.0.0.0:5060" or "tls:[::]:5061"'
export const listenString = xform(
  str('PROTO:ADDR:PORT').check(v => {
    const m = /^([a-zA-Z]+):(.*)$/.exec(v)
    if (!m || !(PROTOS as readonly string[]).includes(m[1]!.toLowerCase()))
      return `expected PROTO:ADDRESS:PORT with PROTO one of ${PROTOS.join(', ')} (${LISTEN_EXAMPLE}), got ${q(v)}`
    const r = parseHostPort(m[2]!, { requirePort: true, ipOnly: true })
    return r.ok ? undefined : `bad listen spec ${q(v)}: ${r.error}; expected PROTO:ADDRESS:PORT (${LISTEN_EXAMPLE})`
  }, '`PROTO:ADDR:PORT`, PROTO one of `udp`, `tcp`, `tls`, `ws`, `wss`; ADDR IPv4 or `[IPv6]`'),
  (v): ListenSpec => {
    const i = v.indexOf(':')
    const proto = v.slice(0, i).toLowerCase() as Proto
    const r = parseHostPort(v.slice(i + 1), { requirePort: true, ipOnly: true })
    if (!r.ok) throw new Error('unreachable')
    const family = isIPv6(r.value.host) ? 6 : 4
    const l = { proto, address: r.value.host, family, port: r.value.port!, advertise: null, tls: null } as const
    return { ...l, id: listenId(l) }
  },
)

export const listenTls = obj({
  cert: str('path').required().desc('PEM certificate chain file.'),
  key: str('path').required().desc('PEM private key file.'),
  sni: list(domainName()).single().def([]).desc('Server names (SNI) this certificate is presented for; empty: the default certificate of this listener.'),
}).def(null).nullable()
  .desc('Certificate for this listener only (`tls` and `wss`). Without it the top-level `tls.certificates` are used.')

export const listenObject = xform(
  obj({
    proto: oneOf(PROTOS).required().desc('Transport protocol.'),
    address: str('IP address').required().check(v => {
      const a = v.startsWith('[') && v.endsWith(']') ? v.slice(1, -1) : v
      return isIPv4(a) || isIPv6(a) ? undefined : `expected an IPv4 or IPv6 address to bind, got ${q(v)}`
    }, 'IPv4 or IPv6 address (brackets optional)').desc('Address to bind; `0.0.0.0` or `::` for all.'),
    port: int(1, 65535).required().desc('Port to bind.'),
    tls: listenTls,
    advertise: hostPort('advertise').nullable().def(null)
      .desc('Host (and port) written into Via, Record-Route and Contact instead of the bind address, e.g. the public address or VIP in front of this node.'),
  }),
  (o): ListenSpec => {
    const raw = o['address'] as string
    const address = raw.startsWith('[') ? raw.slice(1, -1) : raw
    const family = isIPv6(address) ? 6 : 4
    const l = { proto: o['proto'] as Proto, address, family, port: o['port'] as number } as const
    return { ...l, advertise: o['advertise'] as HostPort | null, tls: o['tls'] as ListenSpec['tls'], id: listenId(l) }
  },
)

export const listenSpec = alt<ListenSpec>({ string: listenString, map: listenObject }, 'listen spec')
