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
