// layer.transportError(dest): a transport failure reported for a destination ends, at once, every
// client transaction still waiting for a final response there (RFC 3261 §17.1.4, §8.1.3.1), so
// the proxy fails over to the next destination without waiting for Timer B/F.
// Fake clock, manual timers, a send log: nothing here sleeps or opens a socket.
import t from 'tap'
import type { SipMessage } from '@sipedge/sip'
import type { ClientTransaction, Destination, TimeoutReason, TransportFailure } from '@sipedge/transaction'
import { ALICE_TCP, BOB, BOB_TCP, Harness, outboundText, request, response } from './fixtures/messages.js'

interface Started {
  tx: ClientTransaction
  log: number[]
  timeouts: Array<{ t: number; reason: TimeoutReason }>
  terminatedAt: () => number
}

function start(h: Harness, method: string, branch: string, dest: Destination, onTimeout?: (tx: ClientTransaction, r: TimeoutReason) => void): Started {
  const log: number[] = []
  const timeouts: Array<{ t: number; reason: TimeoutReason }> = []
  let terminatedAt = -1
  const tx = h.layer.createClient({
    request: Buffer.from(outboundText({ branch, method })),
    method,
    branch,
    dest,
    onResponse: (m: SipMessage) => log.push(m.status),
    onTimeout: (tx: ClientTransaction, reason: TimeoutReason) => {
      timeouts.push({ t: h.t, reason })
      onTimeout?.(tx, reason)
    },
    onTerminated: () => { terminatedAt = h.t },
  })
  return { tx, log, timeouts, terminatedAt: () => terminatedAt }
}

/** The private destination index, checked so that nothing leaks. */
function index(h: Harness): { size: number; addresses: number } {
  return (h.layer as unknown as { pending: { size: number; addresses: number } }).pending
}

/** Transactions listed for transport errors. */
function listed(h: Harness): number {
  return index(h).size
}

const BOB_TCP_FAILED: TransportFailure = { transport: 'tcp', address: BOB_TCP.address, port: BOB_TCP.port }

t.test('INVITE over TCP: onTimeout(transport-error) at once, no Timer B later', async t => {
  const h = new Harness()
  const c = start(h, 'INVITE', 'z9hG4bKte1', BOB_TCP)
  h.advance(150)
  t.equal(h.layer.transportError(BOB_TCP_FAILED), 1, 'one transaction ended')
  t.same(c.timeouts, [{ t: 150, reason: 'transport-error' }])
  t.equal(c.terminatedAt(), 150)
  t.equal(c.tx.state, 'Terminated')
  h.advance(40_000)
  t.same(c.timeouts.map(x => x.reason), ['transport-error'], 'Timer B does not fire afterwards')
  t.same(h.times('INVITE'), [0])
  const s = h.layer.stats()
  t.equal(s.transportErrors, 1)
  t.equal(s.timeouts, 0)
  t.equal(s.active.ict, 0)
  t.equal(s.timersPending, 0)
  t.equal(listed(h), 0)
  t.equal(h.layer.findClient('z9hG4bKte1', 'INVITE'), undefined, 'out of the branch index too')
})

t.test('INVITE over UDP: Timer A retransmissions stop with the error', async t => {
  const h = new Harness()
  const c = start(h, 'INVITE', 'z9hG4bKte2', BOB)
  h.advance(600)
  t.equal(h.layer.transportError({ transport: 'udp', address: BOB.address, port: BOB.port }), 1)
  h.advance(40_000)
  t.same(h.times('INVITE'), [0, 500])
  t.same(c.timeouts, [{ t: 600, reason: 'transport-error' }])
})

t.test('non-INVITE: onTimeout(transport-error) at once, no Timer F later', async t => {
  const h = new Harness()
  const c = start(h, 'OPTIONS', 'z9hG4bKte3', BOB_TCP)
  h.advance(20)
  t.equal(h.layer.transportError(BOB_TCP_FAILED), 1)
  t.same(c.timeouts, [{ t: 20, reason: 'transport-error' }])
  h.advance(40_000)
  t.same(c.timeouts.length, 1)
  t.equal(h.layer.stats().active.nict, 0)
  t.equal(h.layer.stats().timersPending, 0)
})

