// Completed non-INVITE server transactions over UDP held off the V8 heap until Timer J
// (parked.ts, issue 17): the store on its own, then through the layer.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import fc from 'fast-check'
import { NonInviteServerTransaction, ParkedStore, SLAB_BYTES } from '@sipedge/transaction'
import type { Destination, TransportName } from '@sipedge/transaction'
import { ALICE, ALICE_TCP, Harness, request } from './fixtures/messages.js'

const DEST: Destination = { transport: 'udp', address: '127.0.0.7', port: 5062, socketId: 3, connId: 0 }

function rec(i: number, expiresAt: number, o: { response?: Buffer | Buffer[]; host?: string; port?: number; arrival?: TransportName; dest?: Destination; ratio?: number } = {}) {
  return {
    method: 'REGISTER', branch: `z9hG4bK-${i}`, viaHost: o.host ?? 'pc33.example.com', viaPort: o.port ?? 5060, arrival: o.arrival ?? 'udp',
    dest: o.dest ?? DEST, response: o.response ?? Buffer.from(`SIP/2.0 200 OK\r\nX-N: ${i}\r\n\r\n`), sentBytes: 30, requestBytes: 100, ratio: o.ratio ?? 0, expiresAt,
  }
}

t.test('store: a record is found by method, branch, sent-by (host without case), port and transport, and nothing else', async t => {
  const s = new ParkedStore()
  t.ok(s.add(rec(1, 1000, { response: [Buffer.from('SIP/2.0 200 OK\r\n'), Buffer.from('X: 1\r\n\r\n')] })))
  const l = s.find('REGISTER', 'z9hG4bK-1', 'PC33.Example.COM', 5060, 'udp', 0)
  t.ok(l >= 0, 'found, host compared without case')
  const r = s.retransmission(l, 100)
  t.equal(r.bytes!.toString(), 'SIP/2.0 200 OK\r\nX: 1\r\n\r\n', 'the gathered response, byte for byte')
  t.same(r.dest, DEST, 'the destination with its socket and connection ids')
  t.equal(s.find('OPTIONS', 'z9hG4bK-1', 'pc33.example.com', 5060, 'udp', 0), -1, 'method')
  t.equal(s.find('REGISTER', 'z9hG4bK-1x', 'pc33.example.com', 5060, 'udp', 0), -1, 'branch')
  t.equal(s.find('REGISTER', 'z9hG4bk-1', 'pc33.example.com', 5060, 'udp', 0), -1, 'branch is case-sensitive')
  t.equal(s.find('REGISTER', 'z9hG4bK-1', 'pc34.example.com', 5060, 'udp', 0), -1, 'host')
  t.equal(s.find('REGISTER', 'z9hG4bK-1', 'pc33.example.com', -1, 'udp', 0), -1, 'a Via without port is another sent-by')
  t.equal(s.find('REGISTER', 'z9hG4bK-1', 'pc33.example.com', 5060, 'tcp', 0), -1, 'transport')
  t.equal(s.find('REGISTER', 'z9hG4bK-1', 'pc33.example.com', 5060, 'udp', 1000), -1, 'not at or after its Timer J')
  t.ok(s.add(rec(2, 1000, { port: -1, dest: { transport: 'udp', address: '::1', port: 7 } })))
  const l2 = s.find('REGISTER', 'z9hG4bK-2', 'pc33.example.com', -1, 'udp', 0)
  t.ok(l2 >= 0, 'no port')
  t.same(s.retransmission(l2, 1).dest, { transport: 'udp', address: '::1', port: 7 }, 'no socket or connection id: none given back')
})

t.test('store: what it refuses (the layer keeps those as objects)', async t => {
  const s = new ParkedStore()
  t.notOk(s.add(rec(1, 1, { host: 'h\u00e9st.example.com' })), 'a host outside ASCII')
  t.notOk(s.add({ ...rec(1, 1), branch: 'z9hG4bK\u20ac' }), 'a char outside latin1')
  t.notOk(s.add({ ...rec(1, 1), branch: 'z9hG4bK' + 'x'.repeat(300) }), 'a branch longer than 255')
  t.notOk(s.add(rec(1, 1, { response: Buffer.alloc(SLAB_BYTES) })), 'larger than a slab')
  t.equal(s.count, 0)
  t.equal(s.slabBytes, 0, 'and no slab allocated for them')
})

