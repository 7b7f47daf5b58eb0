import t from 'tap'
import type { SipMessage } from '@sipedge/sip'
import { InviteServerTransaction, NonInviteServerTransaction, responseDestination } from '@sipedge/transaction'
import { ALICE, BOB, Harness, outboundText, request, response } from './fixtures/messages.js'

t.test('server: branch + sent-by + method (§17.2.3)', async t => {
  const h = new Harness()
  const first = h.layer.receiveRequest(request({ method: 'OPTIONS' }), ALICE)
  t.equal(first.kind, 'new')
  t.equal(h.layer.receiveRequest(request({ method: 'OPTIONS' }), ALICE).kind, 'retransmission')
  t.equal(h.layer.receiveRequest(request({ method: 'OPTIONS', viaHost: 'ALICE.example.com' }), ALICE).kind, 'retransmission', 'host compared case-insensitively')
  t.equal(h.layer.receiveRequest(request({ method: 'OPTIONS', viaHost: 'mallory.example.com' }), ALICE).kind, 'new', 'a different sent-by host does not match')
  t.equal(h.layer.receiveRequest(request({ method: 'OPTIONS', viaPort: 5070 }), ALICE).kind, 'new', 'a different sent-by port does not match')
  t.equal(h.layer.receiveRequest(request({ method: 'OPTIONS', viaPort: null }), ALICE).kind, 'new', 'an absent port is not 5060')
  t.equal(h.layer.receiveRequest(request({ method: 'OPTIONS', branch: 'z9hG4bKother' }), ALICE).kind, 'new', 'another branch')
  t.equal(h.layer.receiveRequest(request({ method: 'INFO' }), ALICE).kind, 'new', 'same branch, another method')
  t.equal(h.layer.stats().active.nist, 6)
})

t.test('server: ACK matches the INVITE transaction; ACK for a 2xx matches nothing', async t => {
  const h = new Harness()
  const r = h.layer.receiveRequest(request(), ALICE)
  t.equal(r.kind, 'new')
  const tx = (r as { tx: InviteServerTransaction }).tx
  tx.respond(486)
  const ack = request({ method: 'ACK', toTag: tx.toTag! })
  t.equal(h.layer.findServerTransaction(ack), tx)
  t.equal(h.layer.receiveRequest(ack, ALICE).kind, 'ack-absorbed')
  t.equal(tx.state, 'Confirmed')
  t.equal(h.layer.receiveRequest(request({ method: 'ACK', viaHost: 'mallory.example.com' }), ALICE).kind, 'ack-2xx', 'other sent-by: not this transaction')
  t.equal(h.layer.receiveRequest(request({ method: 'ACK', branch: 'z9hG4bKnew' }), ALICE).kind, 'ack-2xx')
})

t.test('server: CANCEL is its own transaction and finds its INVITE (§9.2)', async t => {
  const h = new Harness()
  const inv = h.layer.receiveRequest(request(), ALICE) as { kind: 'new'; tx: InviteServerTransaction }
  const seen: NonInviteServerTransaction[] = []
  inv.tx.onCancelled = (_i, c) => { seen.push(c) }
  const cancel = request({ method: 'CANCEL' })
  t.equal(h.layer.findInviteServerTransactionForCancel(cancel), inv.tx)
  const r = h.layer.receiveRequest(cancel, ALICE)
  t.equal(r.kind, 'cancel')
  if (r.kind !== 'cancel') return
  t.ok(r.tx instanceof NonInviteServerTransaction)
  t.equal(r.tx.method, 'CANCEL')
  t.equal(r.invite, inv.tx)
  t.ok(inv.tx.cancelled)
  t.same(seen, [r.tx], 'onCancelled called with the CANCEL transaction')
  t.equal(inv.tx.state, 'Proceeding', 'the INVITE is not touched by the layer')
  t.equal(h.layer.receiveRequest(request({ method: 'CANCEL' }), ALICE).kind, 'retransmission', 'CANCEL retransmission')
  r.tx.respond(200)
  inv.tx.respond(487)
  t.same(h.sent.map(s => s.line), ['SIP/2.0 100 Trying', 'SIP/2.0 200 OK', 'SIP/2.0 487 Request Terminated'])
  const other = h.layer.receiveRequest(request({ method: 'CANCEL', branch: 'z9hG4bKnothing' }), ALICE)
  t.equal(other.kind === 'cancel' && other.invite, undefined, 'CANCEL for an unknown INVITE')
  t.equal(h.layer.findInviteServerTransactionForCancel(request({ method: 'CANCEL', viaHost: 'mallory.example.com' })), undefined, 'sent-by must match')
})

