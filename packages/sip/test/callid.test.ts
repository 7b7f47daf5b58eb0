import t from 'tap'
import { callIdHash, callIdHashOf, findCallId, callIdRangeStart, callIdRangeLength, parseMessage } from '@sipedge/sip'

const crlf = (s: string) => Buffer.from(s.replace(/\n/g, '\r\n'))
const mk = (line: string) => crlf(`INVITE sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nX-Call-ID: decoy\nCseq: 1 INVITE\n${line}\nContent-Length: 0\n\n`)

t.test('long, compact, any case, folded: same hash', async t => {
  const forms = ['Call-ID: abc@host', 'call-id:abc@host', 'CALL-ID  :   abc@host  ', 'i: abc@host', 'I:abc@host', 'Call-ID:\n abc@host']
  const h = callIdHashOf('abc@host')
  for (const f of forms) {
    const b = mk(f)
    t.equal(callIdHash(b), h, f)
    const p = findCallId(b)
    t.equal(b.toString('latin1', callIdRangeStart(p), callIdRangeStart(p) + callIdRangeLength(p)), 'abc@host')
  }
  t.equal(callIdHash(mk('X: y')), -1, 'absent')
  t.equal(callIdHash(crlf('INVITE sip:a@b SIP/2.0\nVia: x\n\nCall-ID: in-body\n')), -1, 'body is not scanned')
  t.equal(callIdHash(Buffer.alloc(0)), -1)
  t.equal(callIdHash(Buffer.from('no newline at all')), -1)
  t.equal(callIdHashOf('a84b4c76e66710@pc33.atlanta.example.com'), parseInt('0', 10) + callIdHash(mk('Call-ID: a84b4c76e66710@pc33.atlanta.example.com')))
})

t.test('matches the parsed Call-ID and honours start/end', async t => {
  const b = mk('i: zz@qq')
  t.equal(callIdHashOf(parseMessage(b).callId), callIdHash(b))
  const framed = Buffer.concat([Buffer.from('HEADER--'), b, Buffer.from('TRAILER')])
  t.equal(callIdHash(framed, 8, 8 + b.length), callIdHash(b))
  // FNV-1a 32-bit reference value for "a"
  t.equal(callIdHashOf('a'), 0xe40c292c)
})
