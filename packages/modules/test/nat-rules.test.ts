// The NAT rules without sockets (docs/nat.md): detection (private ranges, source vs Via), the
// signed flow parameter, and the registrar's lookup rule — flow for a UA behind NAT, Contact for
// one that is not (also when it registered from another port or host), old records without the
// flag. Nothing here sends a packet.
import t from 'tap'
import { join } from 'node:path'
import { parseMessage, parseVia, type SipMessage } from '@sipedge/sip'
import { parseConfig, type FrozenConfig } from '@sipedge/config'
import { openStores } from '@sipedge/store'
import type { ServerTransaction } from '@sipedge/transaction'
import type { Destination, Target } from '@sipedge/proxy'
import { NatDetector, FlowTokens, flowParamOf, createRegistrar, hopsOf, type LocationRegistrar } from '../dist/index.js'

const via = (s: string) => parseVia(s)

t.test('private ranges: RFC 1918, RFC 6598, link-local, ULA; loopback and names are public', async t => {
  const d = new NatDetector()
  for (const h of ['10.1.2.3', '172.16.0.1', '172.31.255.254', '192.168.1.20', '100.64.0.1', '100.127.255.254', '169.254.10.10', 'fc00::1', 'fd12:3456::1', '[fd00::5]', 'fe80::1']) {
    t.ok(d.isPrivate(h), `${h} private`)
  }
  for (const h of ['127.0.0.1', '127.0.200.50', '::1', '172.32.0.1', '100.128.0.1', '192.0.2.1', '2001:db8::1', 'example.com', '192.168.1.20.example.com']) {
    t.notOk(d.isPrivate(h), `${h} public`)
  }
  const custom = new NatDetector(['198.51.100.0/24', '127.0.0.0/8'])
  t.ok(custom.isPrivate('198.51.100.7'), 'nat.private_networks is honoured')
  t.notOk(custom.isPrivate('10.0.0.1'), 'and replaces the default')
  t.notOk(custom.isPrivate('127.0.0.5'), 'loopback stays public even when listed')
})

t.test('source vs Via sent-by: address always, port for UDP only', async t => {
  const d = new NatDetector()
  const udp = (address: string, port: number): Destination => ({ transport: 'udp', address, port })
  const tcp = (address: string, port: number): Destination => ({ transport: 'tcp', address, port, connId: 3 })
  t.notOk(d.viaDiffers(via('SIP/2.0/UDP 127.0.0.5:5062;branch=z9hG4bKa'), udp('127.0.0.5', 5062)), 'same address and port')
  t.ok(d.viaDiffers(via('SIP/2.0/UDP 127.0.200.50:5062;branch=z9hG4bKa'), udp('127.0.0.5', 5062)), 'other address')
  t.ok(d.viaDiffers(via('SIP/2.0/UDP 127.0.0.5:5062;branch=z9hG4bKa'), udp('127.0.0.5', 40123)), 'other port (UDP)')
  t.ok(d.viaDiffers(via('SIP/2.0/UDP 127.0.0.5;branch=z9hG4bKa'), udp('127.0.0.5', 40123)), 'no port: 5060')
  t.notOk(d.viaDiffers(via('SIP/2.0/TCP 127.0.0.5:5060;branch=z9hG4bKa'), tcp('127.0.0.5', 40123)), 'a stream client sends from an ephemeral port')
  t.ok(d.viaDiffers(via('SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKa'), tcp('127.0.0.5', 40123)), 'a WebSocket client names no address of its own')
  t.ok(d.viaDiffers(via('SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bKa'), udp('2001:db8::2', 5060)))
  t.notOk(d.viaDiffers(via('SIP/2.0/UDP [2001:DB8::1]:5060;branch=z9hG4bKa'), udp('2001:db8::1', 5060)), 'IPv6 compared without brackets and case')
  t.ok(d.behindNat(via('SIP/2.0/UDP 127.0.0.5:5062;branch=z9hG4bKa'), udp('127.0.0.5', 5062), '192.168.1.20'), 'a private Contact host')
  t.notOk(d.behindNat(via('SIP/2.0/UDP 127.0.0.5:5062;branch=z9hG4bKa'), udp('127.0.0.5', 5062), '127.0.200.50'), 'a loopback Contact host')
})