t.test('server: RFC 2543 fallback (no magic cookie)', async t => {
  const h = new Harness()
  const legacy = { branch: '' }
  const r = h.layer.receiveRequest(request(legacy), ALICE)
  t.equal(r.kind, 'new')
  const tx = (r as { tx: InviteServerTransaction }).tx
  t.equal(tx.key2543 !== null, true)
  t.equal(h.layer.receiveRequest(request(legacy), ALICE).kind, 'retransmission', 'R-URI, tags, Call-ID, CSeq, top Via equal')
  t.equal(h.layer.receiveRequest(request({ ...legacy, cseq: 2 }), ALICE).kind, 'new', 'CSeq differs')
  t.equal(h.layer.receiveRequest(request({ ...legacy, fromTag: 'other' }), ALICE).kind, 'new', 'From tag differs')
  t.equal(h.layer.receiveRequest(request({ ...legacy, callId: 'x@y' }), ALICE).kind, 'new', 'Call-ID differs')
  t.equal(h.layer.receiveRequest(request({ ...legacy, uri: 'sip:carol@example.com' }), ALICE).kind, 'new', 'Request-URI differs')
  t.equal(h.layer.receiveRequest(request({ ...legacy, viaPort: 5999 }), ALICE).kind, 'new', 'top Via differs')
  t.equal(h.layer.receiveRequest(request({ ...legacy, branch: 'oldstyle1' }), ALICE).kind, 'new', 'a non-cookie branch is part of the Via')
  // the legacy branch 'oldstyle1' is not indexed by branch
  t.equal(h.layer.receiveRequest(request({ ...legacy, branch: 'oldstyle1' }), ALICE).kind, 'retransmission')
  // CANCEL finds the INVITE by the same fields (method compared as INVITE)
  t.equal(h.layer.findInviteServerTransactionForCancel(request({ ...legacy, method: 'CANCEL' })), tx)
  tx.respond(486)
  // ACK: To tag of the ACK must match the To tag of the response sent
  t.equal(h.layer.receiveRequest(request({ ...legacy, method: 'ACK', toTag: 'wrong' }), ALICE).kind, 'ack-2xx', 'wrong To tag: not this transaction')
  t.equal(tx.state, 'Completed')
  t.equal(h.layer.receiveRequest(request({ ...legacy, method: 'ACK', toTag: tx.toTag! }), ALICE).kind, 'ack-absorbed')
  t.equal(tx.state, 'Confirmed')
})

t.test('server: RFC 2543 ACK after a forwarded response (To tag read from the bytes)', async t => {
  const h = new Harness()
  const r = h.layer.receiveRequest(request({ branch: '' }), ALICE)
  const tx = (r as { tx: InviteServerTransaction }).tx
  const text = response({ status: 404, branch: 'z9hG4bKx', toTag: 'downstream' }).buf.toString('latin1').replace(/^Via: SIP\/2.0\/UDP proxy[^\r]*\r\n/m, '')
  tx.sendResponse(Buffer.from(text), 404)
  t.equal(tx.toTag, null)
  t.equal(h.layer.receiveRequest(request({ branch: '', method: 'ACK', toTag: 'downstream' }), ALICE).kind, 'ack-absorbed')
})

t.test('client: branch + CSeq method (§17.1.3); stray responses', async t => {
  const strays: SipMessage[] = []
  const h = new Harness({ onStrayResponse: m => { strays.push(m) } })
  const br = 'z9hG4bKc1'
  const got: string[] = []
  const inv = h.layer.createClient({
    request: Buffer.from(outboundText({ branch: br })), method: 'INVITE', branch: br, dest: BOB,
    onResponse: (m, tx) => { got.push(`${tx.method} ${m.status}`) },
  })
  t.equal(h.layer.findClient(br, 'INVITE'), inv)
  t.equal(h.layer.findClient(br, 'CANCEL'), undefined)
  h.layer.receiveResponse(response({ status: 180, branch: br }), BOB)
  const ctx = inv.cancel()!
  t.equal(h.layer.findClient(br, 'CANCEL'), ctx)
  h.layer.receiveResponse(response({ status: 200, branch: br, method: 'CANCEL' }), BOB)
  h.layer.receiveResponse(response({ status: 487, branch: br }), BOB)
  t.same(got, ['INVITE 180', 'INVITE 487'], 'the INVITE owner sees only INVITE responses')
  t.equal(h.layer.receiveResponse(response({ status: 200, branch: 'z9hG4bKunknown' }), BOB).kind, 'stray')
  t.equal(h.layer.receiveResponse(response({ status: 200, branch: br, method: 'BYE' }), BOB).kind, 'stray', 'same branch, other method')
  t.equal(strays.length, 2)
  t.equal(h.layer.stats().strayResponses, 2)
})

