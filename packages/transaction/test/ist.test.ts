import t from 'tap'
import { parseMessage } from '@sipedge/sip'
import { InviteServerTransaction } from '@sipedge/transaction'
import type { ServerTransaction, TimeoutReason } from '@sipedge/transaction'
import { ALICE, ALICE_TCP, Harness, request, responseText } from './fixtures/messages.js'

function start(h: Harness, source = ALICE) {
  const r = h.layer.receiveRequest(request(), source)
  if (r.kind !== 'new' || !(r.tx instanceof InviteServerTransaction)) throw new Error('expected a new INVITE transaction')
  const tx = r.tx
  const timeouts: TimeoutReason[] = []
  let terminatedAt = -1
  tx.onTimeout = (_tx: ServerTransaction, reason: TimeoutReason) => { timeouts.push(reason) }
  tx.onTerminated = () => { terminatedAt = h.t }
  return { tx, timeouts, terminatedAt: () => terminatedAt }
}

/** A response as the proxy would forward it (alice's Via only). */
function forwarded(status: number): Buffer {
  const text = responseText({ status, branch: 'z9hG4bKgone' })
  return Buffer.from(text.replace(/^Via: SIP\/2.0\/UDP proxy[^\r]*\r\n/m, ''))
}

t.test('100 Trying is sent at once (§17.2.1); retransmissions resend the latest provisional', async t => {
  const h = new Harness()
  const c = start(h)
  t.equal(c.tx.state, 'Proceeding')
  t.same(h.sent.map(s => [s.t, s.line]), [[0, 'SIP/2.0 100 Trying']])
  t.same(h.sent[0]!.dest, ALICE)
  const hundred = parseMessage(h.sent[0]!.data)
  t.equal(hundred.to.tag, undefined, '100 carries no To tag')
  t.equal(hundred.topVia.branch, 'z9hG4bKalice1')
  h.advance(500)
  t.equal(h.layer.receiveRequest(request(), ALICE).kind, 'retransmission')
  t.same(h.times('SIP/2.0 100'), [0, 500])
  t.ok(c.tx.sendResponse(forwarded(180), 180))
  h.advance(500)
  h.layer.receiveRequest(request(), ALICE)
  t.same(h.times('SIP/2.0 180'), [500, 1000], 'latest provisional resent')
  t.equal(h.layer.stats().absorbed.requests, 2)
  t.equal(h.layer.stats().retransmissions.responses, 2)
})

t.test('autoTrying: false sends nothing; retransmission with no response sent is absorbed silently', async t => {
  const h = new Harness({ autoTrying: false })
  const c = start(h)
  t.equal(h.sent.length, 0)
  t.equal(h.layer.receiveRequest(request(), ALICE).kind, 'retransmission')
  t.equal(h.sent.length, 0)
  t.equal(c.tx.state, 'Proceeding')
})

t.test('Proceeding -> Completed on 4xx; Timer G doubles to T2; Timer H at 64*T1 -> timeout', async t => {
  const h = new Harness()
  const c = start(h)
  h.clear()
  t.ok(c.tx.respond(486))
  t.equal(c.tx.state, 'Completed')
  const m = parseMessage(h.sent[0]!.data)
  t.equal(m.status, 486)
  t.ok(m.to.tag, 'a To tag is added (§8.2.6.2)')
  t.equal(m.to.tag, c.tx.toTag)
  h.advance(40_000)
  t.same(h.times('SIP/2.0 486'), [0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500])
  t.same(c.timeouts, ['timeout'])
  t.equal(c.terminatedAt(), 32_000)
  t.equal(c.tx.state, 'Terminated')
})

