// The acceptance configurations of issues 12 (NAT) and 13 (topology hiding), verbatim, through the
// `sipedge --config` command, one flow each over real sockets. Both are the proxy-core issue's
// configuration (issue 4) with one block added "unchanged": so they use its fixed addresses —
// sipedge on 127.0.0.1:5060 (UDP, TCP), metrics on 127.0.0.1:9090, the application servers
// 127.0.0.2:5070 and 127.0.0.3:5070, the store `lmdb:./var/location` (relative: the process runs
// in a temporary directory). No other test uses these ports; the two configurations run one
// after the other.
// - issue 12: a phone behind NAT (it writes 127.0.200.5 in Via and Contact) registers; an
//   application server's INVITE to its AOR reaches it at the address and port it registered from.
// - issue 13: a phone's INVITE is dispatched to the application cluster; neither side sees the
//   other's address, port or branch (the Call-ID is end to end unless `call_id: true`, which the
//   acceptance configuration does not set); 200, ACK and BYE complete.
import t from 'tap'
import { tempDir, waitUntil } from '@sipedge/tests'
import { SipPeer, PeerDialog, type PeerMsg } from '../dist/sip-peer.js'
import { startSipedge, http } from '../dist/ops.js'

// Issue 4's configuration, as written there.
const PROXY_CORE = `workers: 2
listen:
  - udp:127.0.0.1:5060
  - tcp:127.0.0.1:5060
domains: [example.com]
registrar:
  store: lmdb:./var/location
dispatcher:
  sets:
    apps:
      algorithm: hash-callid
      probe: { method: OPTIONS, interval: 5s }
      destinations:
        - sip:127.0.0.2:5070
        - sip:127.0.0.3:5070
routes:
  - match: { method: REGISTER, domain: example.com }
    action: register
  - match: { source: apps }
    action: lookup
  - match: { method: [INVITE, SUBSCRIBE, MESSAGE, OPTIONS, REFER, NOTIFY, INFO] }
    action: { dispatch: apps }
metrics:
  listen: 127.0.0.1:9090
`
// Issue 12: "this block added, unchanged".
const NAT_BLOCK = `nat:
  force_rport: true
  fix_contact: true
  keepalive: { enabled: true, interval: 5s, method: auto }
`
const EDGE = { host: '127.0.0.1', port: 5060 }
const ROUTE = ['<sip:127.0.0.1:5060;lr>']

/** The application servers of the set; they answer the dispatcher's OPTIONS probes. */
async function startApps(tt: Tap.Test): Promise<SipPeer[]> {
  const apps = await Promise.all(['127.0.0.2', '127.0.0.3'].map((a, i) => new SipPeer({ name: `app${i + 1}`, address: a, port: 5070, transport: 'udp' }).start()))
  let stop = false
  for (const app of apps) {
    void (async () => {
      while (!stop) {
        const m = await app.next(app.request('OPTIONS'), 'probe', 500).catch(() => null)
        if (m !== null) app.respond(m, 200, 'OK', { toTag: 'probe' })
      }
    })()
  }
  tt.teardown(() => { stop = true; for (const a of apps) a.close() })
  return apps
}

async function start(tt: Tap.Test, yaml: string): Promise<void> {
  const tmp = tempDir('sipedge-acceptance-')
  const edge = await startSipedge(tmp.dir, 'sipedge.yaml', yaml, { cwd: tmp.dir })
  tt.teardown(async () => { await edge.stop(); tmp.cleanup() })
  const h = await http('GET', 'http://127.0.0.1:9090/metrics')
  tt.equal(h.status, 200, 'metrics on 127.0.0.1:9090')
}

