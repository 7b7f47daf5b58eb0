import t from 'tap'
import { parseMessage } from '@sipedge/sip'
import type { SipMessage } from '@sipedge/sip'
import { InviteClientTransaction, NonInviteClientTransaction } from '@sipedge/transaction'
import type { ClientTransaction, TimeoutReason } from '@sipedge/transaction'
import { BOB, BOB_TCP, Harness, header, outboundText, response, responseText } from './fixtures/messages.js'

const BR = 'z9hG4bKproxyinv1'

function start(h: Harness, dest = BOB, extra: { msg?: boolean } = {}) {
  const log: Array<{ t: number; status: number }> = []
  const timeouts: TimeoutReason[] = []
  let terminatedAt = -1
  const text = outboundText({ branch: BR })
  const tx = h.layer.createClient({
    request: Buffer.from(text),
    method: 'INVITE',
    branch: BR,
    dest,
    ...(extra.msg ? { msg: parseMessage(Buffer.from(text)) } : {}),
    onResponse: (m: SipMessage) => log.push({ t: h.t, status: m.status }),
    onTimeout: (_tx: ClientTransaction, r: TimeoutReason) => timeouts.push(r),
    onTerminated: () => { terminatedAt = h.t },
  })
  return { tx, log, timeouts, terminatedAt: () => terminatedAt }
}

t.test('Timer A doubles from T1 over UDP, Timer B fires at 64*T1 in Calling', async t => {
  const h = new Harness()
  const c = start(h)
  t.ok(c.tx instanceof InviteClientTransaction)
  t.equal(c.tx.state, 'Calling')
  h.advance(40_000)
  // initial send + Timer A at T1, 2T1, 4T1, 8T1, 16T1, 32T1 (cumulative 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s)
  t.same(h.times('INVITE'), [0, 500, 1500, 3500, 7500, 15500, 31500])
  t.same(c.timeouts, ['timeout'])
  t.equal(c.terminatedAt(), 32_000, 'Timer B = 64*T1')
  t.equal(c.tx.state, 'Terminated')
  const s = h.layer.stats()
  t.equal(s.retransmissions.requests, 6)
  t.equal(s.timeouts, 1)
  t.equal(s.active.ict, 0)
  t.equal(s.timersPending, 0)
})

t.test('Timer A with a custom T1', async t => {
  const h = new Harness({ t1: 100, t2: 4000 })
  const c = start(h)
  h.advance(10_000)
  t.same(h.times('INVITE'), [0, 100, 300, 700, 1500, 3100, 6300])
  t.equal(c.terminatedAt(), 6400)
})

t.test('reliable transport: no Timer A, Timer B still 64*T1', async t => {
  const h = new Harness()
  const c = start(h, BOB_TCP)
  h.advance(40_000)
  t.same(h.times('INVITE'), [0])
  t.same(c.timeouts, ['timeout'])
  t.equal(c.terminatedAt(), 32_000)
})

t.test('Calling -> Proceeding on 1xx: retransmissions stop, Timer B no longer applies', async t => {
  const h = new Harness({ timerC: 0 })
  const c = start(h)
  h.advance(700)
  h.layer.receiveResponse(response({ status: 100, branch: BR, toTag: null }), BOB)
  t.equal(c.tx.state, 'Proceeding')
  h.advance(100)
  h.layer.receiveResponse(response({ status: 180, branch: BR }), BOB)
  h.advance(60_000)
  t.same(h.times('INVITE'), [0, 500])
  t.same(c.log.map(l => l.status), [100, 180])
  t.equal(c.tx.state, 'Proceeding')
  t.same(c.timeouts, [])
})

t.test('Proceeding -> Accepted on 2xx; 2xx retransmissions passed up; Timer M = 64*T1', async t => {
  const h = new Harness()
  const c = start(h)
  h.layer.receiveResponse(response({ status: 180, branch: BR }), BOB)
  h.advance(1000)
  const r = h.layer.receiveResponse(response({ status: 200, branch: BR }), BOB)
  t.equal(r.kind, 'matched')
  t.equal(c.tx.state, 'Accepted')
  h.advance(500)
  h.layer.receiveResponse(response({ status: 200, branch: BR }), BOB)
  h.advance(1000)
  h.layer.receiveResponse(response({ status: 200, branch: BR }), BOB)
  h.layer.receiveResponse(response({ status: 486, branch: BR }), BOB)
  t.same(c.log.map(l => l.status), [180, 200, 200, 200], '2xx retransmissions reach the TU, a non-2xx does not')
  t.equal(h.times('ACK').length, 0, 'no ACK for 2xx: it is end to end')
  h.advance(40_000)
  t.equal(c.terminatedAt(), 1000 + 32_000, 'Timer M')
  t.same(c.timeouts, [])
  t.equal(h.layer.receiveResponse(response({ status: 200, branch: BR }), BOB).kind, 'stray', 'after Timer M a 2xx is stray')
})

