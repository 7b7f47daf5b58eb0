// The engine's pike hooks over real sockets, in-process (workers: 0) with the echo handler: a
// flooding source is dropped before the handler sees it (UDP and TCP), its connections closed and
// refused; limits.max_connections_per_source at accept; a ban from anywhere closes connections.
import t from 'tap'
import { createSocket } from 'node:dgram'
import { connect as netConnect } from 'node:net'
import { Engine, createLogger, type EngineOptions, type PikeSettings } from '@sipedge/transport'
import { Client, handlerUrl, req, sleep, until } from './fixtures/net.js'

const quiet = createLogger({ level: 'silent' })
const PIKE: PikeSettings = { enabled: true, windowMs: 2_000, maxRequests: 20, banTimeMs: 60_000, allow: ['127.0.0.1/32'], domains: {} }

async function engine(t: Tap.Test, extra: Partial<EngineOptions> = {}): Promise<{ e: Engine; tcp: number; udp: number }> {
  const e = new Engine({
    listeners: [{ transport: 'udp', address: '127.0.0.1', port: 0 }, { transport: 'tcp', address: '127.0.0.1', port: 0 }],
    workers: 0, handlerUrl, logger: quiet, pike: PIKE, ...extra,
  })
  await e.start()
  t.teardown(() => e.stop())
  return { e, udp: e.listeners[0]!.port, tcp: e.listeners[1]!.port }
}
declare namespace Tap { type Test = typeof t }

async function tcpFrom(port: number, localAddress: string): Promise<Client> {
  const s = netConnect({ port, host: '127.0.0.1', localAddress })
  await new Promise<void>((res, rej) => { s.once('connect', res); s.once('error', rej) })
  return new Client(s)
}

t.test('a UDP flood is dropped before the handler once over max_requests; another source is answered', async t => {
  const { e, udp } = await engine(t)
  const s = createSocket('udp4')
  let answers = 0
  s.on('message', () => { answers++ })
  await new Promise<void>(r => s.bind(0, '127.0.0.40', () => r()))
  t.teardown(() => s.close())
  for (let i = 0; i < 50; i++) s.send(Buffer.from(req({ callId: `flood-${i}` }), 'latin1'), udp, '127.0.0.1')
  t.ok(await until(() => e.pike.get('127.0.0.40') !== undefined), 'banned')
  await sleep(200)
  t.equal(answers, 20, 'the handler answered the 20 under the threshold, nothing after')
  t.equal(e.pike.get('127.0.0.40')?.dropped, 30)
  t.equal(e.pike.stats().floodBans, 1)
  const other = createSocket('udp4')
  let otherAnswers = 0
  other.on('message', () => { otherAnswers++ })
  await new Promise<void>(r => other.bind(0, '127.0.0.41', () => r()))
  t.teardown(() => other.close())
  other.send(Buffer.from(req({ callId: 'other' }), 'latin1'), udp, '127.0.0.1')
  t.ok(await until(() => otherAnswers === 1), 'another source is answered')
})

t.test('a TCP flood closes the connection; new connections from the address are refused; allow-listed sources are never banned', async t => {
  const { e, tcp } = await engine(t)
  const c = await tcpFrom(tcp, '127.0.0.42')
  t.teardown(() => c.close())
  for (let i = 0; i < 30; i++) c.write(req({ callId: `tcp-flood-${i}` }))
  t.ok(await c.waitClosed(), 'closed by the proxy')
  t.equal(e.counters.connBannedClosed, 1)
  const again = await tcpFrom(tcp, '127.0.0.42')
  t.teardown(() => again.close())
  t.ok(await again.waitClosed(), 'a new connection is closed at accept')
  t.equal(e.counters.connRefusedBanned, 1)
  const trusted = await tcpFrom(tcp, '127.0.0.1')
  t.teardown(() => trusted.close())
  for (let i = 0; i < 30; i++) trusted.write(req({ callId: `trusted-${i}` }))
  await trusted.wait(30)
  t.equal(trusted.msgs.length, 30, 'an allow-listed source gets all its answers')
  t.equal(e.pike.get('127.0.0.1'), undefined)
})