t.test('store: limitResponses ratio withholds a resend past ratio x request bytes, and request bytes add up', async t => {
  const s = new ParkedStore()
  const resp = Buffer.alloc(100, 65)
  t.ok(s.add({ ...rec(1, 1e9, { response: resp, ratio: 2 }), sentBytes: 100, requestBytes: 60 }))
  const l = s.find('REGISTER', 'z9hG4bK-1', 'pc33.example.com', 5060, 'udp', 0)
  t.ok(s.retransmission(l, 60).bytes !== null, 'sent 200 <= 2 x 120 received')
  t.equal(s.retransmission(l, 0).bytes, null, '300 > 2 x 120: withheld')
  t.ok(s.retransmission(l, 60).bytes !== null, 'another retransmission raises the allowance: 300 <= 2 x 180')
  t.equal(s.retransmission(l, 0).bytes, null, '400 > 2 x 180: withheld')
})

t.test('store: FIFO expiry; emptied slabs reused; all of them freed when the last record goes', async t => {
  const s = new ParkedStore()
  const big = Buffer.alloc(60_000, 66)
  for (let i = 0; i < 20; i++) t.ok(s.add(rec(i, 100 + i, { response: big })))
  const slabs = s.slabBytes / SLAB_BYTES
  t.equal(slabs, 5, 'four 60 KB records per slab')
  t.equal(s.nextExpiry(), 100)
  t.equal(s.expire(99), 0)
  t.equal(s.expire(109), 10, 'the ten due, oldest first')
  t.equal(s.nextExpiry(), 110)
  for (let i = 10; i < 20; i++) t.ok(s.find('REGISTER', `z9hG4bK-${i}`, 'pc33.example.com', 5060, 'udp', 0) >= 0, `record ${i} still there`)
  for (let i = 0; i < 10; i++) t.equal(s.find('REGISTER', `z9hG4bK-${i}`, 'pc33.example.com', 5060, 'udp', 0), -1, `record ${i} gone`)
  t.equal(s.slabBytes, slabs * SLAB_BYTES, 'the two emptied slabs are kept for reuse')
  for (let i = 20; i < 28; i++) t.ok(s.add(rec(i, 200 + i, { response: big })))
  t.equal(s.slabBytes, slabs * SLAB_BYTES, 'and reused: nothing allocated for the next eight records')
  for (let i = 10; i < 28; i++) t.ok(s.find('REGISTER', `z9hG4bK-${i}`, 'pc33.example.com', 5060, 'udp', 0) >= 0, `record ${i} there`)
  t.equal(s.expire(1000), 18)
  t.equal(s.count, 0)
  t.equal(s.slabBytes, 0, 'idle: no slab kept')
  t.equal(s.nextExpiry(), -1)
  t.ok(s.add(rec(99, 5000)), 'and it starts again')
  t.ok(s.find('REGISTER', 'z9hG4bK-99', 'pc33.example.com', 5060, 'udp', 0) >= 0)
})

t.test('store: at most eight emptied slabs are kept', async t => {
  const s = new ParkedStore()
  const big = Buffer.alloc(60_000, 66)
  for (let i = 0; i < 100; i++) s.add(rec(i, i, { response: big }))
  const slabs = s.slabBytes / SLAB_BYTES
  t.equal(slabs, 25, 'four 60 KB records per slab')
  t.equal(s.expire(79), 80)
  t.equal(s.slabBytes / SLAB_BYTES, 25 - 20 + 8, 'twenty emptied, eight kept')
})

t.test('store: the index against a Map, through growth, shrinking and deletions (property)', async t => {
  // Short branches over a small alphabet: many equal hashes' neighbours, long probe runs.
  const op = fc.oneof(
    fc.record({ k: fc.constant('add' as const), b: fc.stringMatching(/^[a-d]{1,3}$/), n: fc.integer({ min: 1, max: 40 }) }),
    fc.record({ k: fc.constant('tick' as const), dt: fc.integer({ min: 1, max: 30 }) }),
  )
  fc.assert(fc.property(fc.array(op, { maxLength: 200 }), ops => {
    const s = new ParkedStore()
    const model = new Map<string, number>() // key -> expiresAt of the newest record with it
    let now = 0
    let serial = 0
    for (const o of ops) {
      if (o.k === 'tick') {
        now += o.dt
        s.expire(now)
        for (const [k, at] of model) if (at <= now) model.delete(k)
      } else {
        // a batch of records: the first o.n - 1 with unique branches, the last with o.b
        for (let i = 0; i < o.n; i++) {
          const b = i === o.n - 1 ? o.b : `u${serial++}`
          if (model.has(b)) continue // a live transaction's key is taken (the layer finds it first)
          s.add({ ...rec(0, now + 25), branch: b })
          model.set(b, now + 25)
        }
      }
      if (s.count !== model.size) return false
      for (const b of ['a', 'b', 'c', 'd', 'ab', 'cd', 'abc', 'dcb', 'u0', 'u7', `u${serial - 1}`]) {
        const found = s.find('REGISTER', b, 'pc33.example.com', 5060, 'udp', now) >= 0
        if (found !== model.has(b)) return false
      }
      for (const b of model.keys()) if (s.find('REGISTER', b, 'pc33.example.com', 5060, 'udp', now) < 0) return false
    }
    return true
  }), { numRuns: 300 })
  t.pass('the store agreed with the model after every step')
})