t.test('Calling -> Accepted directly on 2xx', async t => {
  const h = new Harness()
  const c = start(h)
  h.advance(200)
  h.layer.receiveResponse(response({ status: 200, branch: BR }), BOB)
  t.equal(c.tx.state, 'Accepted')
  h.advance(40_000)
  t.same(h.times('INVITE'), [0], 'Timer A stopped')
  t.equal(c.terminatedAt(), 200 + 32_000)
})

t.test('Calling -> Completed on 4xx: hop-by-hop ACK, retransmitted 4xx re-ACKed and absorbed, Timer D', async t => {
  const h = new Harness()
  const c = start(h)
  h.advance(100)
  h.layer.receiveResponse(response({ status: 486, branch: BR, toTag: 'bobtag' }), BOB)
  t.equal(c.tx.state, 'Completed')
  const acks = h.sent.filter(s => s.line.startsWith('ACK'))
  t.equal(acks.length, 1)
  const ack = acks[0]!
  t.same(ack.dest, BOB, 'ACK goes where the INVITE went')
  t.equal(ack.line, 'ACK sip:bob@192.0.2.20:5060 SIP/2.0', 'same Request-URI as the INVITE')
  const m = parseMessage(ack.data)
  t.equal(m.vias.length, 1, 'a single Via')
  t.equal(m.topVia.branch, BR, 'same branch as the INVITE')
  t.equal(m.topVia.host, 'proxy.example.net')
  t.equal(m.to.tag, 'bobtag', 'To with the tag of the response')
  t.same(m.cseq, { seq: 1, method: 'ACK' })
  t.equal(m.from.tag, 'atag1')
  t.equal(m.callId, 'call-1@alice.example.com')
  t.match(header(ack.text, 'CSeq'), /^1 ACK$/)
  h.advance(1000)
  h.layer.receiveResponse(response({ status: 486, branch: BR, toTag: 'bobtag' }), BOB)
  t.equal(h.times('ACK').length, 2, 'ACK resent for the retransmitted final')
  t.same(c.log.map(l => l.status), [486], 'final passed up once')
  t.equal(h.layer.stats().absorbed.responses, 1)
  h.advance(40_000)
  t.equal(c.terminatedAt(), 100 + 32_000, 'Timer D = 32 s on UDP')
  t.same(h.times('INVITE'), [0], 'no retransmission after the final')
})

t.test('Proceeding -> Completed on 3xx; ACK built from the given msg', async t => {
  const h = new Harness()
  const c = start(h, BOB, { msg: true })
  h.layer.receiveResponse(response({ status: 183, branch: BR }), BOB)
  h.layer.receiveResponse(response({ status: 302, branch: BR }), BOB)
  t.equal(c.tx.state, 'Completed')
  t.equal(h.times('ACK').length, 1)
  t.same(c.log.map(l => l.status), [183, 302])
})

t.test('reliable transport: Timer D is zero', async t => {
  const h = new Harness()
  const c = start(h, BOB_TCP)
  h.advance(10)
  h.layer.receiveResponse(response({ status: 404, branch: BR }), BOB_TCP)
  t.equal(c.tx.state, 'Terminated')
  t.equal(c.terminatedAt(), 10)
  t.same(c.log.map(l => l.status), [404], 'response passed up before terminating')
  t.equal(h.times('ACK').length, 1, 'ACK sent even on a reliable transport')
})

t.test('transport error terminates with reason transport-error (§17.1.4)', async t => {
  const h = new Harness()
  const c = start(h)
  h.advance(100)
  h.layer.transportError(c.tx)
  t.equal(c.tx.state, 'Terminated')
  t.same(c.timeouts, ['transport-error'])
  h.advance(5000)
  t.same(h.times('INVITE'), [0])
  t.equal(h.layer.stats().transportErrors, 1)
})

