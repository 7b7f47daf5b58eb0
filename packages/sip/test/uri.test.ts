import t from 'tap'
import { parseUri, uriEquals, formatUri, unescapeUri, SipParseError } from '@sipedge/sip'

t.test('parse sip/sips/tel', async t => {
  const u = parseUri('sips:alice:secret@[2001:db8::1]:5061;transport=TLS;lr;maddr=239.1.1.1?Subject=hi&X=1')
  t.equal(u.scheme, 'sips'); t.equal(u.user, 'alice'); t.equal(u.password, 'secret'); t.equal(u.host, '[2001:db8::1]')
  t.equal(u.port, 5061); t.equal(u.params.get('transport'), 'TLS'); t.equal(u.params.get('lr'), null)
  t.equal(u.params.get('maddr'), '239.1.1.1'); t.equal(u.headers.get('Subject'), 'hi')
  t.equal(formatUri(u), u.raw)
  const v = parseUri('sip:example.com;ob')
  t.equal(v.user, undefined); t.equal(v.host, 'example.com'); t.equal(v.params.get('ob'), null)
  const tel = parseUri('tel:+1-201-555-0123;phone-context=example.com')
  t.equal(tel.scheme, 'tel'); t.equal(tel.user, '+1-201-555-0123'); t.equal(tel.params.get('phone-context'), 'example.com')
  const other = parseUri('urn:service:sos')
  t.equal(other.scheme, 'urn'); t.equal(other.opaque, 'service:sos')
  t.equal(unescapeUri('%61lice%20smith'), 'alice smith')
})

t.test('bad URIs throw SipParseError', async t => {
  for (const s of ['', 'sip:', 'sip:@host', 'sip:a@', 'sip:host:99999', 'sip:host:12x', 'sip:[2001:db8::1', 'sip:a b@host', '1sip:x',
    'sip:host;=x', 'sip:u%4@host', 'sip:host?', 'sip:host?a', 'tel:', 'tel:abc!']) {
    t.throws(() => parseUri(s), SipParseError, JSON.stringify(s))
  }
})

t.test('RFC 3261 §19.1.4 equivalences', async t => {
  t.ok(uriEquals('sip:%61lice@atlanta.com;transport=TCP', 'sip:alice@AtLanTa.CoM;Transport=tcp'))
  t.ok(uriEquals('sip:carol@chicago.com', 'sip:carol@chicago.com;newparam=5'))
  t.ok(uriEquals('sip:carol@chicago.com', 'sip:carol@chicago.com;security=on'))
  t.ok(uriEquals('sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com', 'sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com'))
  t.ok(uriEquals('sip:alice@atlanta.com?subject=project%20x&priority=urgent', 'sip:alice@atlanta.com?priority=urgent&subject=project%20x'))
  t.ok(uriEquals('sip:[2001:DB8::1]', 'sip:[2001:db8:0:0:0:0:0:1]'))
})

t.test('RFC 3261 §19.1.4 non-equivalences', async t => {
  t.notOk(uriEquals('SIP:ALICE@AtLanTa.CoM;Transport=udp', 'sip:alice@AtLanTa.CoM;Transport=UDP'))
  t.notOk(uriEquals('sip:bob@biloxi.com', 'sips:bob@biloxi.com'))
  t.notOk(uriEquals('sip:bob@biloxi.com', 'sip:bob@biloxi.com:5060'))
  t.notOk(uriEquals('sip:bob@biloxi.com', 'sip:bob@biloxi.com;transport=udp'))
  t.notOk(uriEquals('sip:bob@biloxi.com', 'sip:bob@biloxi.com:6000;transport=tcp'))
  t.notOk(uriEquals('sip:carol@chicago.com', 'sip:carol@chicago.com?Subject=next%20meeting'))
  t.notOk(uriEquals('sip:bob@phone21.boxesbybob.com', 'sip:bob@192.0.2.4'))
  t.notOk(uriEquals('sip:a@h;maddr=1.2.3.4', 'sip:a@h'))
  t.notOk(uriEquals('sip:a@h;user=phone', 'sip:a@h'))
  t.notOk(uriEquals('not a uri', 'sip:a@h'))
})
