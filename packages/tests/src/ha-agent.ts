// The client side of the HA VIP test (packages/tests/test/ha-vip.test.ts), run inside the lab's
// client namespace with `ip netns exec <ns> node dist/ha-agent.js`: the phones and the
// application servers live there, and every request they send goes to the VIP. The test drives it
// over the IPC channel, one command at a time ({id, cmd, args} -> {id, ok, result | error}).
//
// Phones (UDP, one port each) answer NOTIFY, BYE and OPTIONS with 200; application servers answer
// INVITE with 200 (Record-Route copied, so the dialog is routed through the VIP), ACK, BYE and
// OPTIONS (the dispatcher's probes). Requests are retransmitted (same branch) every second while
// no final response came, as a UDP UA would (RFC 3261 §17.1.2), up to a bound.
import { randomBytes } from 'node:crypto'
import { SipPeer, PeerDialog, type PeerMsg } from './sip-peer.js'

interface Call {
  callId: string
  phone: SipPeer
  app: SipPeer | null
  uac: PeerDialog
  uas: PeerDialog | null
  acked: boolean
  ended: boolean
}

interface Setup { vip: string; port: number; phoneIp: string; phonePort: number; phones: number; apps: Array<{ ip: string; port: number }> }

let setup: Setup | null = null
const phones: SipPeer[] = []
const apps: SipPeer[] = []
const calls = new Map<string, Call>()
const notified = new Map<string, number>()
let stopping = false

const sleep = (ms: number): Promise<void> => new Promise(r => setTimeout(r, ms))

/** Answers the requests a peer does not wait for itself, until stop. */
async function serve(peer: SipPeer, isApp: boolean): Promise<void> {
  while (!stopping) {
    let m: PeerMsg
    try {
      m = await peer.next(x => x.method !== null, 'request', 1000)
    } catch {
      continue
    }
    const method = m.method!
    if (method === 'ACK') {
      const c = calls.get(m.get('call-id'))
      if (c !== undefined && isApp) c.acked = true
      continue
    }
    if (method === 'INVITE' && isApp) {
      const callId = m.get('call-id')
      const c = calls.get(callId)
      // a retransmitted INVITE gets the same answer (same To tag)
      const toTag = c?.uas?.localTag ?? randomBytes(4).toString('hex')
      if (c !== undefined && c.uas === null) { c.uas = PeerDialog.asUas(peer, m, toTag); c.app = peer }
      peer.respond(m, 200, 'OK', { toTag, contact: true, rr: true })
      continue
    }
    if (method === 'NOTIFY' && !isApp) {
      notified.set(peer.name, (notified.get(peer.name) ?? 0) + 1)
      peer.respond(m, 200, 'OK')
      continue
    }
    if (method === 'BYE') {
      const c = calls.get(m.get('call-id'))
      if (c !== undefined) c.ended = true
      peer.respond(m, 200, 'OK')
      continue
    }
    if (method === 'OPTIONS') { peer.respond(m, 200, 'OK'); continue }
    peer.respond(m, 501, 'Not Implemented')
  }
}

/** Sends `text` to the VIP until a final response for its branch and method arrives (bounded). */
async function transact(peer: SipPeer, text: string, tries = 6): Promise<PeerMsg | null> {
  const s = setup!
  const branch = /;branch=([^;,\s]+)/.exec(text)?.[1] ?? ''
  const method = text.slice(0, text.indexOf(' '))
  for (let i = 0; i < tries; i++) {
    if (i > 0) peer.send(text, s.vip, s.port)
    try {
      return await peer.next(m => m.status >= 200 && m.branch === branch && m.cseq.method === method, `final response to ${method}`, 1000)
    } catch { /* retransmit */ }
  }
  return null
}

const vipDest = (): { host: string; port: number } => ({ host: setup!.vip, port: setup!.port })

async function start(args: Setup): Promise<{ phones: number; apps: number }> {
  setup = args
  for (let i = 0; i < args.phones; i++) {
    phones.push(await new SipPeer({ name: `phone${String(i).padStart(3, '0')}`, address: args.phoneIp, port: args.phonePort + i, transport: 'udp' }).start())
  }
  for (const [i, a] of args.apps.entries()) apps.push(await new SipPeer({ name: `app${i + 1}`, address: a.ip, port: a.port, transport: 'udp' }).start())
  for (const p of phones) void serve(p, false)
  for (const a of apps) void serve(a, true)
  return { phones: phones.length, apps: apps.length }
}

/** REGISTERs phones [from, to) through the VIP; the status each got (0: none). */
async function register(from: number, to: number, expires = 600): Promise<Record<string, number>> {
  const out: Record<string, number> = {}
  await Promise.all(phones.slice(from, to).map(async p => {
    const text = p.sendRequest('REGISTER', 'sip:example.com', { to: `sip:${p.name}@example.com`, from: `sip:${p.name}@example.com`, headers: [`Expires: ${expires}`], dest: vipDest() })
    out[p.name] = (await transact(p, text))?.status ?? 0
  }))
  return out
}