t.test('issue 12 acceptance configuration (proxy core + nat block): a NATed phone is reached where it registered from', async t => {
  const yaml = PROXY_CORE + NAT_BLOCK
  await start(t, yaml)
  const [app] = await startApps(t) as [SipPeer, SipPeer]
  const phone = await new SipPeer({ name: 'natphone', address: '127.0.0.1', port: 25360, transport: 'udp', advertise: '127.0.200.5' }).start()
  t.teardown(() => phone.close())
  // Via and Contact name 127.0.200.5:25360: nothing sent there would arrive
  phone.sendRequest('REGISTER', 'sip:example.com', { from: 'sip:natphone@example.com', to: 'sip:natphone@example.com', headers: ['Expires: 300'], dest: { ...EDGE, transport: 'udp' } })
  const reg = await phone.next(phone.response(200, 'REGISTER'), 'REGISTER 200 (force_rport: sent to the source port)')
  t.match(reg.get('contact'), /127\.0\.200\.5/, 'the binding keeps the Contact the phone wrote')
  const callId = `acc12-${Date.now()}`
  app.sendRequest('INVITE', 'sip:natphone@example.com', { callId, route: ROUTE })
  const inv = await phone.next(m => m.method === 'INVITE' && m.get('call-id') === callId, 'INVITE at the NATed phone')
  t.equal(inv.uri, phone.contact, 'delivered to the source address, Request-URI its Contact')
  phone.respond(inv, 200, 'OK', { toTag: 'n1', contact: true, rr: true })
  const ok = await app.next(m => m.status === 200 && m.get('call-id') === callId, '200 at the application server')
  t.pass('the phone answered; the application server got the 200')
  const d = PeerDialog.asUac(app, app.sent.find(s => s.includes(callId))!, ok)
  d.send('ACK', { cseq: 1 })
  await phone.next(m => m.method === 'ACK' && m.get('call-id') === callId, 'ACK at the phone')
  d.send('BYE')
  const bye = await phone.next(m => m.method === 'BYE' && m.get('call-id') === callId, 'BYE at the phone (the flow in our Record-Route)')
  phone.respond(bye, 200, 'OK')
  await app.next(m => m.status === 200 && m.cseq.method === 'BYE', '200 for the BYE')
  t.pass('ACK and BYE reached the phone behind NAT; BYE answered')
})

t.test('issue 13 acceptance configuration (proxy core + topology_hiding: true): neither side sees the other', async t => {
  const yaml = 'topology_hiding: true\n' + PROXY_CORE
  await start(t, yaml)
  const apps = await startApps(t)
  const phone = await new SipPeer({ name: 'thphone', address: '127.0.0.1', port: 25361, transport: 'udp' }).start()
  t.teardown(() => phone.close())
  // `topology_hiding: true` leaves the Call-ID as the UA wrote it (masking is `call_id: true`,
  // off by default so that Replaces/Refer-To keep working: docs/topology-hiding.md): a Call-ID
  // that carries an address would show it, so this phone's does not.
  const callId = `acc13-${Date.now()}`
  const invText = phone.sendRequest('INVITE', 'sip:conference@example.com', { callId, dest: { ...EDGE, transport: 'udp' } })
  // hash-callid picks one of the two: wait (bounded) until one of them has it
  await waitUntil(() => apps.some(a => !a.none(m => m.method === 'INVITE')), 'the INVITE at an application server', 8_000)
  const app = apps.find(a => !a.none(m => m.method === 'INVITE'))!
  const inv: PeerMsg = await app.next(m => m.method === 'INVITE', 'INVITE at the application server')
  const phoneSecrets = ['25361', ...phone.branches]
  for (const s of phoneSecrets) t.notOk(inv.head.includes(s), `the application server does not see ${s}`)
  app.respond(inv, 200, 'OK', { toTag: 'a1', contact: true, rr: true })
  const ok = await phone.next(m => m.status === 200 && m.cseq.method === 'INVITE', '200 at the phone')
  const appSecrets = ['127.0.0.2', '127.0.0.3', '5070', ...inv.all('via').map(v => /branch=([^;,\s]+)/.exec(v)?.[1] ?? 'none').slice(1)]
  for (const s of appSecrets) t.notOk(ok.head.includes(s), `the phone does not see ${s}`)
  t.equal(ok.get('call-id'), callId, 'the phone sees its own Call-ID')
  const d = PeerDialog.asUac(phone, invText, ok)
  d.send('ACK', { cseq: 1 })
  await app.next(m => m.method === 'ACK', 'ACK at the application server')
  d.send('BYE')
  const bye = await app.next(m => m.method === 'BYE', 'BYE at the application server')
  for (const s of phoneSecrets) t.notOk(bye.head.includes(s), `the BYE does not show ${s}`)
  app.respond(bye, 200, 'OK')
  await phone.next(phone.response(200, 'BYE'), '200 for the BYE at the phone')
  t.pass('200, ACK, BYE and its 200 completed through the hiding edge')
})
