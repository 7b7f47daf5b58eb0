// A settled non-INVITE request lets go of its request context: the server transaction stays in
// Completed for Timer J (32 s over UDP) and the client transaction for Timer K, and neither may
// keep the parsed request, its headers and its attempts alive that long (issue 17: they were
// most of what a burst promoted into V8's old generation). Retransmissions are still answered.
// An INVITE keeps its context: a CANCEL and 2xx retransmissions need it; its request lets go of
// its parsed header values.
import t from 'tap'
import { parseMessage } from '@sipedge/sip'
import { startProxy, type Destination, type ModuleDeclaration } from '@sipedge/proxy'
import { SRC, log, proxyConfig, req as request, respond } from './fixtures/sip.js'

const config = proxyConfig(`  - { match: { method: REGISTER }, action: register }
  - { match: {}, action: { forward: "sip:127.0.0.9:5090" } }
`)
const DOWN = { ...SRC, address: '127.0.0.9', port: 5090 }
const registrar: ModuleDeclaration = {
  name: 'reg', configSection: null, requires: [], uses: [], actions: ['register', 'lookup'], metrics: [], enabled: () => true,
  create: () => ({ actions: { register: { kind: 'takeover', run() {} }, lookup: { kind: 'targets', run: () => ({ hops: [], failover: null }) } } }),
}

const req = (method: string, id: string): Buffer => request(method, { branch: id, callId: `${id}@test` })
const topBranch = (text: string): string => /^Via: [^\r\n]*;branch=([^;\r\n]+)/m.exec(text)![1]!

async function start(t: Tap.Test): Promise<{ p: Awaited<ReturnType<typeof startProxy>>; sent: Array<{ dest: Destination; text: string }> }> {
  const sent: Array<{ dest: Destination; text: string }> = []
  const p = await startProxy({
    config, workerIndex: 0, workers: 1, manualTimers: true, now: () => 0, log,
    send: (dest, data) => sent.push({ dest, text: Buffer.concat(Array.isArray(data) ? data : [data]).toString('latin1') }),
  }, [registrar])
  t.teardown(() => p.close(0))
  return { p, sent }
}
declare namespace Tap { type Test = typeof t }

/** A proxy that has forwarded one INVITE: the request, what went downstream, the server transaction. */
async function startInvite(t: Tap.Test, id: string) {
  const { p, sent } = await start(t)
  const invite = req('INVITE', id)
  p.receive(invite, SRC)
  const fwd = sent.find(s => s.text.startsWith('INVITE'))!
  const server = p.layer.findServerTransaction(parseMessage(invite), 'udp')!
  return { p, sent, invite, fwd, server }
}

t.test('a settled non-INVITE request: both transactions drop the context, retransmissions are still answered', async t => {
  const { p, sent } = await start(t)

  const message = req('MESSAGE', 'm1')
  p.receive(message, SRC)
  const fwd = sent.pop()!
  t.match(fwd.text, /^MESSAGE /)
  const server = p.layer.findServerTransaction(parseMessage(message), 'udp')!
  const client = p.layer.findClient(topBranch(fwd.text), 'MESSAGE')!
  t.ok(server.context !== undefined && client.context === server.context, 'while in flight both hold the request context')

  p.receive(respond(fwd.text, 202), DOWN)
  const up = sent.pop()!
  t.match(up.text, /^SIP\/2\.0 202 X/)
  t.equal(server.state, 'Completed')
  t.equal(client.state, 'Completed')
  t.equal(server.context, undefined, 'the server transaction in Completed (Timer J) holds no context')
  t.equal(client.context, undefined, 'the client transaction in Completed (Timer K) holds no context')

  // §17.2.2: a retransmission of the request gets the final response again
  p.receive(message, SRC)
  t.equal(sent.pop()?.text, up.text, 'the request retransmission is answered with the same bytes')
  // §17.1.2.2: a retransmitted final is absorbed by the client transaction; nothing is forwarded
  p.receive(respond(fwd.text, 202), DOWN)
  t.equal(sent.length, 0, 'the response retransmission is absorbed')
  t.equal(p.counters.badResponses, 0)

  // a local answer (no attempt at all) lets go too
  const options = req('OPTIONS', 'o1')
  p.receive(Buffer.from(options.toString().replace('sip:bob@example.com', 'sip:127.0.0.1:5060')), SRC)
  t.match(sent.pop()?.text, /^SIP\/2\.0 200/, 'OPTIONS to the proxy is answered')
  // Completed over UDP: the layer keeps only what Timer J needs, off the heap (transaction's
  // parked.ts), and no longer holds the transaction object, let alone a context
  t.equal(p.layer.findServerTransaction(parseMessage(options), 'udp'), undefined, 'no object kept for Timer J')
  t.ok(p.layer.hasServerTransaction(parseMessage(options), 'udp'), 'while the transaction is still known')
  t.equal(p.layer.stats().parked, 2, 'parked: the MESSAGE and the OPTIONS')
})

t.test('an INVITE keeps its context after the final: 2xx retransmissions are still relayed', async t => {
  const { p, sent, invite, fwd, server } = await startInvite(t, 'i1')
  const from = server.request!.from
  const vias = server.request!.vias
  t.equal(server.request!.from, from, 'while the INVITE is in flight its parsed From is kept')
  p.receive(respond(fwd.text, 200), DOWN)
  t.ok(sent.some(s => s.text.startsWith('SIP/2.0 200')))
  t.not(server.context, undefined, 'the INVITE server transaction keeps its context')
  // settled: the parsed header values are let go (~1.9 KB a call for Timer L), read again from the bytes
  t.not(server.request!.from, from, 'the parsed From was released and is parsed again')
  t.same(server.request!.from, from, 'to the same value')
  t.same(server.request!.vias, vias)
  // kept 32 s (Timer L): the request's bytes have a backing store of their own, not a shared 8 KB pool slab
  const kept = server.request!.buf
  t.equal(kept.buffer.byteLength, invite.length, 'the INVITE is copied into its own store')
  sent.length = 0
  p.receive(respond(fwd.text, 200), DOWN)
  t.match(sent.pop()?.text, /^SIP\/2\.0 200/, 'a 2xx retransmission is relayed (RFC 6026)')
})

t.test('the best final of an INVITE is released once relayed; the server transaction keeps its bytes', async t => {
  const { p, sent, fwd, server } = await startInvite(t, 'i2')
  const busy = respond(fwd.text, 486)
  p.receive(busy, DOWN)
  t.ok(sent.some(s => s.text.startsWith('SIP/2.0 486')), 'the 486 is relayed')
  const ctx = server.context as { best: unknown; bestStatus: number }
  t.equal(ctx.best, null, 'the context, kept for Timer L, no longer holds the copied 486')
  t.equal(ctx.bestStatus, 486)
  t.equal(typeof server.lastResponse, 'string', 'the relayed final is kept as a string until the ACK')
  sent.length = 0
  p.receive(respond(fwd.text, 486), DOWN)
  t.equal(sent.filter(s => s.text.startsWith('SIP/2.0 486')).length, 0, 'a retransmitted 486 is absorbed downstream, not relayed')
  p.receive(Buffer.from(server.request!.buf), SRC)
  t.match(sent.pop()?.text, /^SIP\/2\.0 486/, 'an INVITE retransmission gets the 486 again from the server transaction')
})
