// UDP listeners over real sockets: datagrams tagged with the listener's socketId, the socket to
// send from by listener and family, exclusive binding.
import t from 'tap'
import { createSocket, type RemoteInfo } from 'node:dgram'
import { UdpListeners, createLogger } from '@sipedge/transport'
import { until } from '../fixtures/net.js'

const quiet = createLogger({ level: 'silent' })

t.test('datagrams reach the handler with the listener id and the source', async t => {
  const got: Array<[number, string, RemoteInfo]> = []
  const u = new UdpListeners(quiet, (id, msg, rinfo) => got.push([id, msg.toString(), rinfo]))
  t.teardown(() => u.close())
  const p4 = await u.bind(0, '127.0.0.1', 0)
  const p6 = await u.bind(2, '::1', 0)
  t.ok(p4 > 0 && p6 > 0)
  const c4 = createSocket('udp4')
  const c6 = createSocket('udp6')
  t.teardown(() => { c4.close(); c6.close() })
  c4.send('four', p4, '127.0.0.1')
  c6.send('six', p6, '::1')
  t.ok(await until(() => got.length === 2))
  const four = got.find(g => g[1] === 'four')!
  const six = got.find(g => g[1] === 'six')!
  t.equal(four[0], 0)
  t.equal(four[2].address, '127.0.0.1')
  t.equal(four[2].port, c4.address().port)
  t.equal(six[0], 2)
  t.equal(six[2].family, 'IPv6')
})

t.test('socketFor: the listener itself when the family fits, else the first of the family', async t => {
  const u = new UdpListeners(quiet, () => {})
  t.teardown(() => u.close())
  await u.bind(0, '127.0.0.1', 0)
  await u.bind(1, '127.0.0.2', 0)
  await u.bind(3, '::1', 0)
  const addr = (s: ReturnType<UdpListeners['socketFor']>) => s?.address().address
  t.equal(addr(u.socketFor(1, 4)), '127.0.0.2', 'answer from the socket the request came in on')
  t.equal(addr(u.socketFor(0, 4)), '127.0.0.1')
  t.equal(addr(u.socketFor(3, 4)), '127.0.0.1', 'family mismatch: the first IPv4 listener')
  t.equal(addr(u.socketFor(1, 6)), '::1')
  t.equal(addr(u.socketFor(0xffffffff, 4)), '127.0.0.1', 'no such listener (a worker-originated frame)')
  const only4 = new UdpListeners(quiet, () => {})
  t.teardown(() => only4.close())
  await only4.bind(0, '127.0.0.1', 0)
  t.equal(only4.socketFor(0, 6), null, 'no listener of the family')
})

t.test('bind is exclusive: a taken port is an error', async t => {
  const a = new UdpListeners(quiet, () => {})
  const b = new UdpListeners(quiet, () => {})
  t.teardown(() => { a.close(); b.close() })
  const port = await a.bind(0, '127.0.0.1', 0)
  await t.rejects(b.bind(0, '127.0.0.1', port), { code: 'EADDRINUSE' })
})

t.test('a datagram to an IP literal leaves inside send(): a close in the same tick does not drop it', async t => {
  // With dgram's default lookup the literal is "resolved" on the next tick, so a socket closed
  // right after send() (shutdown after the last answers) silently dropped what it was given.
  const got: string[] = []
  const rx4 = createSocket('udp4'); const rx6 = createSocket('udp6')
  t.teardown(() => { rx4.close(); rx6.close() })
  rx4.on('message', m => got.push(m.toString())); rx6.on('message', m => got.push(m.toString()))
  await new Promise<void>(r => rx4.bind(0, '127.0.0.1', r))
  await new Promise<void>(r => rx6.bind(0, '::1', r))
  const u = new UdpListeners(quiet, () => {})
  await u.bind(0, '127.0.0.1', 0)
  await u.bind(1, '::1', 0)
  u.socketFor(0, 4)!.send('last-v4', rx4.address().port, '127.0.0.1')
  u.socketFor(1, 6)!.send('last-v6', rx6.address().port, '::1')
  u.close()
  t.ok(await until(() => got.length === 2), 'both datagrams arrived')
  t.same(got.sort(), ['last-v4', 'last-v6'])
})

t.test('a destination given as a name still resolves through dns.lookup', async t => {
  const got: string[] = []
  const rx = createSocket('udp4')
  t.teardown(() => rx.close())
  rx.on('message', m => got.push(m.toString()))
  await new Promise<void>(r => rx.bind(0, '127.0.0.1', r))
  const u = new UdpListeners(quiet, () => {})
  t.teardown(() => u.close())
  await u.bind(0, '127.0.0.1', 0)
  const err = await new Promise<Error | null>(r => u.socketFor(0, 4)!.send('by-name', rx.address().port, 'localhost', e => r(e)))
  t.equal(err, null)
  t.ok(await until(() => got.length === 1))
  t.same(got, ['by-name'])
})