t.test('responseDestination (§18.2.2, RFC 3581)', async t => {
  const src = { transport: 'udp' as const, address: '198.51.100.7', port: 34567 }
  t.same(responseDestination(request({ viaPort: 5062 }), src, false), { transport: 'udp', address: '198.51.100.7', port: 5062, socketId: undefined }, 'received + sent-by port')
  t.same(responseDestination(request({ viaPort: null }), src, false), { transport: 'udp', address: '198.51.100.7', port: 5060, socketId: undefined }, 'default port 5060')
  t.equal(responseDestination(request({ viaParams: ';rport' }), src, false), src, 'rport: the source')
  t.equal(responseDestination(request({ viaPort: 5062 }), src, false, true), src, 'forceRport (nat.force_rport): the source without rport')
  t.same(responseDestination(request({ viaParams: ';maddr=239.1.1.1' }), src, false, true), { transport: 'udp', address: '239.1.1.1', port: 5060, socketId: undefined }, 'forceRport: maddr still wins')
  t.same(responseDestination(request({ viaParams: ';maddr=239.1.1.1' }), src, false), { transport: 'udp', address: '239.1.1.1', port: 5060, socketId: undefined }, 'maddr')
  const tcp = { transport: 'tcp' as const, address: '198.51.100.7', port: 34567, connId: 9 }
  t.equal(responseDestination(request(), tcp, true), tcp, 'reliable: the same connection')
})

// Issue "Safe on a public address" 8: the RFC 5118 torture REGISTERs share branch and sent-by;
// ipv6-good sent over UDP and then over TCP had the TCP one absorbed as a "retransmission" of
// the UDP transaction (not forwarded, the UDP transaction's 200 sent again). A request on another
// transport is a new request (socket test: packages/tests/test/public-address.test.ts).
t.test('torture-register-over-tcp-absorbed: same branch and sent-by on another transport is a new transaction', async t => {
  const h = new Harness()
  const TCP = { ...ALICE, transport: 'tcp' as const, connId: 7 }
  const udp = h.layer.receiveRequest(request({ method: 'REGISTER' }), ALICE)
  t.equal(udp.kind, 'new')
  ;(udp as { tx: NonInviteServerTransaction }).tx.respond(200)
  const before = h.sent.length
  const tcp = h.layer.receiveRequest(request({ method: 'REGISTER' }), TCP)
  t.equal(tcp.kind, 'new', 'the TCP copy is not a retransmission of the UDP transaction')
  t.equal(h.sent.length, before, 'the UDP 200 is not sent again')
  t.equal(h.layer.receiveRequest(request({ method: 'REGISTER' }), ALICE).kind, 'retransmission', 'the UDP retransmission still matches')
  t.equal(h.layer.receiveRequest(request({ method: 'REGISTER' }), { ...TCP, connId: 8 }).kind, 'retransmission', 'TCP: any connection of the same transport')
  t.equal(h.layer.findServerTransaction(request({ method: 'REGISTER' }), 'tls'), undefined, 'findServerTransaction takes the transport')
  t.ok(h.layer.findServerTransaction(request({ method: 'REGISTER' })), 'and without it matches any')
  // INVITE, its ACK and CANCEL follow the same rule.
  const inv = h.layer.receiveRequest(request(), ALICE) as { kind: 'new'; tx: InviteServerTransaction }
  t.equal(h.layer.findInviteServerTransactionForCancel(request({ method: 'CANCEL' }), 'tcp'), undefined, 'CANCEL over TCP does not cancel the UDP INVITE')
  t.equal(h.layer.findInviteServerTransactionForCancel(request({ method: 'CANCEL' }), 'udp'), inv.tx)
  inv.tx.respond(486)
  t.equal(h.layer.receiveRequest(request({ method: 'ACK', toTag: inv.tx.toTag! }), TCP).kind, 'ack-2xx', 'an ACK over TCP is not the UDP INVITE\'s')
  t.equal(inv.tx.state, 'Completed')
})
