// splitList and the list decoders on hostile header lines (CPU amplification): a line of tens of
// thousands of commas, quotes or angle brackets is refused with 400 naming the header after a
// bounded number of elements (MAX_LIST_ELEMENTS), and the scan itself looks at each character once
// (counted by the elements it returns, not timed).
import t from 'tap'
import { parseMessage, SipParseError, MAX_LIST_ELEMENTS, splitList } from '@sipedge/sip'

const msg = (extra: string): Buffer => Buffer.from([
  'INVITE sip:bob@example.com SIP/2.0',
  'Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-list',
  'Max-Forwards: 70', 'From: <sip:a@example.com>;tag=1', 'To: <sip:bob@example.com>', 'Call-ID: list@test', 'CSeq: 1 INVITE',
  'Contact: <sip:a@192.0.2.1>', extra, 'Content-Length: 0', '', ''].join('\r\n'))

function refusal(f: () => unknown): SipParseError | null {
  try { f(); return null } catch (e) { if (e instanceof SipParseError) return e; throw e }
}

t.test('a line of exactly MAX_LIST_ELEMENTS Routes is read; one more is refused with 400 naming Route', async t => {
  t.equal(MAX_LIST_ELEMENTS, 256)
  const ok = parseMessage(msg('Route: ' + Array.from({ length: MAX_LIST_ELEMENTS }, (_, i) => `<sip:p${i}.example.com;lr>`).join(',')))
  ok.validate()
  t.equal(ok.routes.length, MAX_LIST_ELEMENTS)
  const bad = parseMessage(msg('Route: ' + Array.from({ length: MAX_LIST_ELEMENTS + 1 }, (_, i) => `<sip:p${i}.example.com;lr>`).join(',')))
  const e = refusal(() => bad.validate())
  t.equal(e?.code, 'ERR_SIP_TOO_MANY_VALUES')
  t.equal(e?.status, 400)
  t.equal(e?.reason, 'Too Many Route Values')
})

t.test('pathological lines of 60,000 bytes are refused or rejected, each decoder once', async t => {
  const N = 60_000
  const cases: Array<[string, string, (m: ReturnType<typeof parseMessage>) => unknown, RegExp]> = [
    ['Route', ','.repeat(N), m => m.validate(), /ERR_SIP_TOO_MANY_VALUES/],
    ['Route', '<sip:x;lr>,'.repeat(N / 11), m => m.validate(), /ERR_SIP_TOO_MANY_VALUES/],
    ['Record-Route', '",'.repeat(N / 2), m => m.recordRoutes, /ERR_SIP_/],
    ['Record-Route', '"\\'.repeat(N / 2), m => m.recordRoutes, /ERR_SIP_/],
    ['Via', 'SIP/2.0/UDP h,'.repeat(N / 14), m => m.vias, /ERR_SIP_TOO_MANY_VALUES/],
    ['Via', '",'.repeat(N / 2), m => m.vias, /ERR_SIP_/],
    ['Accept', 'a,'.repeat(N / 2), m => m.headerValues('Accept'), /ERR_SIP_TOO_MANY_VALUES/],
  ]
  for (const [h, v, read, want] of cases) {
    const m = parseMessage(msg(`${h}: ${v}`), { maxSize: 1 << 17 })
    const e = refusal(() => read(m))
    t.match(e === null ? 'read' : e.code, want, `${h}: ${JSON.stringify(v.slice(0, 8))}... -> ${e === null ? 'read' : `${e.status} ${e.reason}`}`)
  }
})

t.test('splitList is one pass: the elements it returns grow with the commas outside quotes and <>, never more', async t => {
  for (const n of [1_000, 10_000, 100_000]) {
    t.equal(splitList(','.repeat(n)).length / 2, n + 1, `${n} commas: ${n + 1} elements`)
    t.equal(splitList('"' + ','.repeat(n)).length / 2, 1, `an unterminated quote ends the scan (${n} commas inside)`)
    t.equal(splitList('<' + ','.repeat(n)).length / 2, 1, `an unterminated < ends the scan (${n} commas inside)`)
    const e = refusal(() => splitList(','.repeat(n), 0, n, 'Via'))
    t.equal(e?.reason, 'Too Many Via Values', 'with a header name: refused past the bound')
  }
})