/** Phones [from, to) each call sip:conf<i>@example.com through the VIP (dispatched to an app); returns the established Call-IDs and failures. */
async function call(from: number, to: number): Promise<{ established: string[]; failed: Record<string, string> }> {
  const established: string[] = []
  const failed: Record<string, string> = {}
  await Promise.all(phones.slice(from, to).map(async (p, k) => {
    const i = from + k
    const callId = `hv-${p.name}-${randomBytes(4).toString('hex')}`
    const ruri = `sip:conf${i}@example.com`
    const text = p.sendRequest('INVITE', ruri, { callId, to: ruri, from: `sip:${p.name}@example.com`, dest: vipDest(), headers: ['Content-Type: application/sdp'], body: 'v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n' })
    const call: Call = { callId, phone: p, app: null, uac: null as unknown as PeerDialog, uas: null, acked: false, ended: false }
    calls.set(callId, call)
    const r = await transact(p, text)
    if (r === null || r.status !== 200) { failed[callId] = r === null ? 'no final response' : `${r.status}`; calls.delete(callId); return }
    call.uac = PeerDialog.asUac(p, text, r)
    const ack = call.uac.send('ACK', { cseq: call.uac.cseq })
    // the ACK is end to end: it must reach the app; resend it (as a 2xx retransmission would make us) a few times if not
    for (let t = 0; t < 5 && !call.acked; t++) {
      await sleep(400)
      if (!call.acked) p.send(ack, setup!.vip, setup!.port)
    }
    if (!call.acked || call.uas === null) { failed[callId] = 'ACK did not reach the app server'; return }
    established.push(callId)
  }))
  return { established, failed }
}

/** Ends calls with BYE, from the caller ('uac') or from the app server ('uas'); the final status each BYE got (0: none). */
async function bye(callIds: readonly string[], side: 'uac' | 'uas'): Promise<Record<string, { status: number; from: string }>> {
  const out: Record<string, { status: number; from: string }> = {}
  await Promise.all(callIds.map(async id => {
    const c = calls.get(id)
    if (c === undefined || (side === 'uas' && c.uas === null)) { out[id] = { status: -1, from: '' }; return }
    const dlg = side === 'uac' ? c.uac : c.uas!
    const text = dlg.send('BYE')
    const r = await transact(dlg.peer, text)
    if (r !== null && r.status === 200) c.ended = true
    out[id] = { status: r?.status ?? 0, from: r === null ? '' : `${r.from.address}:${r.from.port}` }
  }))
  return out
}

/** Each app server sends an out-of-dialog NOTIFY (message-summary) to phones [from, to) by AOR, through the VIP. */
async function notify(from: number, to: number): Promise<{ answered: Record<string, number>; reached: string[] }> {
  const answered: Record<string, number> = {}
  const before = new Map(phones.map(p => [p.name, notified.get(p.name) ?? 0]))
  await Promise.all(phones.slice(from, to).map(async (p, k) => {
    const app = apps[(from + k) % apps.length]!
    const ruri = `sip:${p.name}@example.com`
    const text = app.sendRequest('NOTIFY', ruri, {
      to: ruri, from: `sip:mwi@example.com`, dest: vipDest(), contact: true,
      headers: ['Event: message-summary', 'Subscription-State: active', 'Content-Type: application/simple-message-summary'],
      body: 'Messages-Waiting: yes\r\nVoice-Message: 1/0\r\n',
    })
    answered[p.name] = (await transact(app, text))?.status ?? 0
  }))
  const reached = phones.slice(from, to).filter(p => (notified.get(p.name) ?? 0) > (before.get(p.name) ?? 0)).map(p => p.name)
  return { answered, reached }
}

type Handler = (args: never) => Promise<unknown>
const handlers: Record<string, Handler> = {
  start: start as Handler,
  register: ((a: { from: number; to: number }) => register(a.from, a.to)) as Handler,
  call: ((a: { from: number; to: number }) => call(a.from, a.to)) as Handler,
  bye: ((a: { callIds: string[]; side: 'uac' | 'uas' }) => bye(a.callIds, a.side)) as Handler,
  notify: ((a: { from: number; to: number }) => notify(a.from, a.to)) as Handler,
  stop: (async () => {
    stopping = true
    for (const p of [...phones, ...apps]) p.close()
    setTimeout(() => process.exit(0), 50)
    return true
  }) as Handler,
}

process.on('message', (msg: { id: number; cmd: string; args: unknown }) => {
  const h = handlers[msg.cmd]
  if (h === undefined) { process.send!({ id: msg.id, ok: false, error: `unknown command ${msg.cmd}` }); return }
  h(msg.args as never).then(
    result => process.send!({ id: msg.id, ok: true, result }),
    (err: unknown) => process.send!({ id: msg.id, ok: false, error: (err as Error).stack ?? String(err) }),
  )
})
// the test went away (its IPC channel closed): nothing to serve any more
process.on('disconnect', () => process.exit(0))
process.send!({ id: 0, ok: true, result: 'agent-ready' })
