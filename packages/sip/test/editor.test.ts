import t from 'tap'
import { parseMessage, MessageEditor } from '@sipedge/sip'

const crlf = (s: string) => Buffer.from(s.replace(/\n/g, '\r\n'))
const REQ = crlf(`INVITE sip:bob@example.com SIP/2.0
Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1;rport, SIP/2.0/UDP b.example.com;branch=z9hG4bK0
Route: <sip:edge.example.com;lr>, <sip:core.example.com;lr>
Max-Forwards: 70
From: <sip:alice@example.com>;tag=1
To: <sip:bob@example.com>
Call-ID: ed@x
CSeq: 1 INVITE
Contact: <sip:alice@10.0.0.1:5060>, <sip:alice@10.0.0.2>
X-Keep:   odd   spacing  
Content-Length: 3

abc`)

t.test('no edits = identical bytes', async t => {
  const m = parseMessage(REQ)
  t.same(new MessageEditor(m).toBuffer(), REQ)
})

t.test('proxy forwarding edits splice the original bytes', async t => {
  const m = parseMessage(REQ)
  const e = new MessageEditor(m)
    .prependVia('SIP/2.0/UDP edge.example.com;branch=z9hG4bKnew')
    .setTopViaParams({ received: '198.51.100.9', rport: 40000 })
    .removeFirstRoute()
    .prependRecordRoute('<sip:edge.example.com;lr>')
    .setMaxForwards(69)
    .replaceContact(1, '<sip:alice@203.0.113.7:1234>')
  const out = e.toBuffer()
  const s = out.toString()
  t.ok(e.toBuffers().length > 3)
  t.ok(s.startsWith('INVITE sip:bob@example.com SIP/2.0\r\nRecord-Route: <sip:edge.example.com;lr>\r\n') ||
    s.includes('Via: SIP/2.0/UDP edge.example.com;branch=z9hG4bKnew\r\nVia: SIP/2.0/UDP a.example.com;branch=z9hG4bK1;rport=40000;received=198.51.100.9, SIP'))
  t.ok(s.includes('X-Keep:   odd   spacing  \r\n'), 'untouched header byte for byte')
  const m2 = parseMessage(out)
  t.equal(m2.vias.length, 3); t.equal(m2.topVia.branch, 'z9hG4bKnew')
  t.equal(m2.vias[1]!.received, '198.51.100.9'); t.equal(m2.vias[1]!.rport, 40000)
  t.same(m2.routes.map(r => r.uri), ['sip:core.example.com;lr'])
  t.same(m2.recordRoutes.map(r => r.uri), ['sip:edge.example.com;lr'])
  t.equal(m2.maxForwards, 69)
  t.same(m2.contacts.map(c => c.uri), ['sip:alice@10.0.0.1:5060', 'sip:alice@203.0.113.7:1234'])
  t.equal(m2.body.toString(), 'abc')
  m2.validate()
})

t.test('second prependVia ends on top; removeTopVia; request URI; headers; body', async t => {
  const m = parseMessage(REQ)
  const out = parseMessage(new MessageEditor(m).prependVia('SIP/2.0/UDP one;branch=z9hG4bK1a').prependVia('SIP/2.0/UDP two;branch=z9hG4bK2a').toBuffer())
  t.same(out.vias.map(v => v.host), ['two', 'one', 'a.example.com', 'b.example.com'])
  const r = parseMessage(new MessageEditor(m).removeTopVia().setRequestUri('sip:bob@10.1.1.1:5080').toBuffer())
  t.same(r.vias.map(v => v.host), ['b.example.com']); t.equal(r.uri, 'sip:bob@10.1.1.1:5080')
  const r2 = parseMessage(new MessageEditor(r).removeTopVia().toBuffer())
  t.equal(r2.countOf(1), 0, 'the whole Via line removed')
  const h = parseMessage(new MessageEditor(m).addHeader('x-new', 'v').removeHeader('X-Keep').replaceHeader('Subject', 's')
    .setBody('hello', 'text/plain').toBuffer())
  t.equal(h.header('X-New'), 'v'); t.notOk(h.has('x-keep')); t.equal(h.header('subject'), 's')
  t.equal(h.body.toString(), 'hello'); t.equal(h.contentLength, 5); t.equal(h.header('content-type'), 'text/plain')
  const noMf = parseMessage(crlf('OPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\n\n'))
  const added = parseMessage(new MessageEditor(noMf).setMaxForwards(70).ensureContentLength().toBuffer())
  t.equal(added.maxForwards, 70); t.ok(added.hasContentLength)
})