t.test('store: 20,000 records, then all expired: the index shrinks back', async t => {
  const s = new ParkedStore()
  for (let i = 0; i < 20_000; i++) s.add(rec(i, i))
  t.equal(s.count, 20_000)
  for (let i = 0; i < 20_000; i += 997) t.ok(s.find('REGISTER', `z9hG4bK-${i}`, 'pc33.example.com', 5060, 'udp', -1) >= 0)
  const grown = (s as unknown as { loc: Float64Array }).loc.length
  t.ok(grown >= 40_000, `index grew to ${grown} slots`)
  t.equal(s.expire(19_999), 20_000)
  t.equal((s as unknown as { loc: Float64Array }).loc.length, 1024, 'and shrank back')
})

// ------------------------------------------------------------------------------ through the layer

function register(h: Harness, source: Destination = ALICE, branch = 'z9hG4bKpark1') {
  const r = h.layer.receiveRequest(request({ method: 'REGISTER', uri: 'sip:example.com', branch }), source)
  if (r.kind !== 'new' || !(r.tx instanceof NonInviteServerTransaction)) throw new Error('expected a new non-INVITE transaction')
  return r.tx
}
const again = (branch = 'z9hG4bKpark1') => request({ method: 'REGISTER', uri: 'sip:example.com', branch })

t.test('layer: a UDP non-INVITE final parks the transaction; retransmissions get the same bytes until Timer J, then the request is new', async t => {
  const h = new Harness()
  const tx = register(h)
  h.advance(10)
  t.ok(tx.respond(200, 'OK'))
  const first = h.sent.at(-1)!
  const s = h.layer.stats()
  t.equal(s.parked, 1, 'parked')
  t.ok(s.parkedBytes > 0)
  t.equal(s.active.nist, 1, 'still active (Completed) for the gauges')
  t.equal(s.timersPending, 1, 'its Timer J counts as pending')
  t.equal(h.layer.wheel.size, 0, 'and is not a wheel entry')
  t.equal(tx.state, 'Completed', 'the object the owner holds still reads Completed')
  t.equal(tx.lastResponse, null, 'and keeps no response')
  t.equal(tx.respond(486), false, 'a later final is discarded (§17.2.2)')
  t.equal(tx.transportError(), false, 'a transport error on the handle ends nothing: the layer holds the state')
  t.equal(h.layer.stats().terminated.nist, 0)
  t.ok(h.layer.hasServerTransaction(again(), 'udp'), 'the TU sees the retransmission as one')
  t.notOk(h.layer.hasServerTransaction(again(), 'tcp'), 'not over another transport')
  t.equal(h.layer.findServerTransaction(again(), 'udp'), undefined, 'no object to return')
  h.advance(1000)
  t.equal(h.layer.receiveRequest(again(), ALICE).kind, 'retransmission')
  const resent = h.sent.at(-1)!
  t.ok(resent.data.equals(first.data), 'the same bytes')
  t.same(resent.dest, first.dest, 'to the same destination')
  t.equal(h.layer.stats().retransmissions.responses, 1)
  t.equal(h.layer.stats().absorbed.requests, 1)
  h.advance(32_010 - 1010 - 1)
  t.equal(h.layer.stats().parked, 1, 'one ms before Timer J')
  h.advance(1)
  t.equal(h.layer.stats().parked, 0, 'Timer J (64*T1 after the final)')
  t.equal(h.layer.stats().terminated.nist, 1, 'counted terminated then')
  t.equal(h.layer.stats().active.total, 0)
  t.equal(h.layer.stats().parkedBytes, 0, 'the slab is freed')
  t.equal(h.layer.receiveRequest(again(), ALICE).kind, 'new', 'after Timer J the request is new')
})

