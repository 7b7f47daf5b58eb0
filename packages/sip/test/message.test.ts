import t from 'tap'
import { parseMessage, tryParseMessage, SipParseError, SipMessage } from '@sipedge/sip'

const crlf = (s: string) => Buffer.from(s.replace(/\n/g, '\r\n'))
const INVITE = crlf(`INVITE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport
VIA: SIP/2.0/TCP a.example.com;branch=z9hG4bKx;received=10.0.0.1;rport=5070;ttl=3;maddr=224.0.0.1
Max-Forwards: 70
To: Bob <sip:bob@biloxi.example.com>
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.atlanta.example.com
CSeq: 314159 INVITE
Contact: <sip:alice@pc33.atlanta.example.com>
Allow: INVITE, ACK,
 CANCEL
Subject: hello
  world
Content-Length: 4

abcdEXTRA`)

t.test('lazy message basics', async t => {
  const m = parseMessage(INVITE)
  t.ok(m instanceof SipMessage)
  t.equal(m.buf, INVITE, 'no copy')
  t.equal(m.isRequest, true); t.equal(m.method, 'INVITE'); t.equal(m.uri, 'sip:bob@biloxi.example.com'); t.equal(m.status, 0)
  t.equal(m.headers.length, 11); t.equal(m.headers[1]!.name, 'via'); t.equal(m.headers[1]!.lineEnd, m.headers[2]!.lineStart)
  t.equal(m.header('v'), 'SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport')
  t.equal(m.header('subject'), 'hello world'); t.equal(m.header('S'), 'hello world')
  t.same(m.headerValues('allow'), ['INVITE', 'ACK', 'CANCEL'])
  t.ok(m.has('CALL-ID')); t.ok(m.has('i')); t.notOk(m.has('Route')); t.equal(m.header('x-none'), undefined)
  t.equal(m.callId, 'a84b4c76e66710@pc33.atlanta.example.com')
  t.same(m.cseq, { seq: 314159, method: 'INVITE' })
  t.equal(m.maxForwards, 70); t.equal(m.from.tag, '1928301774'); t.equal(m.to.tag, undefined); t.equal(m.to.displayName, 'Bob')
  const v = m.topVia
  t.equal(v.branch, 'z9hG4bK776asdhds'); t.equal(v.rport, null); t.equal(v.port, 5060); t.equal(v.transport, 'UDP'); t.equal(v.protocol, 'SIP/2.0')
  t.equal(m.vias.length, 2); t.equal(m.vias[0], v, 'top via object reused')
  const v2 = m.vias[1]!
  t.equal(v2.received, '10.0.0.1'); t.equal(v2.rport, 5070); t.equal(v2.ttl, 3); t.equal(v2.maddr, '224.0.0.1')
  t.equal(m.contentLength, 4); t.equal(m.body.toString(), 'abcd'); t.equal(m.end, INVITE.length - 5)
  t.equal(m.body.buffer, INVITE.buffer, 'body is a view')
  t.equal(m.requestUri.host, 'biloxi.example.com')
  m.validate()
})

t.test('response', async t => {
  const m = parseMessage(crlf('SIP/2.0 486 Busy Here\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nFrom: <sip:a@b>;tag=1\nTo: <sip:c@d>;tag=2\nCall-ID: x\nCSeq: 1 INVITE\nContent-Length: 0\n\n'))
  t.equal(m.isRequest, false); t.equal(m.status, 486); t.equal(m.reason, 'Busy Here'); t.equal(m.method, ''); t.equal(m.uri, '')
  m.validate()
  t.throws(() => m.requestUri, SipParseError)
})

t.test('max size, options and tryParseMessage', async t => {
  t.throws(() => parseMessage(INVITE, { maxSize: 100 }), { code: 'ERR_SIP_TOO_LARGE', status: 513 })
  const r = tryParseMessage(Buffer.from('garbage'))
  t.ok(r instanceof SipParseError)
  t.throws(() => parseMessage(crlf('OPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h\n\n'), { requireContentLength: true }), { code: 'ERR_SIP_MISSING_CONTENT_LENGTH' })
  t.throws(() => parseMessage(Buffer.alloc(0)), { code: 'ERR_SIP_MALFORMED' })
  t.throws(() => parseMessage(Buffer.from('\r\n\r\n')), { code: 'ERR_SIP_MALFORMED' })
})

t.test('getter errors are typed and specific', async t => {
  const base = 'OPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nFrom: <sip:a@b>;tag=1\nTo: <sip:c@d>\nCall-ID: x\nCSeq: 1 OPTIONS\n'
  const cases: Array<[string, string, string]> = [
    ['Max-Forwards: abc\n', 'ERR_SIP_BAD_MAX_FORWARDS', 'Bad Max-Forwards'],
    ['Via: SIP/2.0/UDP\n', 'ERR_SIP_BAD_VIA', 'Bad Via header'],
    ['Contact: <sip:a@b\n', 'ERR_SIP_BAD_NAME_ADDR', 'Bad Contact header'],
    ['Route: sip:x;;\n', 'ERR_SIP_BAD_NAME_ADDR', 'Bad Route header'],
    ['Date: Sat, 13 Nov 2010 23:29:00 PST\n', 'ERR_SIP_BAD_DATE', 'Bad Date header'],
    ['Call-ID: y\n', 'ERR_SIP_DUPLICATE_HEADER', 'Duplicate Call-ID header'],
  ]
  for (const [extra, code, reason] of cases) {
    const m = parseMessage(crlf(base + extra + '\n'))
    t.throws(() => m.validate(), { code, reason }, extra.trim())
  }
  const ok = parseMessage(crlf(base + 'Date: Sat, 13 Nov 2010 23:29:00 GMT\n\n'))
  t.doesNotThrow(() => ok.validate())
})