t.test('flow parameter: signed over Call-ID and the caller tag; tells caller from callee; forgeries fail', async t => {
  const k = new FlowTokens('a-secret-of-16-chars')
  const caller: Destination = { transport: 'tcp', address: '127.0.0.7', port: 40001, socketId: 1, connId: 42 }
  const callee: Destination = { transport: 'udp', address: '127.0.0.8', port: 5064, socketId: 0 }
  const tok = k.sign(caller, callee, 'call-1', 'ftag')
  t.match(tok, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{16}$/)
  const fromCaller = k.verify(tok, 'call-1', 'ftag', 'ttag')
  t.same(fromCaller, { caller, callee, callerTag: 'ftag' })
  const fromCallee = k.verify(tok, 'call-1', 'ttag', 'ftag')
  t.equal(fromCallee?.callerTag, 'ftag', 'the caller tag is found in To when the callee sends')
  t.equal(k.verify(tok, 'call-2', 'ftag', 'ttag'), null, 'another Call-ID')
  t.equal(k.verify(tok, 'call-1', 'x', 'y'), null, 'other tags')
  const [flows, mac] = tok.split('.') as [string, string]
  const other = Buffer.from('udp,192.0.2.66,5060,0,0|', 'utf8').toString('base64url')
  t.equal(k.verify(other + '.' + mac, 'call-1', 'ftag', 'ttag'), null, 'a flow swapped under the same MAC')
  t.equal(k.verify(flows + '.' + mac.slice(0, -2), 'call-1', 'ftag', 'ttag'), null, 'a short MAC')
  t.equal(new FlowTokens('another-secret-16ch').verify(tok, 'call-1', 'ftag', 'ttag'), null, 'another key')
  const one = k.sign(null, callee, 'c', 'f')
  t.same(k.verify(one, 'c', 'f', undefined), { caller: null, callee, callerTag: 'f' }, 'a side without flow')
  k.rekey('rotated-secret-16chars')
  t.ok(k.verify(tok, 'call-1', 'ftag', 'ttag'), 'the previous key still verifies after a rekey')
  t.equal(flowParamOf('sip:127.0.0.1:5060;lr;sed=abc.def;sef=' + tok), tok)
  t.equal(flowParamOf('<sip:127.0.0.1:5060;sef=' + tok + ';lr>'), tok)
  t.equal(flowParamOf('sip:127.0.0.1;lr'), null)
})

// ------------------------------------------------------------------------------ registrar lookup

interface Resp { status: number }
function fakeTx(): { tx: ServerTransaction; done: Promise<Resp> } {
  let resolve!: (r: Resp) => void
  const done = new Promise<Resp>(r => (resolve = r))
  const tx = { respond(status: number) { resolve({ status }); return true } }
  return { tx: tx as unknown as ServerTransaction, done }
}
let cseq = 1
function register(user: string, viaSentBy: string, contact: string, extra: string[] = [], transport = 'UDP'): SipMessage {
  return parseMessage(Buffer.from([
    'REGISTER sip:example.com SIP/2.0', `Via: SIP/2.0/${transport} ${viaSentBy};branch=z9hG4bK${Math.random().toString(36).slice(2)}`,
    'Max-Forwards: 70', `From: <sip:${user}@example.com>;tag=f`, `To: <sip:${user}@example.com>`, `Call-ID: reg-${user}`, `CSeq: ${cseq++} REGISTER`,
    `Contact: ${contact}`, ...extra, 'Content-Length: 0', '', ''].join('\r\n')))
}
function invite(user: string): SipMessage {
  return parseMessage(Buffer.from([
    `INVITE sip:${user}@example.com SIP/2.0`, 'Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bKinv', 'Max-Forwards: 70',
    'From: <sip:app@127.0.0.2>;tag=a', `To: <sip:${user}@example.com>`, 'Call-ID: inv', 'CSeq: 1 INVITE', 'Content-Length: 0', '', ''].join('\r\n')))
}
async function setup(t: Tap.Test, extra = ''): Promise<LocationRegistrar> {
  const dir = t.testdir({})
  const config = parseConfig(`
domains: [example.com]
registrar: { store: "lmdb:${join(dir, 'loc')}", min_expires: 1s }
${extra}`) as FrozenConfig
  const stores = await openStores(config.registrar.store, { sweepIntervalMs: 0 })
  t.teardown(() => stores.close())
  return createRegistrar({ config, stores, workerIndex: 0, log: { debug() {}, info() {}, warn() {}, error() {} } })
}
async function reg(r: LocationRegistrar, m: SipMessage, src: Destination): Promise<number> {
  const { tx, done } = fakeTx()
  r.handleRegister(m, tx, src)
  return (await done).status
}
const lookup = async (r: LocationRegistrar, user: string): Promise<Target[]> => (await r.lookup(invite(user))) as Target[]

