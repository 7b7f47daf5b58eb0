import t from 'tap'
import { NonInviteServerTransaction } from '@sipedge/transaction'
import { ALICE, ALICE_TCP, Harness, request } from './fixtures/messages.js'

function start(h: Harness, source = ALICE) {
  const r = h.layer.receiveRequest(request({ method: 'REGISTER', uri: 'sip:example.com' }), source)
  if (r.kind !== 'new' || !(r.tx instanceof NonInviteServerTransaction)) throw new Error('expected a new non-INVITE transaction')
  let terminatedAt = -1
  r.tx.onTerminated = () => { terminatedAt = h.t }
  return { tx: r.tx, terminatedAt: () => terminatedAt }
}
const again = () => request({ method: 'REGISTER', uri: 'sip:example.com' })

t.test('Trying: no automatic response, retransmissions discarded (§17.2.2)', async t => {
  const h = new Harness()
  const c = start(h)
  t.equal(c.tx.state, 'Trying')
  t.equal(h.sent.length, 0)
  t.equal(h.layer.receiveRequest(again(), ALICE).kind, 'retransmission')
  t.equal(h.sent.length, 0)
})

t.test('Trying -> Proceeding -> Completed; retransmissions get the latest response; Timer J = 64*T1', async t => {
  const h = new Harness()
  const c = start(h)
  t.ok(c.tx.respond(100))
  t.equal(c.tx.state, 'Proceeding')
  h.advance(300)
  h.layer.receiveRequest(again(), ALICE)
  t.same(h.times('SIP/2.0 100'), [0, 300])
  h.advance(100)
  t.ok(c.tx.respond(200))
  t.equal(c.tx.state, 'Completed')
  t.equal(c.tx.request, null, 'the request is released in Completed (issue 17: memory)')
  t.equal(c.tx.respond(200), false, 'further finals discarded')
  h.advance(1000)
  h.layer.receiveRequest(again(), ALICE)
  t.same(h.times('SIP/2.0 200'), [400, 1400])
  h.advance(5000)
  t.same(h.times('SIP/2.0 200'), [400, 1400], 'no timer-driven retransmission for non-INVITE')
  h.advance(30_000)
  t.equal(c.terminatedAt(), 400 + 32_000, 'Timer J')
  t.equal(h.layer.receiveRequest(again(), ALICE).kind, 'new', 'after Timer J the request is new')
})

t.test('Trying -> Completed directly; reliable: Timer J zero', async t => {
  const h = new Harness()
  const c = start(h, ALICE_TCP)
  h.advance(20)
  c.tx.respond(401)
  t.equal(c.tx.state, 'Terminated')
  t.equal(c.terminatedAt(), 20)
  t.same(h.sent[0]!.dest, ALICE_TCP)
})

t.test('transitions are asserted', async t => {
  const h = new Harness()
  const c = start(h)
  c.tx.respond(200)
  t.throws(() => (c.tx as unknown as { enter(s: string): void }).enter('Trying'), { code: 'ERR_TX_BAD_TRANSITION' })
})

t.test('Proceeding -> Terminated on transport error', async t => {
  const h = new Harness()
  const c = start(h)
  const reasons: string[] = []
  c.tx.onTimeout = (_tx, r) => { reasons.push(r) }
  c.tx.respond(100)
  h.layer.transportError(c.tx)
  t.equal(c.tx.state, 'Terminated')
  t.same(reasons, ['transport-error'])
  t.equal(c.tx.respond(200), false, 'nothing sent after termination')
  t.same(h.layer.stats().active, { ict: 0, nict: 0, ist: 0, nist: 0, total: 0 })
})

t.test('Completed over UDP keeps its response as a latin1 string; a retransmission gets the same bytes (issue 17: memory)', async t => {
  const h = new Harness()
  const c = start(h)
  // every byte value in the body: the string must round-trip them all (UTF-8 reason, binary body)
  const body = Buffer.alloc(256)
  for (let i = 0; i < 256; i++) body[i] = i
  const head = Buffer.from('SIP/2.0 200 OK Größe\r\nContent-Length: 256\r\n\r\n', 'utf8')
  t.ok(c.tx.sendResponse([head, body], 200))
  t.equal(c.tx.state, 'Completed')
  t.equal(typeof c.tx.lastResponse, 'string', 'kept on the V8 heap, not as a Buffer')
  h.advance(1000)
  h.layer.receiveRequest(again(), ALICE)
  t.equal(h.sent.length, 2)
  const bytes = (i: number): Buffer => h.sent[i]!.data
  t.ok(bytes(1).equals(Buffer.concat([head, body])), 'the retransmission is byte for byte the response')
  t.ok(bytes(0).equals(bytes(1)))
})

t.test('Completed over a reliable transport ends at once: nothing is converted', async t => {
  const h = new Harness()
  const c = start(h, ALICE_TCP)
  t.ok(c.tx.respond(200))
  t.equal(c.tx.state, 'Terminated')
  t.ok(Buffer.isBuffer(c.tx.lastResponse) || Array.isArray(c.tx.lastResponse))
})
