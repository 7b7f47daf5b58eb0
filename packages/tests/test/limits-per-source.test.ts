// Issue 14 item 7, "one-source-all-tcp-slots-7": one source opening connection after connection
// and keeping them alive with CRLFs took every TCP slot (2,000 connections, max_connections 300:
// legitimate users got 0/30). Scaled down here (max_connections 30, a source may hold 10) over
// real sockets from loopback addresses 127.0.0.x, on the `sipedge` command. Ports 25120-25139.
import t from 'tap'
import { connect as netConnect } from 'node:net'
import { StreamClient, tempDir, sleep, until } from '@sipedge/tests'
import { startSipedge, http } from '../dist/ops.js'

const SIP = 25120
const HTTP = 25121
const TOKEN = 'limits-source-token-0123456789abcdef'

const tmp = tempDir('sipedge-limits-')
t.teardown(tmp.cleanup)
const proc = await startSipedge(tmp.dir, 'limits.yaml', `
workers: 1
listen: [tcp:127.0.0.1:${SIP}]
registrar: { store: "lmdb:${tmp.dir}/store" }
limits: { max_connections: 30, max_connections_per_source: 10, idle_timeout: 2s }
metrics: { listen: 127.0.0.1:${HTTP} }
admin: { token: ${TOKEN} }
`)
t.teardown(() => proc.stop())

const counters = async (): Promise<Record<string, number>> =>
  ((await http('GET', `http://127.0.0.1:${HTTP}/api/stats`, { token: TOKEN })).json as { counters: Record<string, number> }).counters

async function tcpFrom(localAddress: string): Promise<StreamClient | null> {
  const s = netConnect({ port: SIP, host: '127.0.0.1', localAddress })
  try {
    await new Promise<void>((resolve, reject) => { s.once('connect', resolve); s.once('error', reject) })
  } catch { return null }
  return new StreamClient(s)
}

let seq = 0
const options = (from: string): string => [
  'OPTIONS sip:127.0.0.1 SIP/2.0',
  `Via: SIP/2.0/TCP ${from}:5060;branch=z9hG4bK-ls${++seq}`,
  'Max-Forwards: 70',
  `From: <sip:user@${from}>;tag=t${seq}`,
  'To: <sip:127.0.0.1>',
  `Call-ID: ls-${seq}-${Date.now()}`,
  'CSeq: 1 OPTIONS',
  'Content-Length: 0', '', ''].join('\r\n')

t.test('one-source-all-tcp-slots-7: one source holding connections with CRLFs cannot take every slot; other sources still connect and get answers', async t => {
  const hog: StreamClient[] = []
  t.teardown(() => { for (const c of hog) c.close() })
  const before = await counters()
  for (let i = 0; i < 40; i++) {
    const c = await tcpFrom('127.0.0.90')
    if (c !== null) hog.push(c)
  }
  // keep every connection busy with keep-alive pings (RFC 5626 double CRLF)
  const ping = setInterval(() => { for (const c of hog) if (!c.closed) c.write('\r\n\r\n') }, 200)
  t.teardown(() => clearInterval(ping))
  await sleep(300)
  const open = hog.filter(c => !c.closed).length
  t.equal(open, 10, 'the source holds max_connections_per_source connections, no more')
  const after = await counters()
  t.equal(after['connRefusedPerSource']! - (before['connRefusedPerSource'] ?? 0), 30, 'the other 30 were refused at accept and counted')

  // 20 legitimate users from other loopback addresses: every one connects and is answered
  let answered = 0
  const users: StreamClient[] = []
  t.teardown(() => { for (const c of users) c.close() })
  for (let i = 0; i < 20; i++) {
    const from = `127.0.0.${100 + i}`
    const c = await tcpFrom(from)
    if (c === null) continue
    users.push(c)
    c.write(options(from))
  }
  for (const c of users) {
    try { const [r] = await c.waitFor(1, 5_000); if (r?.status === 200) answered++ } catch { /* counted as not answered */ }
  }
  t.equal(answered, 20, 'legitimate TCP users: 20/20 answered')
})

t.test('one-source-all-tcp-slots-7: a connection that only ever pings CRLF is idle; one that carried SIP may ping on', async t => {
  const pinger = await tcpFrom('127.0.0.91')
  const talker = await tcpFrom('127.0.0.92')
  t.ok(pinger !== null && talker !== null)
  t.teardown(() => { pinger?.close(); talker?.close() })
  talker!.write(options('127.0.0.92'))
  const [r] = await talker!.waitFor(1, 5_000)
  t.equal(r?.status, 200)
  const idleBefore = (await counters())['connIdleClosed'] ?? 0
  // both ping every 300 ms: Node's socket timeout never fires for either
  const ping = setInterval(() => { for (const c of [pinger!, talker!]) if (!c.closed) c.write('\r\n\r\n') }, 300)
  t.teardown(() => clearInterval(ping))
  t.ok(await until(() => pinger!.closed, 8_000), 'the CRLF-only connection is closed once idle_timeout (2 s) has passed since it opened')
  t.ok((await counters())['connIdleClosed']! > idleBefore, 'counted as an idle close')
  // the talker carried a SIP message: its pings keep it open (a registered client behind NAT)
  await sleep(800)
  t.notOk(talker!.closed, 'the connection that carried SIP stays open while it pings')
  talker!.write(options('127.0.0.92'))
  const all = await talker!.waitFor(2, 5_000)
  t.equal(all[1]?.status, 200, 'and is still answered')
})