t.test('Completed: INVITE retransmission resends the final; ACK -> Confirmed; Timer I = T4; ACKs absorbed', async t => {
  const h = new Harness()
  const c = start(h)
  h.advance(100)
  c.tx.respond(404, 'Not Here')
  h.advance(200)
  t.equal(h.layer.receiveRequest(request(), ALICE).kind, 'retransmission')
  t.same(h.times('SIP/2.0 404'), [100, 300])
  t.equal(c.tx.respond(500), false, 'a second final is discarded')
  const ack = request({ method: 'ACK', toTag: c.tx.toTag! })
  t.equal(h.layer.receiveRequest(ack, ALICE).kind, 'ack-absorbed')
  t.equal(c.tx.state, 'Confirmed')
  h.advance(2000)
  t.same(h.times('SIP/2.0 404'), [100, 300], 'Timer G stopped by the ACK')
  t.equal(h.layer.receiveRequest(ack, ALICE).kind, 'ack-absorbed', 'ACK retransmission absorbed')
  t.equal(h.layer.receiveRequest(request(), ALICE).kind, 'retransmission', 'INVITE absorbed in Confirmed')
  t.same(h.times('SIP/2.0 404'), [100, 300], 'nothing resent in Confirmed')
  h.advance(5000)
  t.equal(c.terminatedAt(), 300 + 5000, 'Timer I = T4')
  t.same(c.timeouts, [])
})

t.test('reliable: no Timer G, Timer I zero', async t => {
  const h = new Harness()
  const c = start(h, ALICE_TCP)
  c.tx.respond(603)
  h.advance(10_000)
  t.same(h.times('SIP/2.0 603'), [0])
  t.same(h.sent[0]!.dest, ALICE_TCP, 'response on the same connection')
  h.layer.receiveRequest(request({ method: 'ACK', toTag: c.tx.toTag! }), ALICE_TCP)
  t.equal(c.tx.state, 'Terminated')
  t.equal(c.terminatedAt(), 10_000)
})

t.test('reliable: Timer H still fires at 64*T1', async t => {
  const h = new Harness()
  const c = start(h, ALICE_TCP)
  c.tx.respond(480)
  h.advance(40_000)
  t.same(c.timeouts, ['timeout'])
  t.equal(c.terminatedAt(), 32_000)
})

t.test('Proceeding -> Accepted on 2xx (RFC 6026): INVITE absorbed, 2xx forwarded, ACK end to end, Timer L', async t => {
  const h = new Harness()
  const c = start(h)
  h.advance(1000)
  t.ok(c.tx.sendResponse(forwarded(200), 200))
  t.equal(c.tx.state, 'Accepted')
  h.advance(500)
  t.equal(h.layer.receiveRequest(request(), ALICE).kind, 'retransmission')
  t.same(h.times('SIP/2.0 200'), [1000], 'no 2xx retransmission by the transaction itself')
  t.ok(c.tx.sendResponse(forwarded(200), 200), 'a 2xx retransmission from downstream is forwarded')
  t.same(h.times('SIP/2.0 200'), [1000, 1500])
  t.notOk(c.tx.sendResponse(forwarded(486), 486), 'non-2xx discarded in Accepted')
  t.equal(c.tx.respond(180), false)
  // ACK for the 2xx with a new branch: no transaction
  t.equal(h.layer.receiveRequest(request({ method: 'ACK', branch: 'z9hG4bKalice-ack', toTag: 'btag1' }), ALICE).kind, 'ack-2xx')
  // an ACK matching the transaction in Accepted is passed on as well (RFC 6026 §7.1)
  t.equal(h.layer.receiveRequest(request({ method: 'ACK', toTag: 'btag1' }), ALICE).kind, 'ack-2xx')
  t.equal(c.tx.state, 'Accepted')
  h.advance(40_000)
  t.equal(c.terminatedAt(), 1000 + 32_000, 'Timer L = 64*T1')
  t.same(c.timeouts, [])
})

t.test('transport error terminates a server transaction', async t => {
  const h = new Harness()
  const c = start(h)
  h.layer.transportError(c.tx)
  t.same(c.timeouts, ['transport-error'])
  t.equal(c.tx.state, 'Terminated')
  t.equal(h.layer.receiveRequest(request(), ALICE).kind, 'new', 'a later INVITE starts a new transaction')
})

t.test('respond() validates the status and keeps one To tag', async t => {
  const h = new Harness()
  const c = start(h)
  t.throws(() => c.tx.respond(99), { code: 'ERR_TX_BAD_STATUS' })
  t.throws(() => c.tx.respond(700), { code: 'ERR_TX_BAD_STATUS' })
  c.tx.respond(180)
  c.tx.respond(486)
  const tags = h.sent.slice(1).map(s => parseMessage(s.data).to.tag)
  t.equal(tags[0], tags[1])
  t.equal(tags[0], c.tx.toTag)
})