t.test('a ban from elsewhere (worker, store, admin) closes the address\'s connections; lifting it admits them again', async t => {
  const { e, tcp } = await engine(t, { pike: null })
  const c = await tcpFrom(tcp, '127.0.0.43')
  t.teardown(() => c.close())
  c.write(req({ callId: 'before' }))
  await c.wait(1)
  t.ok(e.pike.ban('127.0.0.43', 'auth', Date.now() + 60_000, { origin: 'worker' }))
  t.ok(await c.waitClosed(), 'closed')
  t.ok(e.pike.unban('127.0.0.43'))
  const d = await tcpFrom(tcp, '127.0.0.43')
  t.teardown(() => d.close())
  d.write(req({ callId: 'after' }))
  await d.wait(1)
  t.match(d.msgs[0], /after/, 'answered after the ban is lifted')
})

t.test('limits.max_connections_per_source: over it a connection is refused at accept and counted; other sources and freed slots work', async t => {
  const { e, tcp } = await engine(t, { pike: null, limits: { maxConnectionsPerSource: 2 } })
  const a = await tcpFrom(tcp, '127.0.0.44')
  const b = await tcpFrom(tcp, '127.0.0.44')
  const c = await tcpFrom(tcp, '127.0.0.44')
  t.teardown(() => { a.close(); b.close(); c.close() })
  t.ok(await c.waitClosed(), 'the third from the same address is closed')
  t.equal(e.counters.connRefusedPerSource, 1)
  t.equal(e.counters.connRefused, 0, 'not a max_connections refusal')
  t.equal(e.table.fromSource('127.0.0.44'), 2)
  const other = await tcpFrom(tcp, '127.0.0.45')
  t.teardown(() => other.close())
  other.write(req({ callId: 'other-source' }))
  await other.wait(1)
  t.pass('another address connects')
  a.close()
  await until(() => e.table.fromSource('127.0.0.44') === 1)
  const d = await tcpFrom(tcp, '127.0.0.44')
  t.teardown(() => d.close())
  d.write(req({ callId: 'freed' }))
  await d.wait(1)
  t.match(d.msgs[0], /freed/, 'a freed slot is usable again')
})

t.test('max_connections reached: a connection that has only ever pinged makes room for a new one; one that carried SIP does not', async t => {
  const { e, tcp } = await engine(t, { pike: null, limits: { maxConnections: 3, idleTimeoutMs: 2_000 } })
  const talker = await tcpFrom(tcp, '127.0.0.46')
  t.teardown(() => talker.close())
  talker.write(req({ callId: 'talker' }))
  await talker.wait(1)
  const pingers = [await tcpFrom(tcp, '127.0.0.47'), await tcpFrom(tcp, '127.0.0.47')]
  t.teardown(() => { for (const p of pingers) p.close() })
  const ping = setInterval(() => { for (const c of [talker, ...pingers]) if (!c.closed) c.write('\r\n\r\n') }, 150)
  t.teardown(() => clearInterval(ping))
  // younger than min(idle_timeout / 2, 10 s): nothing to evict, the newcomer is refused
  const early = await tcpFrom(tcp, '127.0.0.48')
  t.teardown(() => early.close())
  t.ok(await early.waitClosed(), 'table full, no idle candidate: refused')
  t.equal(e.counters.connIdleEvicted, 0)
  await sleep(1_100) // the no-candidate scan is not repeated within a second; the pingers pass the grace
  const late = await tcpFrom(tcp, '127.0.0.48')
  t.teardown(() => late.close())
  late.write(req({ callId: 'newcomer' }))
  await late.wait(1)
  t.match(late.msgs[0], /newcomer/, 'the newcomer is admitted and answered')
  t.equal(e.counters.connIdleEvicted, 1)
  t.ok(await until(() => pingers.filter(p => p.closed).length >= 1), 'a ping-only connection made room')
  t.notOk(talker.closed, 'the connection that carried SIP was not evicted')
})
