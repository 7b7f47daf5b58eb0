import t from 'tap'
import { parseMessage, buildResponse, buildAckForNonTwoXx, buildCancel, randomBranch, randomTag, isRfc3261Branch } from '@sipedge/sip'

const crlf = (s: string) => Buffer.from(s.replace(/\n/g, '\r\n'))
const INVITE = parseMessage(crlf(`INVITE sip:bob@example.com SIP/2.0
Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1;received=1.2.3.4, SIP/2.0/UDP b.example.com;branch=z9hG4bK0
Via: SIP/2.0/TCP c.example.com;branch=z9hG4bKc
Route: <sip:edge.example.com;lr>
Max-Forwards: 70
From: "Al" <sip:alice@example.com>;tag=1
To: <sip:bob@example.com>
Call-ID: b@x
CSeq: 7 INVITE
Content-Length: 0

`))

t.test('buildResponse copies Via/From/To/Call-ID/CSeq and adds a To tag', async t => {
  const r = parseMessage(buildResponse(INVITE, 486, undefined, { toTag: 'tt', headers: [['retry-after', '30']] }))
  t.equal(r.status, 486); t.equal(r.reason, 'Busy Here')
  t.same(r.vias.map(v => v.host), ['a.example.com', 'b.example.com', 'c.example.com'])
  t.equal(r.from.tag, '1'); t.equal(r.to.tag, 'tt'); t.equal(r.callId, 'b@x'); t.same(r.cseq, { seq: 7, method: 'INVITE' })
  t.equal(r.header('Retry-After'), '30'); t.equal(r.contentLength, 0)
  r.validate()
  const trying = parseMessage(buildResponse(INVITE, 100))
  t.equal(trying.to.tag, undefined, 'no tag on 100')
  const ok = parseMessage(buildResponse(INVITE, 200, 'OK', { body: 'v=0\r\n', contentType: 'application/sdp' }))
  t.ok(ok.to.tag !== undefined); t.equal(ok.body.toString(), 'v=0\r\n'); t.equal(ok.header('c'), 'application/sdp')
})

t.test('ACK for non-2xx and CANCEL', async t => {
  const resp = parseMessage(buildResponse(INVITE, 404, undefined, { toTag: 'x9' }))
  const ack = parseMessage(buildAckForNonTwoXx(INVITE, resp))
  t.equal(ack.method, 'ACK'); t.equal(ack.uri, INVITE.uri); t.equal(ack.vias.length, 1); t.equal(ack.topVia.branch, 'z9hG4bK1')
  t.equal(ack.to.tag, 'x9'); t.same(ack.cseq, { seq: 7, method: 'ACK' }); t.equal(ack.routes.length, 1)
  ack.validate()
  const c = parseMessage(buildCancel(INVITE))
  t.equal(c.method, 'CANCEL'); t.equal(c.topVia.branch, 'z9hG4bK1'); t.equal(c.to.tag, undefined); t.same(c.cseq, { seq: 7, method: 'CANCEL' })
  c.validate()
})

t.test('fuzz-ack-for-response-without-to: a final response without To gives a typed error, not a TypeError', async t => {
  // found by the handler fuzzer: a 4xx to a forwarded INVITE, mutated to lose its To header,
  // reached the INVITE client transaction, whose ACK copy of To threw a TypeError that killed the worker
  const noTo = parseMessage(crlf('SIP/2.0 486 Busy Here\nVia: SIP/2.0/UDP a.example.com;branch=z9hG4bK1\nFrom: <sip:alice@example.com>;tag=1\nCall-ID: b@x\nCSeq: 7 INVITE\nContent-Length: 0\n\n'))
  t.throws(() => buildAckForNonTwoXx(INVITE, noTo), { name: 'SipParseError', code: 'ERR_SIP_MISSING_HEADER', reason: 'Missing To' })
  // and the slab the builders share is left usable
  const ack = parseMessage(buildAckForNonTwoXx(INVITE, parseMessage(buildResponse(INVITE, 486, undefined, { toTag: 'b1' }))))
  t.equal(ack.to.tag, 'b1')
  ack.validate()
})

t.test('random identifiers', async t => {
  const seen = new Set<string>()
  for (let i = 0; i < 2000; i++) {
    const b = randomBranch()
    t.ok(isRfc3261Branch(b) || t.fail(b))
    seen.add(b)
  }
  t.equal(seen.size, 2000)
  t.match(randomTag(), /^[A-Za-z0-9]{12}$/)
})

t.test('source fills received/rport on the top Via (RFC 3581 §4, RFC 3261 §18.2.1)', async t => {
  const req = (via: string): ReturnType<typeof parseMessage> => parseMessage(Buffer.from(
    'OPTIONS sip:example.com SIP/2.0\r\n' +
    `Via: ${via}\r\nVia: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKlower\r\n` +
    'Max-Forwards: 70\r\nTo: <sip:example.com>\r\nFrom: <sip:a@example.com>;tag=1\r\n' +
    'Call-ID: rport@x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n'))
  const topVia = (b: Buffer): string => parseMessage(b).headerValues('via')[0]!
  const src = { address: '192.0.2.7', port: 40000 }
  // rport without value: both params are set, even when the address is the same as sent-by.
  let r = buildResponse(req('SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKa;rport'), 200, 'OK', { source: src })
  t.equal(topVia(r), 'SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKa;received=192.0.2.7;rport=40000')
  // No rport, sent-by differs from the source: received only.
  r = buildResponse(req('SIP/2.0/UDP pc33.example.com;branch=z9hG4bKb'), 200, 'OK', { source: src })
  t.equal(topVia(r), 'SIP/2.0/UDP pc33.example.com;branch=z9hG4bKb;received=192.0.2.7')
  // No rport, same address: the Via is copied byte for byte.
  r = buildResponse(req('SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKc'), 200, 'OK', { source: src })
  t.equal(topVia(r), 'SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKc')
  // A stale received/rport from the client is replaced, other params kept in place.
  r = buildResponse(req('SIP/2.0/UDP h.example;rport=1;branch=z9hG4bKd;received=1.1.1.1;x=y'), 200, 'OK', { source: src })
  t.equal(topVia(r), 'SIP/2.0/UDP h.example;branch=z9hG4bKd;x=y;received=192.0.2.7;rport=40000')
  const m = parseMessage(r)
  t.equal(m.vias.length, 2, 'lower Via untouched')
  t.equal(m.vias[1]!.branch, 'z9hG4bKlower')
})
