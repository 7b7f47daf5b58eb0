// A Completed non-INVITE server transaction over UDP is held by the transaction layer off the
// V8 heap until Timer J (transaction/src/parked.ts, issue 17). The core's admission checks ask the
// layer whether a request belongs to a transaction (Proxy.hasServerTransaction): a retransmission
// of a request answered already must still count as one — absorbed and answered with the same
// final, not refused 503 while draining, not run through the arrival hooks (flood limits) again.
import t from 'tap'
import { parseConfig, type FrozenConfig } from '@sipedge/config'
import type { Destination } from '@sipedge/proxy'
import { proxyWith, quietLog } from './fixtures/proxy.js'

interface Sent { dest: Destination; text: string }

const CONFIG = `
workers: 1
listen: [udp:127.0.0.1:5060]
domains: [example.com]
timers: { t1: 100ms, t2: 1s, t4: 1s }
registrar: {}
routes:
  - { match: { method: REGISTER }, action: register }
`
const UA = { transport: 'udp' as const, address: '127.0.0.7', port: 5062, socketId: 0, connId: 0, recvTime: 0 }
const register = (branch: string): Buffer => Buffer.from([
  'REGISTER sip:example.com SIP/2.0',
  `Via: SIP/2.0/UDP 127.0.0.7:5062;branch=${branch};rport`,
  'Max-Forwards: 70',
  'From: <sip:alice@example.com>;tag=ft1',
  'To: <sip:alice@example.com>',
  `Call-ID: parked-${branch}`,
  'CSeq: 1 REGISTER',
  'Contact: <sip:alice@127.0.0.7:5062>',
  'Expires: 600',
  'Content-Length: 0', '', ''].join('\r\n'))

async function harness(t: Tap.Test) {
  const sent: Sent[] = []
  const clock = { now: 1000 }
  const p = await proxyWith({
    config: parseConfig(CONFIG) as FrozenConfig, workerIndex: 0, workers: 1, manualTimers: true, now: () => clock.now, log: quietLog,
    send: (dest, data) => { sent.push({ dest, text: Buffer.concat(Array.isArray(data) ? data : [data]).toString('latin1') }) },
  })
  return { p, sent, clock }
}
declare namespace Tap { type Test = typeof t }
const finals = (sent: Sent[]): string[] => sent.map(s => s.text).filter(x => /^SIP\/2\.0 [2-6]\d\d /.test(x))
const settle = (): Promise<void> => new Promise(r => setTimeout(r, 50))

t.test('a REGISTER retransmitted after its 200 gets the same 200, parked; while draining too (not 503)', async t => {
  const { p, sent } = await harness(t)
  const req = register('z9hG4bK-park-1')
  p.receive(req, UA)
  for (let i = 0; i < 100 && finals(sent).length === 0; i++) await settle() // the registrar writes the binding first
  const first = finals(sent)
  t.equal(first.length, 1)
  t.match(first[0]!, /^SIP\/2\.0 200 /)
  t.equal(p.layer.stats().parked, 1, 'the Completed transaction is parked')
  p.receive(Buffer.from(req), UA)
  t.same(finals(sent), [first[0], first[0]], 'the retransmission gets the same bytes (the same To tag)')
  const closing = p.close(200)
  p.receive(Buffer.from(req), UA)
  const after = finals(sent)
  t.equal(after.length, 3)
  t.equal(after[2], first[0], 'draining: a retransmission of a known request is still answered, not refused')
  p.receive(register('z9hG4bK-park-2'), UA)
  t.match(finals(sent)[3] ?? '', /^SIP\/2\.0 503 /, 'while a new request is refused')
  await closing
})