t.test('transitions are asserted', async t => {
  const h = new Harness()
  const c = start(h)
  t.throws(() => (c.tx as unknown as { enter(s: string): void }).enter('Confirmed'), { code: 'ERR_TX_BAD_TRANSITION' })
  t.equal(c.tx.state, 'Proceeding')
})

// Issue "Safe on a public address" 6 (reflection): limitResponses(3) caps Timer G and the
// answers to request retransmissions at 3x the bytes received; the TU's responses always go out.
t.test('reflection-403-retransmitted: limitResponses caps Timer G by the bytes received', async t => {
  const h = new Harness()
  const c = start(h)
  const reqBytes = request().buf.length
  c.tx.limitResponses(3)
  t.ok(c.tx.respond(403, 'No Route For Request'), 'the final is sent')
  h.advance(64 * 500 + 10)
  const out = h.sent.reduce((a, s) => a + s.data.length, 0)
  t.ok(out <= 3 * reqBytes, `${out} bytes sent for ${reqBytes} received`)
  const n = h.times('SIP/2.0 403').length
  t.ok(n >= 1 && n < 11, `${n} copies instead of 11 (T1, 2T1, 4T1, T2 ... until Timer H)`)
  t.ok(h.layer.stats().withheldResponses > 0)
  t.same(c.timeouts, ['timeout'], 'Timer H still fires')

  // Without the limit: the RFC series (Timer G until Timer H).
  const h2 = new Harness()
  const c2 = start(h2)
  c2.tx.respond(403, 'No Route For Request')
  h2.advance(64 * 500 + 10)
  t.equal(h2.times('SIP/2.0 403').length, 11, 'unlimited: 11 copies in 64*T1')
  t.equal(h2.layer.stats().withheldResponses, 0)

  // A request retransmission adds its bytes: it is answered.
  const h3 = new Harness()
  const c3 = start(h3)
  c3.tx.limitResponses(3)
  c3.tx.respond(403)
  h3.advance(20_000)
  const before = h3.times('SIP/2.0 403').length
  h3.layer.receiveRequest(request(), ALICE)
  t.equal(h3.times('SIP/2.0 403').length, before + 1, 'answered on a request retransmission')
})

t.test('a final response is kept as a latin1 string for Timers H and L; Timer G and retransmissions resend the same bytes (issue 17: memory)', async t => {
  for (const source of [ALICE, ALICE_TCP]) {
    const h = new Harness()
    const c = start(h, source)
    h.clear()
    const reason = 'Busy Hére' // a UTF-8 reason phrase: latin1 keeps its bytes
    t.ok(c.tx.sendResponse(Buffer.from(forwarded(486).toString('latin1').replace(/^SIP\/2\.0 486 [^\r]*/, `SIP/2.0 486 ${reason}`), 'utf8'), 486))
    t.equal(typeof c.tx.lastResponse, 'string', `Completed keeps a string (${source.transport})`)
    const first = h.sent[0]!.data
    h.layer.receiveRequest(request(), source)
    h.advance(source === ALICE ? 600 : 0)
    const resent = h.sent.slice(1).map(s => s.data)
    t.ok(resent.length >= 1, 'resent')
    for (const b of resent) t.same(b, first, 'the same bytes again')
  }
  // An RFC 2543 client (no magic cookie): its ACK matches only by the To tag of the response the
  // transaction keeps, read back from the string (layer.ts responseToTag).
  const h = new Harness()
  const r = h.layer.receiveRequest(request({ branch: '' }), ALICE)
  const tx = (r as { tx: InviteServerTransaction }).tx
  t.ok(tx.sendResponse(forwarded(200), 200))
  t.equal(tx.state, 'Accepted')
  t.equal(typeof tx.lastResponse, 'string', 'Accepted keeps a string')
  const tag = parseMessage(forwarded(200)).to.tag!
  // (an ACK that matches nothing is also 'ack-2xx', forwarded end to end: ask the index itself)
  t.equal(h.layer.findServerTransaction(request({ branch: '', method: 'ACK', toTag: tag }), 'udp'), tx, 'the ACK still matches the 2xx by its To tag')
  t.equal(h.layer.findServerTransaction(request({ branch: '', method: 'ACK', toTag: tag + 'x' }), 'udp'), undefined, 'an ACK with another To tag does not')
})