t.test('lookup: behind NAT -> the flow (480 when it is gone); not behind NAT -> the Contact', async t => {
  const r = await setup(t)
  const src: Destination = { transport: 'udp', address: '127.0.0.5', port: 40000, socketId: 0 }
  t.equal(await reg(r, register('nated', '127.0.200.50:5062', '<sip:nated@127.0.200.50:5062>'), src), 200)
  const [a] = await lookup(r, 'nated')
  t.same(a!.flow, { transport: 'udp', address: '127.0.0.5', port: 40000, socketId: 0 }, 'source differs from Via: the flow')
  t.equal(a!.requestUri, 'sip:nated@127.0.200.50:5062', 'the Request-URI is still the Contact')
  t.equal(a!.failStatus, 480)
  t.equal(hopsOf([a!])[0]!.failStatus, 480, 'the hop carries it to the core')

  t.equal(await reg(r, register('priv', '127.0.0.5:40000', '<sip:priv@192.168.1.20:5060>'), src), 200)
  t.ok((await lookup(r, 'priv'))[0]!.flow, 'a private Contact host: the flow')

  // Registration on another's behalf (§10.2): one agent registers, the Contact is another host.
  t.equal(await reg(r, register('third', '127.0.0.5:40000', '<sip:third@127.0.0.9:5070>'), src), 200)
  const [c] = await lookup(r, 'third')
  t.equal(c!.flow, undefined, 'not behind NAT: no flow')
  t.equal(c!.uri, 'sip:third@127.0.0.9:5070', 'sent to the Contact')

  // A phone that registers from an ephemeral port (Via names it), Contact its listening port.
  t.equal(await reg(r, register('eph', '127.0.0.5:40000', '<sip:eph@127.0.0.5:5060>'), src), 200)
  const [e] = await lookup(r, 'eph')
  t.equal(e!.flow, undefined)
  t.equal(e!.uri, 'sip:eph@127.0.0.5:5060', 'its Contact, not the REGISTER source')
})

t.test('lookup: streams — NATed only over the connection; not NATed: connection first, then Contact; WS only over its flow; Outbound 430', async t => {
  const r = await setup(t)
  const tcp: Destination = { transport: 'tcp', address: '127.0.0.6', port: 41000, socketId: 1, connId: 7 }
  t.equal(await reg(r, register('tn', '127.0.200.60:5060', '<sip:tn@127.0.200.60:5060;transport=tcp>', [], 'TCP'), tcp), 200)
  const tn = await lookup(r, 'tn')
  t.equal(tn.length, 1)
  t.same(tn[0]!.flow, tcp, 'NATed: the very connection, nothing else')
  t.equal(tn[0]!.failStatus, 480)

  t.equal(await reg(r, register('tp', '127.0.0.6:5060', '<sip:tp@127.0.0.6:5060;transport=tcp>', [], 'TCP'), tcp), 200)
  const tp = await lookup(r, 'tp')
  t.same(tp.map(x => x.flow?.connId ?? null), [7, null], 'not NATed, Contact on the same host: its connection, then its Contact')
  t.equal(tp[0]!.failStatus, undefined, 'the connection is a preference, not the only way')

  const ws: Destination = { transport: 'wss', address: '127.0.0.6', port: 41001, socketId: 2, connId: 8 }
  t.equal(await reg(r, register('w', '127.0.0.6:41001', '<sip:w@127.0.0.6:41001;transport=ws>', [], 'WSS'), ws), 200)
  t.same((await lookup(r, 'w')).map(x => x.flow?.connId), [8], 'a WebSocket peer: only its connection')

  const inst = '+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"'
  t.equal(await reg(r, register('ob', '127.0.0.6:5060', `<sip:ob@127.0.0.6:5060;transport=tcp;ob>;${inst};reg-id=1`, ['Supported: outbound'], 'TCP'), tcp), 200)
  const ob = await lookup(r, 'ob')
  t.equal(ob.length, 1)
  t.equal(ob[0]!.failStatus, 430, 'RFC 5626 §5.3: 430 Flow Failed')
})

t.test('lookup: fix_contact off sends to the Contact; old records without the flag are judged on the Contact', async t => {
  const r = await setup(t, 'nat: { fix_contact: false }')
  const src: Destination = { transport: 'udp', address: '127.0.0.5', port: 40000, socketId: 0 }
  t.equal(await reg(r, register('nated', '127.0.200.50:5062', '<sip:nated@127.0.200.50:5062>'), src), 200)
  t.equal((await lookup(r, 'nated'))[0]!.flow, undefined, 'fix_contact: false')
  const b = { contact: 'sip:x@127.0.0.5:40000', received: { transport: 'udp', address: '127.0.0.5', port: 40000, socketId: 0, connId: 0 } }
  t.notOk(r.isNatBinding(b), 'old record, Contact is the source host: not NATed')
  t.ok(r.isNatBinding({ ...b, contact: 'sip:x@10.1.1.1:5060' }), 'old record, private Contact: NATed')
  t.ok(r.isNatBinding({ ...b, contact: 'sip:x@127.0.0.9:5060' }), 'old record, Contact elsewhere: NATed (the old behaviour)')
  t.notOk(r.isNatBinding({ ...b, contact: 'sip:x@10.1.1.1:5060', nat: false }), 'the flag wins when present')
})
