// What a parsed message costs in heap (issue 17). Values without parameters (or a URI without
// headers) share one read-only empty Map instead of allocating one each (a parsed INVITE kept for
// its call held several, ~180 bytes each): what a caller sees is unchanged (an empty Map), and
// writing to it throws instead of changing every other parsed value. releaseParsed() lets go of
// the parsed header values of a message kept long; they are parsed again, equal, when read.
import t from 'tap'
import { parseMessage, parseUri, parseNameAddr, EMPTY_PARAMS, EMPTY_URI_HEADERS } from '@sipedge/sip'

const crlf = (s: string): Buffer => Buffer.from(s.replace(/\n/g, '\r\n'))
const invite = crlf(`INVITE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK776asdhds;rport
Max-Forwards: 70
To: Bob <sip:bob@biloxi.example.com>
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
Call-ID: a84b4c76e66710@pc33.atlanta.example.com
CSeq: 314159 INVITE
Contact: <sip:alice@127.0.0.1:5061;transport=udp>  
Route: <sip:p1.example.com;lr>
Content-Length: 0

`)

t.test('values without parameters share the empty Maps; values with them get their own', async t => {
  const m = parseMessage(invite)
  t.equal(m.to.params, EMPTY_PARAMS, 'To without tag (fast path)')
  t.equal(m.to.tag, undefined)
  t.not(m.from.params, EMPTY_PARAMS, 'From with a tag')
  t.equal(m.from.params.get('tag'), '1928301774')
  t.equal(m.contacts[0]!.params, EMPTY_PARAMS, 'Contact with trailing blanks only (full parser)')
  t.equal(m.requestUri.params, EMPTY_PARAMS, 'Request-URI without parameters')
  t.equal(m.requestUri.headers, EMPTY_URI_HEADERS, 'Request-URI without headers')
  const c = parseUri(m.contacts[0]!.uri)
  t.not(c.params, EMPTY_PARAMS)
  t.equal(c.params.get('transport'), 'udp')
  t.equal(parseNameAddr('*', 'Contact', 0, 1, true).params, EMPTY_PARAMS, 'Contact: *')
  t.equal(parseUri('tel:+12015550123').params, EMPTY_PARAMS, 'tel URI without parameters')
  t.equal(parseUri('tel:+12015550123;phone-context=example.com').params.get('phone-context'), 'example.com')
  t.equal(parseUri('sip:a@b?Subject=x').headers.get('Subject'), 'x')
})

t.test('the shared Maps are empty, iterate as empty, and refuse writes', async t => {
  for (const e of [EMPTY_PARAMS, EMPTY_URI_HEADERS] as Array<Map<string, unknown>>) {
    t.equal(e.size, 0)
    t.same([...e], [])
    t.ok(e instanceof Map)
    t.throws(() => e.set('lr', null), TypeError)
    t.equal(e.delete('lr'), false)
    e.clear()
    t.equal(e.size, 0, 'still empty after the refused writes')
  }
  // a copy is an ordinary Map
  const copy = new Map(parseUri('sip:a@b').params)
  copy.set('lr', null)
  t.equal(copy.get('lr'), null)
  t.equal(EMPTY_PARAMS.size, 0)
  t.equal(parseUri('sip:c@d').params.size, 0, 'later parses unaffected')
})

t.test('releaseParsed: header values are parsed again from the bytes, to the same values', async t => {
  const m = parseMessage(invite)
  const before = { from: m.from, to: m.to, topVia: m.topVia, vias: m.vias, routes: m.routes, contacts: m.contacts, requestUri: m.requestUri, recordRoutes: m.recordRoutes }
  const callId = m.callId
  const cseq = m.cseq
  m.releaseParsed()
  t.not(m.from, before.from, 'a new From object')
  t.not(m.vias, before.vias, 'a new Via list')
  t.same({ from: m.from, to: m.to, topVia: m.topVia, vias: m.vias, routes: m.routes, contacts: m.contacts, requestUri: m.requestUri, recordRoutes: m.recordRoutes }, before, 'equal values')
  t.equal(m.cseq, cseq, 'CSeq stays')
  t.equal(m.callId, callId)
  t.equal(m.maxForwards, 70)
})
