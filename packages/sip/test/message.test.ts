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
    ['Route: sip:x;;\n', 'ERR_SIP_BAD_NAME_ADDR', 'Bad Route header'],
    ['Date: Sat, 13 Nov 2010 23:29:00 PST\n', 'ERR_SIP_BAD_DATE', 'Bad Date header'],
    ['Call-ID: y\n', 'ERR_SIP_DUPLICATE_HEADER', 'Duplicate Call-ID header'],
  ]
  for (const [extra, code, reason] of cases) {
    const m = parseMessage(crlf(base + extra + '\n'))
    t.throws(() => m.validate(), { code, reason }, extra.trim())
  }
  // headers validate() leaves to their readers (an OPTIONS Contact, a second Via)
  const lazy: Array<[string, string, string, (m: SipMessage) => unknown]> = [
    ['Via: SIP/2.0/UDP\n', 'ERR_SIP_BAD_VIA', 'Bad Via header', m => m.vias],
    ['Contact: <sip:a@b\n', 'ERR_SIP_BAD_NAME_ADDR', 'Bad Contact header', m => m.contacts],
    ['Record-Route: <sip:a@b\n', 'ERR_SIP_BAD_NAME_ADDR', 'Bad Record-Route header', m => m.recordRoutes],
  ]
  for (const [extra, code, reason, read] of lazy) {
    const m = parseMessage(crlf(base + extra + '\n'))
    t.doesNotThrow(() => m.validate(), extra.trim() + ': not read by validate()')
    t.throws(() => read(m), { code, reason }, extra.trim() + ': rejected by its reader')
  }
  const ok = parseMessage(crlf(base + 'Date: Sat, 13 Nov 2010 23:29:00 GMT\n\n'))
  t.doesNotThrow(() => ok.validate())
})

// validate() checks what a routing decision needs and leaves the rest lazy (issue 11): a
// request with 50 Vias is validated from its top Via alone; the 30th is decoded, and rejected,
// only when something reads `vias`.
t.test('validate() does not decode the Vias below the top one', async t => {
  const vias = (bad: number) => Array.from({ length: 50 }, (_, i) =>
    i === bad ? 'Via: SIP/2.0/UDP ;branch=z9hG4bKbad' : `Via: SIP/2.0/UDP h${i}.example.com;branch=z9hG4bK${i}`).join('\n')
  const msg = (bad: number) => parseMessage(crlf('NOTIFY sip:a@b SIP/2.0\n' + vias(bad) +
    '\nFrom: <sip:a@b>;tag=1\nTo: <sip:c@d>;tag=2\nCall-ID: x\nCSeq: 1 NOTIFY\nMax-Forwards: 70\nContent-Length: 0\n\n'))
  const m = msg(29)
  t.doesNotThrow(() => m.validate(), 'a malformed 30th Via does not fail validate()')
  t.equal(m.topVia.host, 'h0.example.com')
  t.throws(() => m.vias, { code: 'ERR_SIP_BAD_VIA' }, 'it fails where it is read')
  t.throws(() => m.vias, { code: 'ERR_SIP_BAD_VIA' }, 'and again on a second read (nothing half-cached)')
  t.equal(msg(-1).vias.length, 50, 'the same message without the bad Via has 50')
  const top = msg(0)
  t.throws(() => top.validate(), { code: 'ERR_SIP_BAD_VIA' }, 'a malformed top Via still fails validate()')
})

t.test('validate() decodes Contact only where routing reads it', async t => {
  const req = (method: string, toTag: string) => parseMessage(crlf(`${method} sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\n` +
    `From: <sip:a@b>;tag=1\nTo: <sip:c@d>${toTag}\nCall-ID: x\nCSeq: 1 ${method}\nContact: <sip:ok@h>, <sip:a@b\nContent-Length: 0\n\n`))
  // REGISTER: the registrar binds every Contact (RFC 3261 §10.3); a dialog-creating request: the
  // dialog tracker keeps the caller's Contact (§12.1.1)
  for (const m of ['REGISTER', 'INVITE', 'SUBSCRIBE', 'REFER']) {
    t.throws(() => req(m, '').validate(), { code: 'ERR_SIP_BAD_NAME_ADDR', reason: 'Bad Contact header' }, m)
  }
  for (const [m, tag] of [['OPTIONS', ''], ['MESSAGE', ''], ['INVITE', ';tag=2'], ['NOTIFY', ';tag=2'], ['BYE', ';tag=2']] as const) {
    const x = req(m, tag)
    t.doesNotThrow(() => x.validate(), m + (tag === '' ? '' : ' in dialog') + ': Contact left to its reader')
    t.throws(() => x.contacts, { code: 'ERR_SIP_BAD_NAME_ADDR' })
  }
})

// Issue "Safe on a public address" 8: a Via with port 0 was accepted, and every answer to it
// later failed in the transport ("UDP send failed ... port 0"). Port 0 or one above 65535 in the
// sent-by is a bad Via: 400 at validate() (top Via) or where a lower one is read.
t.test('via-port-zero-accepted: port 0 and out-of-range ports in a Via are ERR_SIP_BAD_VIA', async t => {
  const req = (via: string, second = '') => parseMessage(crlf(`INVITE sip:bob@example.com SIP/2.0\nVia: ${via}\n${second}` +
    'Max-Forwards: 70\nFrom: <sip:a@example.com>;tag=1\nTo: <sip:bob@example.com>\nCall-ID: vp0\nCSeq: 1 INVITE\nContent-Length: 0\n\n'))
  for (const port of ['0', '00', '65536', '99999']) {
    for (const via of [`SIP/2.0/UDP 192.0.2.1:${port};branch=z9hG4bKa;rport`, `SIP/2.0/UDP [2001:db8::1]:${port};branch=z9hG4bKa`, `SIP/2.0/TCP host.example.com : ${port} ;branch=z9hG4bKa`]) {
      t.throws(() => req(via).validate(), { code: 'ERR_SIP_BAD_VIA', status: 400 }, via)
    }
    const lower = req('SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa', `Via: SIP/2.0/UDP 192.0.2.2:${port};branch=z9hG4bKb\n`)
    t.doesNotThrow(() => lower.validate(), `lower Via port ${port}: left to its reader`)
    t.throws(() => lower.vias, { code: 'ERR_SIP_BAD_VIA' }, `lower Via port ${port}: rejected where read`)
  }
  for (const port of ['1', '5060', '65535']) t.equal(req(`SIP/2.0/UDP 192.0.2.1:${port};branch=z9hG4bKa`).topVia.port, Number(port), `port ${port} accepted`)
})
