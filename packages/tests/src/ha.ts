// Helpers for the two-node (HA pair) tests on 127.0.0.x: the configuration of one node, in the
// shape of the issue-15 acceptance file (both nodes advertise one service address, as two nodes
// behind a VIP do), and the admin calls the tests make. The redis-server they share comes from
// @sipedge/test-utils (startRedis: a private port, its own directory, killed at teardown).
import { startSipedge, http, type SipedgeProcess, type HttpAnswer } from './ops.js'

export { startRedis, redisInstalled, type RedisServer } from '@sipedge/test-utils'

export const HA_TOKEN = 'ha-two-nodes-admin-token-0123456789'
export const HA_SECRET = 'ha-acceptance-secret-0123456789abcdef'

export interface HaNodeOptions {
  /** The node's own address (127.0.0.11, 127.0.0.12, ...). */
  address: string
  /** SIP port of the node (udp and tcp) and of the service address. */
  sipPort: number
  /** The service address both nodes advertise (the VIP). */
  service: string
  /** Metrics and admin listener port (on `address`). */
  httpPort: number
  storeUrl: string
  /** Dispatcher destinations (sip: URIs). */
  apps: readonly string[]
  /** Extra YAML appended to the file (node:, registrar:, ...). */
  extra?: string
}

/** The acceptance file of issue 15 with test ports, `probe: false` and an admin token. */
export function haConfig(o: HaNodeOptions): string {
  return `
workers: 2
listen:
  - { proto: udp, address: ${o.address}, port: ${o.sipPort}, advertise: "${o.service}:${o.sipPort}" }
  - { proto: tcp, address: ${o.address}, port: ${o.sipPort}, advertise: "${o.service}:${o.sipPort}" }
domains: [example.com]
store: ${o.storeUrl}
dialog: { secret: "${HA_SECRET}" }
dispatcher:
  sets:
    apps:
      algorithm: hash-callid
      probe: false
      destinations: [${o.apps.join(', ')}]
routes:
  - match: { method: REGISTER, domain: example.com }
    action: register
  - match: { source: apps }
    action: lookup
  - match: { method: [INVITE, SUBSCRIBE, MESSAGE, OPTIONS, REFER, NOTIFY, INFO] }
    action: { dispatch: apps }
metrics:
  listen: ${o.address}:${o.httpPort}
admin: { token: ${HA_TOKEN} }
${o.extra ?? ''}
`
}

export interface HaNode {
  readonly name: string
  readonly address: string
  readonly proc: SipedgeProcess
  readonly api: string
  get(path: string): Promise<HttpAnswer>
  post(path: string): Promise<HttpAnswer>
}

export async function startHaNode(dir: string, name: string, o: HaNodeOptions): Promise<HaNode> {
  const proc = await startSipedge(dir, `${name}.yaml`, haConfig(o))
  const api = `http://${o.address}:${o.httpPort}`
  return {
    name, address: o.address, proc, api,
    get: path => http('GET', api + path, { token: HA_TOKEN }),
    post: path => http('POST', api + path, { token: HA_TOKEN }),
  }
}
