import t from 'tap'
import { StreamFramer, KEEPALIVE_PING, KEEPALIVE_PONG, parseMessage, SipParseError } from '@sipedge/sip'

const crlf = (s: string) => Buffer.from(s.replace(/\n/g, '\r\n'))
const msg = (id: number, body = '') => crlf(`MESSAGE sip:a@b SIP/2.0\nVia: SIP/2.0/TCP h;branch=z9hG4bK${id}\nCall-ID: c${id}\nl: ${Buffer.byteLength(body)}\n\n`) + '' === '' ? Buffer.alloc(0)
  : Buffer.concat([crlf(`MESSAGE sip:a@b SIP/2.0\nVia: SIP/2.0/TCP h;branch=z9hG4bK${id}\nCall-ID: c${id}\nl: ${Buffer.byteLength(body)}\n\n`), Buffer.from(body)])

t.test('splits a stream at any chunking', async t => {
  const stream = Buffer.concat([Buffer.from('\r\n\r\n'), msg(1, 'hello'), msg(2), Buffer.from('\r\n'), msg(3, 'x'.repeat(300))])
  for (const size of [1, 2, 3, 7, 64, 1000]) {
    const fr = new StreamFramer()
    const got: Array<string> = []
    for (let i = 0; i < stream.length; i += size) {
      fr.push(stream.subarray(i, i + size))
      for (let k = 0; k < 10; k++) {
        const x = fr.next()
        if (x === null) break
        got.push(x === KEEPALIVE_PING ? 'ping' : x === KEEPALIVE_PONG ? 'pong' : parseMessage(x).callId)
      }
    }
    // keep-alive recognition depends on where chunks are cut ("\r\n" alone is taken as a pong)
    t.same(got.filter(x => x !== 'pong' && x !== 'ping'), ['c1', 'c2', 'c3'], 'chunk ' + size)
    if (size >= 64) t.same(got, ['ping', 'c1', 'c2', 'pong', 'c3'], 'keep-alives, chunk ' + size)
    t.equal(fr.buffered, 0)
  }
})

t.test('returned buffers stay intact after more data', async t => {
  const fr = new StreamFramer()
  const a = msg(1, 'abc')
  fr.push(a.subarray(0, 10)); t.equal(fr.next(), null)
  fr.push(Buffer.concat([a.subarray(10), msg(2, 'zz').subarray(0, 5)]))
  const first = fr.next() as Buffer
  const copy = Buffer.from(first)
  fr.push(msg(2, 'zz').subarray(5))
  const second = fr.next() as Buffer
  t.same(first, copy); t.equal(parseMessage(second).callId, 'c2')
})

t.test('errors', async t => {
  const fr = new StreamFramer()
  fr.push(crlf('OPTIONS sip:a@b SIP/2.0\nCall-ID: x\n\n'))
  t.throws(() => fr.next(), { code: 'ERR_SIP_MISSING_CONTENT_LENGTH' })
  const f2 = new StreamFramer()
  f2.push(crlf('OPTIONS sip:a@b SIP/2.0\nContent-Length: -1\n\n'))
  t.throws(() => f2.next(), { code: 'ERR_SIP_BAD_CONTENT_LENGTH' })
  const f3 = new StreamFramer({ maxSize: 1000 })
  f3.push(Buffer.alloc(2000, 65))
  t.throws(() => f3.next(), SipParseError)
  const f4 = new StreamFramer({ maxSize: 1000 })
  f4.push(crlf('OPTIONS sip:a@b SIP/2.0\nContent-Length: 5000\n\n'))
  t.throws(() => f4.next(), { code: 'ERR_SIP_TOO_LARGE', status: 513 })
})