t.test('in Proceeding (after a 1xx) the INVITE still waits for its final: it fails too', async t => {
  const h = new Harness()
  const c = start(h, 'INVITE', 'z9hG4bKte4', BOB_TCP)
  h.layer.receiveResponse(response({ status: 180, branch: 'z9hG4bKte4' }), BOB_TCP)
  t.equal(c.tx.state, 'Proceeding')
  t.equal(h.layer.transportError(BOB_TCP_FAILED), 1)
  t.same(c.timeouts.map(x => x.reason), ['transport-error'])
  t.same(c.log, [180])
})

t.test('an INVITE and its CANCEL to the failed destination both end', async t => {
  const h = new Harness()
  const c = start(h, 'INVITE', 'z9hG4bKte5', BOB_TCP)
  h.layer.receiveResponse(response({ status: 180, branch: 'z9hG4bKte5' }), BOB_TCP)
  const cancelTimeouts: TimeoutReason[] = []
  const cancel = (c.tx as Extract<ClientTransaction, { kind: 'ict' }>).cancel({ onTimeout: (_tx, r) => cancelTimeouts.push(r) })
  t.ok(cancel)
  t.equal(h.layer.transportError(BOB_TCP_FAILED), 2)
  t.same(cancelTimeouts, ['transport-error'])
  t.same(c.timeouts.map(x => x.reason), ['transport-error'])
  t.equal(h.layer.stats().active.total, 0)
})

t.test('transactions to other destinations are untouched', async t => {
  const h = new Harness()
  const failed = start(h, 'INVITE', 'z9hG4bKte6', BOB_TCP)
  const otherPort = start(h, 'INVITE', 'z9hG4bKte7', { ...BOB_TCP, port: 5070, connId: 8 })
  const otherAddress = start(h, 'OPTIONS', 'z9hG4bKte8', { transport: 'tcp', address: '192.0.2.30', port: BOB_TCP.port, connId: 9 })
  const otherTransport = start(h, 'OPTIONS', 'z9hG4bKte9', { transport: 'tls', address: BOB_TCP.address, port: BOB_TCP.port, connId: 10 })
  const udp = start(h, 'INVITE', 'z9hG4bKte10', BOB)
  t.equal(h.layer.transportError(BOB_TCP_FAILED), 1)
  t.same(failed.timeouts.map(x => x.reason), ['transport-error'])
  for (const c of [otherPort, otherAddress, otherTransport, udp]) {
    t.equal(c.tx.state === 'Calling' || c.tx.state === 'Trying', true, `${c.tx.branch} still waits`)
    t.same(c.timeouts, [])
  }
  // they go on as usual: a final response, or their own Timer B/F
  h.layer.receiveResponse(response({ status: 200, branch: 'z9hG4bKte7' }), otherPort.tx.dest)
  t.same(otherPort.log, [200])
  h.advance(40_000)
  t.same(otherAddress.timeouts.map(x => x.reason), ['timeout'])
  t.same(otherTransport.timeouts.map(x => x.reason), ['timeout'])
  t.same(udp.timeouts.map(x => x.reason), ['timeout'])
  t.equal(listed(h), 0)
})