t.test('cancel() before any provisional waits for one (§9.1), then sends a correct CANCEL', async t => {
  const h = new Harness()
  const c = start(h)
  const cancelResponses: number[] = []
  const r = c.tx.cancel({ onResponse: m => cancelResponses.push(m.status) })
  t.equal(r, null, 'deferred')
  t.ok(c.tx.cancelRequested)
  h.advance(600)
  t.equal(h.times('CANCEL').length, 0, 'no CANCEL without a provisional')
  h.layer.receiveResponse(response({ status: 180, branch: BR }), BOB)
  t.same(h.times('CANCEL'), [600])
  const cancelTx = c.tx.cancelTx!
  t.ok(cancelTx instanceof NonInviteClientTransaction)
  t.equal(cancelTx.method, 'CANCEL')
  t.equal(cancelTx.branch, BR)
  const m = parseMessage(h.sent.find(s => s.line.startsWith('CANCEL'))!.data)
  t.equal(m.uri, 'sip:bob@192.0.2.20:5060', 'same Request-URI')
  t.equal(m.vias.length, 1, 'single Via')
  t.equal(m.topVia.branch, BR, 'same branch')
  t.same(m.cseq, { seq: 1, method: 'CANCEL' })
  t.equal(m.to.tag, undefined, 'To of the INVITE')
  t.equal(m.callId, 'call-1@alice.example.com')
  // the CANCEL is a non-INVITE transaction of its own: Timer E applies
  h.advance(500)
  t.same(h.times('CANCEL'), [600, 1100])
  // responses are matched by branch + CSeq method (§17.1.3)
  const r200 = h.layer.receiveResponse(response({ status: 200, branch: BR, method: 'CANCEL' }), BOB)
  t.equal(r200.kind === 'matched' && r200.tx, cancelTx)
  t.same(cancelResponses, [200])
  t.equal(c.tx.state, 'Proceeding')
  t.equal(c.tx.cancel(), cancelTx, 'a second cancel() returns the same transaction')
  t.equal(h.times('CANCEL').length, 2, 'and sends nothing')
  h.layer.receiveResponse(response({ status: 487, branch: BR }), BOB)
  t.equal(c.tx.state, 'Completed')
  t.same(c.log.map(l => l.status), [180, 487])
})

t.test('cancel() in Proceeding sends at once; no final within 64*T1 -> cancel-timeout (§9.1)', async t => {
  const h = new Harness({ timerC: 0 })
  const c = start(h)
  h.layer.receiveResponse(response({ status: 180, branch: BR }), BOB)
  h.advance(1000)
  const ctx = c.tx.cancel()
  t.ok(ctx)
  t.same(h.times('CANCEL'), [1000])
  h.layer.receiveResponse(response({ status: 200, branch: BR, method: 'CANCEL' }), BOB)
  h.advance(40_000)
  t.same(c.timeouts, ['cancel-timeout'])
  t.equal(c.terminatedAt(), 1000 + 32_000)
})

t.test('cancel() after a final response does nothing', async t => {
  const h = new Harness()
  const c = start(h)
  h.layer.receiveResponse(response({ status: 200, branch: BR }), BOB)
  t.equal(c.tx.cancel(), null)
  t.notOk(c.tx.cancelRequested)
  t.equal(h.times('CANCEL').length, 0)
})

t.test('Timer C: reset by 101-199 but not by 100; fires -> CANCEL (§16.8)', async t => {
  const h = new Harness({ timerC: 10_000 })
  const c = start(h)
  h.advance(1000)
  h.layer.receiveResponse(response({ status: 100, branch: BR, toTag: null }), BOB)
  h.advance(4000) // t = 5000
  h.layer.receiveResponse(response({ status: 180, branch: BR }), BOB)
  h.advance(9999)
  t.equal(h.times('CANCEL').length, 0)
  h.advance(1)
  t.same(h.times('CANCEL'), [15_000], 'Timer C restarted by the 180')
  t.equal(c.tx.state, 'Proceeding')
  h.layer.receiveResponse(response({ status: 487, branch: BR }), BOB)
  t.equal(c.tx.state, 'Completed')
})

t.test('Timer C without a provisional -> timer-c (treated as 408, §16.8)', async t => {
  const h = new Harness({ timerC: 5000 })
  const c = start(h)
  h.advance(6000)
  t.same(c.timeouts, ['timer-c'])
  t.equal(c.terminatedAt(), 5000)
  t.equal(h.times('CANCEL').length, 0)
})

t.test('transitions are asserted', async t => {
  const h = new Harness()
  const c = start(h)
  h.layer.receiveResponse(response({ status: 200, branch: BR }), BOB)
  t.throws(() => (c.tx as unknown as { enter(s: string): void }).enter('Calling'), { code: 'ERR_TX_BAD_TRANSITION' })
  t.throws(() => (c.tx as unknown as { enter(s: string): void }).enter('Completed'), { code: 'ERR_TX_BAD_TRANSITION' })
})

t.test('createClient refuses ACK and duplicates', async t => {
  const h = new Harness()
  start(h)
  t.throws(() => start(h), { code: 'ERR_TX_DUPLICATE' })
  t.throws(() => h.layer.createClient({ request: Buffer.from('x'), method: 'ACK', branch: 'z9hG4bKx', dest: BOB, onResponse: () => {} }), { code: 'ERR_TX_ACK_NOT_A_TRANSACTION' })
})

