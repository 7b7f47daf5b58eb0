// The default responder through its handler interface, without threads or sockets.
import t from 'tap'
import { createHandler, type FrameMeta } from '@sipedge/workers'

function setup(config: unknown = {}): { h: ReturnType<typeof createHandler>; sent: Array<{ meta: FrameMeta; text: string }> } {
  const sent: Array<{ meta: FrameMeta; text: string }> = []
  const log = { debug() {}, info() {}, warn() {}, error() {} }
  const h = createHandler({
    workerIndex: 0, config, inProcess: true, log, now: () => 0,
    send: (meta, payload) => { sent.push({ meta: { ...meta }, text: Buffer.concat(([] as Uint8Array[]).concat(payload as Uint8Array)).toString('latin1') }); return true },
  })
  return { h, sent }
}
const meta: FrameMeta = { transport: 2, socketId: 1, connId: 7, family: 4, address: '192.0.2.1', port: 5070, recvTime: 0, flags: 0 }
const req = (method: string, uri: string, extra = ''): Buffer => Buffer.from(
  `${method} ${uri} SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.1:5070;branch=z9hG4bK-1\r\nMax-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <${uri}>\r\nCall-ID: h1@test\r\nCSeq: 1 ${method}\r\n${extra}Content-Length: 0\r\n\r\n`, 'latin1')

t.test('OPTIONS for the proxy -> 200 on the same transport/connection', async t => {
  const { h, sent } = await setup()
  h.onFrame(meta, req('OPTIONS', 'sip:proxy.example.com'))
  t.equal(sent.length, 1)
  t.match(sent[0]!.text, /^SIP\/2\.0 200 OK\r\n/)
  t.match(sent[0]!.text, /\r\nAllow: OPTIONS/)
  t.match(sent[0]!.text, /\r\nCall-ID: h1@test\r\n/)
  t.same(sent[0]!.meta, meta, 'answered on the way it came (same connId, socketId, address)')
})

t.test('OPTIONS with a user part: 200 only for a configured domain, else 501', async t => {
  const { h, sent } = await setup({ domains: ['Example.COM'] })
  h.onFrame(meta, req('OPTIONS', 'sip:alice@example.com'))
  h.onFrame(meta, req('OPTIONS', 'sip:alice@elsewhere.net'))
  t.match(sent[0]!.text, /^SIP\/2\.0 200/)
  t.match(sent[1]!.text, /^SIP\/2\.0 501 Not Implemented/)
  h.onControl?.({ type: 'config', config: { domains: ['elsewhere.net'] } })
  h.onFrame(meta, req('OPTIONS', 'sip:alice@elsewhere.net'))
  t.match(sent[2]!.text, /^SIP\/2\.0 200/, 'a config update changes it')
})

t.test('other requests -> 501; ACK, responses and garbage -> nothing', async t => {
  const { h, sent } = await setup()
  h.onFrame(meta, req('INVITE', 'sip:bob@example.com'))
  h.onFrame(meta, req('REGISTER', 'sip:example.com'))
  t.equal(sent.length, 2)
  t.ok(sent.every(s => s.text.startsWith('SIP/2.0 501 ')))
  h.onFrame(meta, req('ACK', 'sip:bob@example.com'))
  h.onFrame(meta, Buffer.from('SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP x;branch=z9hG4bK2\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: r\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n'))
  h.onFrame(meta, Buffer.from('\x00\x01garbage'))
  t.equal(sent.length, 2)
})

t.test('a request missing a mandatory header gets the parser\'s 4xx', async t => {
  const { h, sent } = await setup()
  h.onFrame(meta, Buffer.from('OPTIONS sip:proxy SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK3\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:proxy>\r\nCall-ID: x\r\nContent-Length: 0\r\n\r\n'))
  t.equal(sent.length, 1)
  t.match(sent[0]!.text, /^SIP\/2\.0 4\d\d /)
})