t.test('an error after the final response changes nothing', async t => {
  const h = new Harness()
  const accepted = start(h, 'INVITE', 'z9hG4bKte11', BOB)
  const completed = start(h, 'INVITE', 'z9hG4bKte12', BOB)
  const nict = start(h, 'OPTIONS', 'z9hG4bKte13', BOB)
  h.advance(100) // a multiple of the 50 ms wheel tick: the wait timers below fire on the dot
  h.layer.receiveResponse(response({ status: 200, branch: 'z9hG4bKte11' }), BOB)
  h.layer.receiveResponse(response({ status: 486, branch: 'z9hG4bKte12' }), BOB)
  h.layer.receiveResponse(response({ status: 200, branch: 'z9hG4bKte13', method: 'OPTIONS' }), BOB)
  t.equal(listed(h), 0, 'a final response takes a transaction off the list')
  t.equal(h.layer.transportError({ transport: 'udp', address: BOB.address, port: BOB.port }), 0)
  t.equal(accepted.tx.state, 'Accepted')
  t.equal(completed.tx.state, 'Completed')
  t.equal(nict.tx.state, 'Completed')
  // a retransmitted 486 is still re-ACKed (Timer D runs), a 2xx still passed up (Timer M runs)
  h.layer.receiveResponse(response({ status: 486, branch: 'z9hG4bKte12' }), BOB)
  t.equal(h.times('ACK').length, 2)
  h.layer.receiveResponse(response({ status: 200, branch: 'z9hG4bKte11' }), BOB)
  t.same(accepted.log, [200, 200])
  h.advance(40_000)
  for (const c of [accepted, completed, nict]) t.same(c.timeouts, [], `${c.tx.branch}: no onTimeout`)
  t.equal(accepted.terminatedAt(), 100 + 32_000, 'Timer M')
  t.equal(completed.terminatedAt(), 100 + 32_000, 'Timer D')
  t.equal(nict.terminatedAt(), 100 + 5000, 'Timer K')
  t.equal(h.layer.stats().transportErrors, 0)
})

t.test('a connection id matches whatever the port (a connection the peer opened)', async t => {
  const h = new Harness()
  const viaConn = start(h, 'OPTIONS', 'z9hG4bKte14', { transport: 'tcp', address: '192.0.2.40', port: 40001, connId: 21 })
  const sameHostOtherConn = start(h, 'OPTIONS', 'z9hG4bKte15', { transport: 'tcp', address: '192.0.2.40', port: 40002, connId: 22 })
  t.equal(h.layer.transportError({ transport: 'tcp', address: '192.0.2.40', port: 5060, connId: 21 }), 1)
  t.same(viaConn.timeouts.map(x => x.reason), ['transport-error'])
  t.same(sameHostOtherConn.timeouts, [])
  t.equal(h.layer.transportError({ transport: 'tcp', address: '192.0.2.40', port: 5060, connId: 0 }), 0, 'connId 0 names no connection')
  t.equal(h.layer.transportError({ transport: 'tcp', address: '192.0.2.40', port: 40002 }), 1, 'address and port without a connId')
})

t.test('nothing waits on the address: 0, nothing changes', async t => {
  const h = new Harness()
  const c = start(h, 'INVITE', 'z9hG4bKte16', BOB_TCP)
  t.equal(h.layer.transportError({ transport: 'tcp', address: '198.51.100.1', port: 5060 }), 0)
  t.equal(c.tx.state, 'Calling')
  t.equal(h.layer.stats().transportErrors, 0)
})

t.test('several transactions to the destination; failover inside onTimeout is not failed by the same report', async t => {
  const h = new Harness()
  const retries: Started[] = []
  const onTimeout = (tx: ClientTransaction): void => {
    // the proxy's failover: the next destination (here, by mistake, the same one again)
    if (retries.length < 3) retries.push(start(h, tx.method, tx.branch + 'r', BOB_TCP))
  }
  const a = start(h, 'INVITE', 'z9hG4bKte17', BOB_TCP, onTimeout)
  const b = start(h, 'INVITE', 'z9hG4bKte18', BOB_TCP, onTimeout)
  const c = start(h, 'OPTIONS', 'z9hG4bKte19', BOB_TCP, onTimeout)
  t.equal(h.layer.transportError(BOB_TCP_FAILED), 3)
  for (const x of [a, b, c]) t.same(x.timeouts.map(y => y.reason), ['transport-error'])
  t.equal(retries.length, 3)
  for (const r of retries) t.equal(r.tx.terminated, false, 'the new transaction waits for its own report')
  t.equal(h.layer.transportError(BOB_TCP_FAILED), 3, 'the next report ends those')
  t.equal(h.layer.stats().transportErrors, 6)
})

