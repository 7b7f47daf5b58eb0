// Issue 14 item 3, "pike-flood-3" across nodes: two `sipedge` processes sharing a private
// redis-server (`store: redis://...`). A ban pike makes on node A applies on node B (with the same
// expiry); a ban lifted on B is lifted on A. Ports 25140-25159 (redis: 25160-25179).
import t from 'tap'
import { createSocket } from 'node:dgram'
import { startRedis, redisInstalled } from '@sipedge/test-utils'
import { tempDir, sleep, until } from '@sipedge/tests'
import { startSipedge, http } from '../dist/ops.js'

const TOKEN = 'pike-redis-token-0123456789abcdef'
const A = { sip: 25140, http: 25141 }
const B = { sip: 25150, http: 25151 }

if (!redisInstalled()) {
  t.skip('redis-server not installed')
} else {
  const tmp = tempDir('sipedge-pike-redis-')
  t.teardown(tmp.cleanup)
  const redis = await startRedis(t, { ports: [25160, 25179] })
  const config = (n: { sip: number; http: number }): string => `
workers: 1
listen: [udp:127.0.0.1:${n.sip}]
store: "${redis.url(0)}"
metrics: { listen: 127.0.0.1:${n.http} }
admin: { token: ${TOKEN} }
pike: { enabled: true, window: 2s, max_requests: 100, ban_time: 60s, allow: [127.0.0.2/32] }
`
  const a = await startSipedge(tmp.dir, 'a.yaml', config(A))
  t.teardown(() => a.stop())
  const b = await startSipedge(tmp.dir, 'b.yaml', config(B))
  t.teardown(() => b.stop())

  interface BanItem { address: string; reason: string; origin: string; until: string }
  const bans = async (n: { http: number }): Promise<BanItem[]> =>
    ((await http('GET', `http://127.0.0.1:${n.http}/api/bans`, { token: TOKEN })).json as { items: BanItem[] }).items
  const banOf = async (n: { http: number }, addr: string): Promise<BanItem | undefined> => (await bans(n)).find(x => x.address === addr)

  const sock = createSocket('udp4')
  const got: string[] = []
  sock.on('message', m => got.push(m.toString('latin1')))
  await new Promise<void>(r => sock.bind(0, '127.0.0.55', () => r()))
  t.teardown(() => sock.close())
  const port = sock.address().port
  let seq = 0
  const options = (id: string): Buffer => Buffer.from([
    'OPTIONS sip:127.0.0.1 SIP/2.0',
    `Via: SIP/2.0/UDP 127.0.0.55:${port};branch=z9hG4bK-pr${++seq};rport`,
    'Max-Forwards: 70', `From: <sip:f@127.0.0.55>;tag=t${seq}`, 'To: <sip:127.0.0.1>',
    `Call-ID: ${id}`, 'CSeq: 1 OPTIONS', 'Content-Length: 0', '', ''].join('\r\n'), 'latin1')
  /** One OPTIONS to `n`, retransmitted every 300 ms; true when answered within `ms`. */
  async function answered(n: { sip: number }, ms: number): Promise<boolean> {
    const id = `pr-${++seq}-${Date.now()}`
    const deadline = Date.now() + ms
    while (Date.now() < deadline) {
      sock.send(options(id), n.sip, '127.0.0.1')
      if (await until(() => got.some(g => g.includes(id)), 300)) return true
    }
    return false
  }

  t.test('pike-flood-3 (Redis): a ban made on one node applies on the other, expiry carried; lifted on one, lifted on both', async t => {
    t.ok(await answered(B, 3_000), 'node B answers the source before any ban')
    for (let i = 0; i < 300; i++) { sock.send(options(`flood-${i}`), A.sip, '127.0.0.1'); if (i % 50 === 49) await sleep(5) }
    t.ok(await until(async () => (await banOf(A, '127.0.0.55')) !== undefined, 5_000), 'banned on node A')
    const onA = (await banOf(A, '127.0.0.55'))!
    t.equal(onA.origin, 'pike')
    t.ok(await until(async () => (await banOf(B, '127.0.0.55')) !== undefined, 8_000), 'listed on node B')
    const onB = (await banOf(B, '127.0.0.55'))!
    t.equal(onB.origin, 'store')
    t.equal(onB.reason, 'flood')
    t.equal(onB.until, onA.until, 'the same expiry')
    t.notOk(await answered(B, 1_200), 'node B drops the source too')

    t.equal((await http('DELETE', `http://127.0.0.1:${B.http}/api/bans/127.0.0.55`, { token: TOKEN })).status, 200, 'lifted on node B')
    t.ok(await until(async () => (await banOf(A, '127.0.0.55')) === undefined, 8_000), 'and so on node A')
    t.ok(await answered(A, 3_000), 'node A answers the source again')
    t.ok(await answered(B, 3_000), 'node B too')
  })
}