t.test('a 2xx after a non-2xx final (forking downstream) still reaches the owner', async t => {
  const h = new Harness()
  const c = start(h)
  h.layer.receiveResponse(response({ status: 486, branch: BR }), BOB)
  h.layer.receiveResponse(response({ status: 200, branch: BR, toTag: 'other' }), BOB)
  t.same(c.log.map(l => l.status), [486, 200])
  t.equal(c.tx.state, 'Completed')
})

t.test('Accepted lets go of the request bytes (Timer M holds the transaction 32 s; nothing resends or builds from them)', async t => {
  const h = new Harness()
  const c = start(h)
  const ict = c.tx as InviteClientTransaction
  t.not(ict.request, null, 'kept while Timer A may resend it')
  h.layer.receiveResponse(response({ status: 200, branch: BR }), BOB)
  t.equal(ict.state, 'Accepted')
  t.equal(ict.request, null, 'released in Accepted')
  t.equal(ict.cancel(), null, 'no CANCEL after a final')
  h.layer.receiveResponse(response({ status: 200, branch: BR }), BOB)
  t.same(c.log.map(l => l.status), [200, 200], 'a 2xx retransmission is still passed up')
  t.throws(() => ict.requestMessage(), { code: 'ERR_TX_NO_REQUEST' }, 'asking for the parsed request now is a clear error, not a crash on null')
})

t.test('what Completed keeps for Timer D: the ACK in a string of its own, not the request; built from an exact copy', async t => {
  const h = new Harness()
  // the proxy hands createClient a gather list whose pieces are cut from shared slabs
  const text = outboundText({ branch: BR })
  const cut = text.indexOf('\r\n') + 2
  const tx = h.layer.createClient({
    request: [Buffer.from(text.slice(0, cut)), Buffer.from(text.slice(cut))],
    method: 'INVITE',
    branch: BR,
    dest: BOB,
    onResponse: () => {},
    onTimeout: () => {},
  }) as InviteClientTransaction
  const kept = tx.request as Buffer
  t.ok(!Array.isArray(kept) && kept.buffer.byteLength === kept.length, 'the request is kept in a store of exactly its size while the call rings')
  t.equal(kept.toString(), text)
  h.advance(600)
  t.same(h.sent.filter(s => s.line.startsWith('INVITE')).map(s => s.text), [text, text], 'Timer A resends the same bytes')
  h.layer.receiveResponse(response({ status: 180, branch: BR }), BOB)
  t.not(tx.cancel(), null, 'CANCEL sent in Proceeding')
  const m = tx.msg!
  t.ok(m !== null, 'the CANCEL parsed the request')
  t.equal(m.buf.buffer.byteLength, m.buf.length, 'parsed from a store of exactly its size, not from a pool slab (Buffer.concat)')
  t.equal(m.buf.toString(), text)
  // a To display name in UTF-8: the ACK kept as latin1 must go out byte for byte the same
  const r487 = responseText({ status: 487, branch: BR, toTag: 'bobtag' }).replace('To: Bob', 'To: "Bób Ünïcode"')
  h.layer.receiveResponse(parseMessage(Buffer.from(r487)), BOB)
  t.equal(tx.state, 'Completed')
  t.equal(tx.msg, null, 'the parsed INVITE is released in Completed')
  t.equal(tx.request, null, 'and the request bytes')
  t.equal(typeof tx.ack, 'string', 'the ACK is kept as a string (a Buffer view of the builder\'s slab would keep 16 KB alive for 32 s)')
  h.advance(1000)
  h.layer.receiveResponse(parseMessage(Buffer.from(r487)), BOB)
  const acks = h.sent.filter(s => s.line.startsWith('ACK'))
  t.equal(acks.length, 2, 'the retransmitted 487 is re-ACKed')
  t.ok(acks[1]!.data.equals(acks[0]!.data), 'with exactly the bytes of the first ACK')
  t.match(acks[0]!.data.toString('utf8'), /To: "Bób Ünïcode" <sip:bob@example.com>;tag=bobtag/)
  t.throws(() => tx.requestMessage(), { code: 'ERR_TX_NO_REQUEST' })
})

t.test('Accepted releases a parsed request too', async t => {
  const h = new Harness()
  const c = start(h, BOB, { msg: true })
  const ict = c.tx as InviteClientTransaction
  t.not(ict.msg, null)
  h.layer.receiveResponse(response({ status: 200, branch: BR }), BOB)
  t.equal(ict.state, 'Accepted')
  t.equal(ict.msg, null)
})