t.test('a transport error reported from inside send ends the transaction cleanly', async t => {
  const h = new Harness({
    send: dest => {
      if (dest.transport === 'tcp') h.layer.transportError(dest)
    },
  })
  const c = start(h, 'INVITE', 'z9hG4bKte20', BOB_TCP)
  t.equal(c.tx.state, 'Terminated')
  t.same(c.timeouts, [{ t: 0, reason: 'transport-error' }])
  t.equal(c.terminatedAt(), 0)
  const s = h.layer.stats()
  t.equal(s.active.total, 0)
  t.equal(s.timersPending, 0, 'no timer left behind')
  h.advance(40_000)
  t.equal(c.timeouts.length, 1)
  const n = start(h, 'OPTIONS', 'z9hG4bKte21', BOB_TCP)
  t.same(n.timeouts.map(x => x.reason), ['transport-error'])
  t.equal(h.layer.stats().timersPending, 0)
})

t.test('server transactions are not failed by a destination report (§18.2.2: resent at the sent-by)', async t => {
  const h = new Harness()
  const r = h.layer.receiveRequest(request({ method: 'INVITE' }), ALICE_TCP)
  t.equal(r.kind, 'new')
  const tx = r.kind === 'new' ? r.tx : null
  t.equal(h.layer.transportError({ transport: 'tcp', address: ALICE_TCP.address, port: ALICE_TCP.port, connId: ALICE_TCP.connId! }), 0)
  t.equal(tx?.state, 'Proceeding')
})

t.test('transportError(tx) still ends one transaction in any state and says whether it did', async t => {
  const h = new Harness()
  const c = start(h, 'INVITE', 'z9hG4bKte22', BOB)
  h.layer.receiveResponse(response({ status: 200, branch: 'z9hG4bKte22' }), BOB)
  t.equal(h.layer.transportError(c.tx), 1)
  t.same(c.timeouts.map(x => x.reason), ['transport-error'])
  t.equal(h.layer.transportError(c.tx), 0, 'already terminated')
})

t.test('the index of addresses stays bounded: emptied lists are swept', async t => {
  const h = new Harness({ timerC: 0 })
  const keep = start(h, 'INVITE', 'z9hG4bKkeep', BOB_TCP)
  let maxAddresses = 0
  let done = 0
  for (let i = 0; i < 5000; i++) {
    const address = `198.51.${(i >> 8) & 255}.${i & 255}`
    const c = start(h, 'OPTIONS', 'z9hG4bKsweep' + i, { transport: 'tcp', address, port: 5060, connId: 100 + i })
    h.layer.receiveResponse(response({ status: 200, branch: 'z9hG4bKsweep' + i, method: 'OPTIONS' }), c.tx.dest)
    if (c.tx.state === 'Terminated') done++ // Timer K is zero on TCP
    maxAddresses = Math.max(maxAddresses, index(h).addresses)
  }
  t.equal(done, 5000)
  t.ok(maxAddresses > 1024, `empty lists are kept a while (${maxAddresses} addresses at most)`)
  t.ok(maxAddresses <= 2 * 2 + 1024 + 1, `then swept: at most ${maxAddresses} addresses held for 5000 used one after the other`)
  t.equal(listed(h), 1, 'only the INVITE still waits')
  // a swept address works as before, and so does the one that was never emptied
  const again = start(h, 'OPTIONS', 'z9hG4bKagain', { transport: 'tcp', address: '198.51.0.7', port: 5060 })
  t.equal(h.layer.transportError({ transport: 'tcp', address: '198.51.0.7', port: 5060 }), 1)
  t.same(again.timeouts.map(x => x.reason), ['transport-error'])
  t.equal(h.layer.transportError(BOB_TCP_FAILED), 1)
  t.same(keep.timeouts.map(x => x.reason), ['transport-error'])
})
