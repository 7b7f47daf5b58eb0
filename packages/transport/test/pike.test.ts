// pike.ts: the sliding window, per-domain thresholds, allow list, ban table, Request-URI host scan.
// The clock is injected: no sleeping, no wall-clock assertions.
import t from 'tap'
import { Pike, requestHost, type PikeSettings } from '../src/pike.js'

const req = (method: string, ruri: string): Buffer => Buffer.from(`${method} ${ruri} SIP/2.0\r\nCall-ID: x\r\n\r\n`, 'latin1')
const settings = (o: Partial<PikeSettings> = {}): PikeSettings => ({
  enabled: true, windowMs: 2_000, maxRequests: 100, banTimeMs: 60_000,
  allow: ['127.0.0.2/32', '127.0.0.3/32', 'fd00::/8'],
  domains: { 'bulk.example.com': { enabled: true, windowMs: 2_000, maxRequests: 5_000, banTimeMs: 60_000 } },
  ...o,
})

t.test('requestHost reads the host of the Request-URI from the start line', async t => {
  t.equal(requestHost(req('INVITE', 'sip:alice@Bulk.Example.COM;transport=tcp')), 'bulk.example.com')
  t.equal(requestHost(req('REGISTER', 'sip:example.com')), 'example.com')
  t.equal(requestHost(req('OPTIONS', 'sips:bob@host.test:5061')), 'host.test')
  t.equal(requestHost(req('INVITE', 'sip:[2001:db8::1]:5060')), '[2001:db8::1]')
  t.equal(requestHost(req('MESSAGE', 'sip:a@h.test?subject=x@y')), 'h.test')
  t.equal(requestHost(Buffer.from('INVITE')), null, 'no Request-URI')
  t.equal(requestHost(Buffer.from('garbage-without-spaces\r\n')), null)
})

t.test('a source over max_requests in the window is banned and then dropped; others are not', async t => {
  let now = 1_000_000
  const p = new Pike(settings(), () => now)
  t.teardown(() => p.close())
  const bans: string[] = []
  p.on({ banned: b => bans.push(`${b.address}:${b.reason}`) })
  let dropped = 0
  for (let i = 0; i < 150; i++) { if (p.check('127.0.0.9', req('INVITE', 'sip:x@example.com'))) dropped++; now += 5 }
  t.equal(dropped, 50, 'requests 101.. dropped (the 101st bans)')
  t.same(bans, ['127.0.0.9:flood'])
  t.equal(p.get('127.0.0.9')?.dropped, 50)
  t.notOk(p.check('127.0.0.10', req('REGISTER', 'sip:example.com')), 'another source passes')
  t.ok(p.isBanned('127.0.0.9'))
  now += 60_001
  t.notOk(p.check('127.0.0.9', req('INVITE', 'sip:x@example.com')), 'ban expired: passes again')
  t.notOk(p.isBanned('127.0.0.9'))
})

t.test('the window slides: a steady rate under the threshold is never banned', async t => {
  let now = 5_000_000
  const p = new Pike(settings({ maxRequests: 100 }), () => now)
  t.teardown(() => p.close())
  // 45 requests per second = 90 per 2 s window, for 20 s
  for (let i = 0; i < 900; i++) { t.equal(p.check('127.0.0.9', req('INVITE', 'sip:x@example.com')), false); now += 1000 / 45 }
  t.equal(p.list().length, 0)
  // 60 per second = 120 per window: banned within the first seconds
  let banned = false
  for (let i = 0; i < 600 && !banned; i++) { banned = p.check('127.0.0.9', req('INVITE', 'sip:x@example.com')); now += 1000 / 60 }
  t.ok(banned, 'a rate over the threshold is banned')
})

t.test('per-domain thresholds: bulk.example.com has its own window; responses are not counted', async t => {
  let now = 9_000_000
  const p = new Pike(settings(), () => now)
  t.teardown(() => p.close())
  for (let i = 0; i < 1_000; i++) {
    t.equal(p.check('127.0.0.20', req('NOTIFY', 'sip:u@bulk.example.com')), false)
    now += 1
  }
  for (let i = 0; i < 1_000; i++) t.equal(p.check('127.0.0.21', Buffer.from('SIP/2.0 200 OK\r\nCall-ID: r\r\n\r\n')), false)
  t.equal(p.list().length, 0, '1000 in a second to bulk: under its 5000; 1000 responses: not counted')
  let at = -1
  for (let i = 0; i < 200 && at < 0; i++) if (p.check('127.0.0.20', req('INVITE', 'sip:u@example.com'))) at = i
  t.equal(at, 100, 'the same source to another domain: the global threshold, counted apart')
  t.equal(p.get('127.0.0.20')?.domain, null)
  // and a bulk flood is banned at its own threshold
  let n = 0
  while (!p.check('127.0.0.22', req('NOTIFY', 'sip:u@bulk.example.com')) && n < 10_000) n++
  t.equal(n, 5_000)
  t.equal(p.get('127.0.0.22')?.domain, 'bulk.example.com')
})

t.test('allow-listed sources (IPv4, IPv6, IPv4-mapped) are never banned, by pike or anyone', async t => {
  const now = 1_000
  const p = new Pike(settings({ maxRequests: 5 }), () => now)
  t.teardown(() => p.close())
  for (const a of ['127.0.0.2', '127.0.0.3', '::ffff:127.0.0.2', 'fd00::5'])
    for (let i = 0; i < 50; i++) t.equal(p.check(a, req('INVITE', 'sip:x@example.com')), false)
  t.equal(p.ban('127.0.0.2', 'auth', now + 10_000, { origin: 'worker' }), null, 'a worker ban of an allowed source is ignored')
  t.equal(p.list().length, 0)
  t.equal(p.check('127.0.0.4', req('INVITE', 'sip:x@example.com')), false)
})

t.test('bans without counting: the table works with pike off; unban and extension', async t => {
  let now = 50_000
  const p = new Pike(null, () => now)
  t.teardown(() => p.close())
  const ended: string[] = []
  p.on({ ended: (b, how) => ended.push(`${b.address}:${how}`) })
  t.notOk(p.counting)
  t.ok(p.ban('192.0.2.7', 'auth', now + 1_000, { origin: 'worker' }))
  t.ok(p.check('192.0.2.7', req('INVITE', 'sip:x@y')), 'dropped')
  p.ban('192.0.2.7', 'auth', now + 5_000)
  t.equal(p.get('192.0.2.7')?.until, now + 5_000, 'extended')
  t.ok(p.unban('192.0.2.7'))
  t.notOk(p.unban('192.0.2.7'), 'already lifted')
  t.ok(p.ban('192.0.2.8', 'auth', now + 1_000))
  now += 2_000
  p.sweep()
  t.same(ended, ['192.0.2.7:lifted', '192.0.2.8:expired'])
  t.equal(p.stats().active, 0)
})
