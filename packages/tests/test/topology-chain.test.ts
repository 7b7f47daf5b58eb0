// Two sipedge nodes in a chain, both hiding topology and masking the Call-ID (ports 23650-23699):
// UA (udp 127.0.0.21) -> node 1 (udp 127.0.0.10) -> node 2 (udp 127.0.0.12 facing node 1, tcp
// 127.0.0.14 facing the app) -> application server (tcp 127.0.0.31). The UA must see nothing of
// node 2 or the app, the app nothing of node 1 or the UA; in-dialog requests both ways, a target
// refresh from the app, BYE from either side.
import t from 'tap'
import { startProxy } from '../dist/sipp.js'
import { SipPeer, PeerDialog } from '../dist/sip-peer.js'

const SECRET = 'dialog: { secret: "topology-chain-secret-0123456789", mirror: false }'
const node1 = await startProxy(`
workers: 2
listen: [udp:127.0.0.10:23650]
domains: [example.com]
${SECRET}
topology_hiding: { call_id: true }
routes:
  - { match: { method: [INVITE, SUBSCRIBE] }, action: { forward: "sip:127.0.0.12:23660" } }
`)
const node2 = await startProxy(`
workers: 2
listen: [udp:127.0.0.12:23660, tcp:127.0.0.14:23661]
domains: [example.com]
dialog: { secret: "another-node-secret-0123456789", mirror: false }
topology_hiding: { call_id: true }
dispatcher:
  sets:
    apps: { probe: false, destinations: ["sip:127.0.0.31:23670;transport=tcp"] }
routes:
  - { match: { method: [INVITE, SUBSCRIBE] }, action: { dispatch: apps } }
`)
t.teardown(async () => { await node1.engine.stop(); await node2.engine.stop() })

const ua = await new SipPeer({ name: 'alice', address: '127.0.0.21', port: 23680, transport: 'udp', contactHost: 'alice-pc.lan' }).start()
const app = await new SipPeer({ name: 'app', address: '127.0.0.31', port: 23670, transport: 'tcp', contactHost: 'app1.internal' }).start()
t.teardown(() => { ua.close(); app.close() })
const toEdge = { host: '127.0.0.10', port: 23650, transport: 'udp' as const }

const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
function hidden(t: Tap.Test, peer: SipPeer, secrets: readonly string[], what: string): void {
  const res = [...new Set(secrets)].map(s => [s, new RegExp('(?<![0-9A-Za-z_.-])' + esc(s) + '(?![0-9A-Za-z_-]|\\.[0-9])')] as const)
  const leaks: string[] = []
  for (const m of peer.received) for (const [s, re] of res) if (re.test(m.head)) leaks.push(`${s} in ${m.start}`)
  t.same(leaks, [], `${what}: ${peer.received.length} messages, nothing of the other side`)
}

async function call(t: Tap.Test): Promise<{ dua: PeerDialog; dapp: PeerDialog }> {
  const inv = ua.sendRequest('INVITE', 'sip:app@example.com', { dest: toEdge })
  const invite = await app.next(app.request('INVITE'), 'INVITE')
  t.equal(invite.all('via').length, 1, 'the app sees one Via')
  const dapp = PeerDialog.asUas(app, invite, 'app-' + app.received.length)
  app.respond(invite, 180, 'Ringing', { toTag: dapp.localTag, contact: true, rr: true })
  await ua.next(ua.response(180, 'INVITE'), '180')
  app.respond(invite, 200, 'OK', { toTag: dapp.localTag, contact: true, rr: true })
  const ok = await ua.next(ua.response(200, 'INVITE'), '200 INVITE')
  t.equal(ok.all('via').length, 1, 'the UA sees its own Via')
  t.equal(ok.all('record-route').length, 1, 'and one Record-Route entry: node 1')
  const dua = PeerDialog.asUac(ua, inv, ok)
  t.comment(`edge URI at the UA: ${dua.remoteTarget.length} bytes, at the app: ${dapp.remoteTarget.length} bytes; Record-Route at the UA: ${ok.get('record-route').length} bytes`)
  dua.send('ACK', { cseq: dua.cseq })
  await app.next(app.request('ACK'), 'ACK')
  return { dua, dapp }
}

t.test('a call through two hiding nodes: re-INVITE from the app, INFO from the UA, BYE from either side', async t => {
  const one = await call(t)
  const two = await call(t)
  // Target refresh from the app (session timer style), through both nodes.
  one.dapp.send('INVITE')
  const reinv = await ua.next(ua.request('INVITE'), 're-INVITE')
  t.match(reinv.uri, /^sip:alice@alice-pc\.lan:23680$/)
  one.dua.refresh(reinv)
  ua.respond(reinv, 200, 'OK', { contact: true })
  const ok = await app.next(app.response(200, 'INVITE'), '200 re-INVITE')
  one.dapp.refresh(ok)
  one.dapp.send('ACK', { cseq: one.dapp.cseq })
  await ua.next(ua.request('ACK'), 'ACK re-INVITE')
  one.dua.send('INFO')
  const info = await app.next(app.request('INFO'), 'INFO')
  t.match(info.uri, /^sip:app@app1\.internal:23670;transport=tcp$/)
  t.equal(info.get('call-id'), app.received.find(m => m.method === 'INVITE')!.get('call-id'), 'the app sees one Call-ID for the dialog')
  app.respond(info, 200, 'OK')
  await ua.next(ua.response(200, 'INFO'), '200 INFO')
  for (const [from, to] of [[one.dua, app], [two.dapp, ua]] as const) {
    from.send('BYE')
    const b = await to.next(to.request('BYE'), 'BYE')
    to.respond(b, 200, 'OK')
    await from.peer.next(from.peer.response(200, 'BYE'), '200 BYE')
  }
  hidden(t, app, [ua.address, String(ua.port), ua.contactHost, ...ua.branches, ...ua.callIds, '127.0.0.10', '23650'], 'app side')
  hidden(t, ua, [app.address, String(app.port), app.contactHost, ...app.branches, ...app.received.map(m => m.get('call-id')),
    '127.0.0.12', '23660', '127.0.0.14', '23661'], 'UA side')
  t.same(ua.unanswered(), [], 'UA: every transaction answered')
  t.same(app.unanswered(), [], 'app: every transaction answered')
})

declare namespace Tap { type Test = typeof t }