t.test('layer: a retransmission that arrives before expiry has run, but at Timer J, is new', async t => {
  const h = new Harness()
  register(h).respond(200)
  h.t += 32_000 // the clock moves without a tick
  t.equal(h.layer.stats().parked, 1)
  t.equal(h.layer.receiveRequest(again(), ALICE).kind, 'new')
})

t.test('layer: what is not parked', async t => {
  const tcp = new Harness()
  register(tcp, ALICE_TCP).respond(200)
  t.equal(tcp.layer.stats().parked, 0, 'reliable: Timer J is zero, the transaction ends at once')
  t.equal(tcp.layer.stats().active.total, 0)

  const watched = new Harness()
  const tx = register(watched)
  let ended = -1
  tx.onTerminated = () => { ended = watched.t }
  tx.respond(200)
  t.equal(watched.layer.stats().parked, 0, 'an owner waiting for onTerminated keeps the object')
  watched.advance(32_001)
  t.equal(ended, 32_000, 'and gets it at Timer J')

  const old = new Harness()
  const r = old.layer.receiveRequest(request({ method: 'REGISTER', uri: 'sip:example.com', branch: '' }), ALICE)
  if (r.kind !== 'new') throw new Error('new expected')
  r.tx.respond(200)
  t.equal(old.layer.stats().parked, 0, 'RFC 2543 (no magic cookie): matched by its key, kept as an object')
  t.equal(old.layer.receiveRequest(request({ method: 'REGISTER', uri: 'sip:example.com', branch: '' }), ALICE).kind, 'retransmission')

  const prov = new Harness()
  const p = register(prov)
  p.respond(100)
  t.equal(prov.layer.stats().parked, 0, 'a provisional response parks nothing')
  t.equal(prov.layer.receiveRequest(again(), ALICE).kind, 'retransmission')
  t.match(prov.sent.at(-1)!.line, /^SIP\/2\.0 100/, 'Proceeding resends the provisional')
})

t.test('layer: limitResponses carries over to the parked state', async t => {
  const h = new Harness()
  const tx = register(h)
  tx.limitResponses(1)
  tx.respond(403, 'Forbidden', { body: 'x'.repeat(400) })
  const n = h.sent.length
  for (let i = 0; i < 5; i++) h.layer.receiveRequest(again(), ALICE)
  const resent = h.sent.length - n
  t.ok(resent >= 1 && resent < 5, `some resent (${resent}), the rest withheld`)
  t.equal(h.layer.stats().withheldResponses, 5 - resent)
})

t.test('layer: the native driver wakes for parked Timer J and stops when none is left', async t => {
  let now = 0
  const sent: Buffer[] = []
  const { TransactionLayer } = await import('@sipedge/transaction')
  const layer = new TransactionLayer({ send: (_d, b) => { sent.push(Array.isArray(b) ? Buffer.concat(b) : b) }, clock: { now: () => now }, t1: 20, maxSleepMs: 1000 })
  t.teardown(() => layer.close())
  const r = layer.receiveRequest(request({ method: 'OPTIONS', uri: 'sip:example.com', branch: 'z9hG4bKdrv' }), ALICE)
  if (r.kind !== 'new') throw new Error('new expected')
  r.tx.respond(200)
  t.equal(layer.stats().parked, 1)
  t.ok(layer.wakeAt > 0, 'armed for Timer J though the wheel is empty')
  now = 64 * 20 + 1
  await new Promise(res => setTimeout(res, 64 * 20 + 100))
  t.equal(layer.stats().parked, 0, 'expired by the driver')
  t.equal(layer.wakeAt, -1, 'nothing pending: no timer armed')
})

t.test('layer: completed transactions are not kept alive by the layer (a child with --expose-gc)', async t => {
  const probe = fileURLToPath(new URL('./fixtures/parked-probe.mjs', import.meta.url))
  const r = spawnSync(process.execPath, ['--expose-gc', probe], { encoding: 'utf8', timeout: 60_000 })
  t.equal(r.status, 0, r.stderr)
  const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { udpAlive: number; watchedAlive: number; parked: number }
  t.equal(out.parked, 2000, 'all 2,000 UDP transactions parked')
  t.equal(out.udpAlive, 0, 'none of their objects survives a full GC')
  t.equal(out.watchedAlive, 200, 'while the ones an owner watches (onTerminated) stay until Timer J')
})
