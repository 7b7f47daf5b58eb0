// A scriptable SIP endpoint for the cross-package tests: a UA or an application server on a
// 127.0.0.x UDP socket or TCP listener, that keeps every message it sends and receives (so a test
// can look for what it must never see), answers and sends requests when told, and keeps dialog
// state (route set, remote target, CSeq) the RFC 3261 §12 way. Every wait is bounded.
import { createSocket, type Socket as UdpSocket } from 'node:dgram'
import { createServer, connect, type Server, type Socket } from 'node:net'
import { randomBytes } from 'node:crypto'
import { TestFramer } from './index.js'

export type PeerTransport = 'udp' | 'tcp'

const COMPACT: Record<string, string> = { i: 'call-id', v: 'via', f: 'from', t: 'to', m: 'contact', l: 'content-length', r: 'refer-to', o: 'event', k: 'supported' }

/** One message as a peer received it. */
export class PeerMsg {
  readonly text: string
  /** Start line and headers (what topology hiding is about; the body is out of scope). */
  readonly head: string
  readonly start: string
  readonly method: string | null
  readonly status: number
  readonly from: { address: string; port: number }
  readonly conn: Socket | null
  private readonly lines: Array<[string, string]>
  constructor(text: string, from: { address: string; port: number }, conn: Socket | null) {
    this.text = text
    const end = text.indexOf('\r\n\r\n')
    this.head = end < 0 ? text : text.slice(0, end)
    const ls = this.head.split('\r\n')
    this.start = ls[0] ?? ''
    const m = /^SIP\/2\.0 (\d{3})/.exec(this.start)
    this.status = m ? Number(m[1]) : 0
    this.method = m ? null : this.start.split(' ')[0] ?? null
    this.lines = []
    for (const l of ls.slice(1)) {
      const i = l.indexOf(':')
      if (i <= 0) continue
      const n = l.slice(0, i).trim().toLowerCase()
      this.lines.push([COMPACT[n] ?? n, l.slice(i + 1).trim()])
    }
    this.from = from
    this.conn = conn
  }
  /** Every value of a header (list headers split at commas outside <> and quotes). */
  all(name: string): string[] {
    const n = name.toLowerCase()
    const out: string[] = []
    for (const [k, v] of this.lines) if (k === n) out.push(...splitList(v))
    return out
  }
  get(name: string): string {
    return this.all(name)[0] ?? ''
  }
  get cseq(): { seq: number; method: string } {
    const [s, m] = this.get('cseq').split(/\s+/)
    return { seq: Number(s), method: m ?? '' }
  }
  get branch(): string {
    return /;branch=([^;,\s]+)/.exec(this.get('via'))?.[1] ?? ''
  }
  get uri(): string {
    return this.start.split(' ')[1] ?? ''
  }
}

function splitList(v: string): string[] {
  const out: string[] = []
  let depth = 0
  let q = false
  let s = 0
  for (let i = 0; i < v.length; i++) {
    const c = v[i]
    if (c === '"') q = !q
    else if (!q && c === '<') depth++
    else if (!q && c === '>') depth--
    else if (!q && depth === 0 && c === ',') { out.push(v.slice(s, i).trim()); s = i + 1 }
  }
  out.push(v.slice(s).trim())
  return out.filter(x => x !== '')
}

/** The URI inside a name-addr (`<sip:...>;p` or a bare URI). */
export function uriOf(v: string): string {
  const m = /<([^>]*)>/.exec(v)
  return m ? m[1]! : v.split(';')[0]!.trim()
}

/** host, port and transport a request to `uri` goes to (no DNS: test URIs carry IP addresses). */
export function hopOfUri(uri: string): { host: string; port: number; transport: PeerTransport } {
  const m = /^sips?:(?:[^@]*@)?(\[[^\]]+\]|[^:;>?]+)(?::(\d+))?/.exec(uri)
  if (!m) throw new Error('bad URI ' + uri)
  const tp = /;transport=(\w+)/i.exec(uri)?.[1]?.toLowerCase()
  return { host: m[1]!, port: m[2] ? Number(m[2]) : 5060, transport: tp === 'tcp' ? 'tcp' : 'udp' }
}

function tag(): string {
  return randomBytes(4).toString('hex')
}

export interface PeerOptions {
  name: string
  address: string
  port: number
  transport: PeerTransport
  /** Host written into Via and Contact (a UA behind NAT writes a 127.0.200.x address). Default: address. */
  advertise?: string
  /** Host name in the Contact user@host (default: advertise); e.g. "app1.internal". */
  contactHost?: string
}

export interface RequestOpts {
  callId?: string
  from?: string
  fromTag?: string
  to?: string
  toTag?: string
  cseq?: number
  route?: readonly string[]
  contact?: boolean
  headers?: readonly string[]
  body?: string
  /** Send to this host:port (default: the first Route, else the Request-URI). */
  dest?: { host: string; port: number; transport?: PeerTransport }
  branch?: string
}

export class SipPeer {
  readonly name: string
  readonly address: string
  readonly port: number
  readonly transport: PeerTransport
  readonly advertise: string
  readonly contactHost: string
  /** Every message received, in order (duplicates included). */
  readonly received: PeerMsg[] = []
  /** Every message sent, as text. */
  readonly sent: string[] = []
  /** Branches and Call-IDs this peer made up (what the other side must never see). */
  readonly branches: string[] = []
  readonly callIds: string[] = []
  private queue: PeerMsg[] = []
  private waiters: Array<() => void> = []
  private udp: UdpSocket | null = null
  private server: Server | null = null
  private readonly conns = new Map<string, Socket>()
  private readonly accepted = new Set<Socket>()

  constructor(o: PeerOptions) {
    this.name = o.name
    this.address = o.address
    this.port = o.port
    this.transport = o.transport
    this.advertise = o.advertise ?? o.address
    this.contactHost = o.contactHost ?? this.advertise
  }

  get contact(): string {
    return `sip:${this.name}@${this.contactHost}:${this.port}${this.transport === 'tcp' ? ';transport=tcp' : ''}`
  }

  async start(): Promise<this> {
    if (this.transport === 'udp') {
      const s = createSocket('udp4')
      s.on('message', (b, r) => this.onMessage(b.toString('latin1'), { address: r.address, port: r.port }, null))
      await new Promise<void>((res, rej) => { s.once('error', rej); s.bind(this.port, this.address, () => res()) })
      this.udp = s
    } else {
      const srv = createServer(sock => this.adopt(sock))
      await new Promise<void>((res, rej) => { srv.once('error', rej); srv.listen(this.port, this.address, () => res()) })
      this.server = srv
    }
    return this
  }

  private adopt(sock: Socket): void {
    this.accepted.add(sock)
    const f = new TestFramer()
    const from = { address: sock.remoteAddress ?? '', port: sock.remotePort ?? 0 }
    sock.on('data', c => { for (const m of f.push(c)) this.onMessage(m, from, sock) })
    sock.on('error', () => { /* closed */ })
    sock.on('close', () => this.accepted.delete(sock))
  }

  private onMessage(text: string, from: { address: string; port: number }, conn: Socket | null): void {
    const m = new PeerMsg(text, from, conn)
    this.received.push(m)
    this.queue.push(m)
    const w = this.waiters
    this.waiters = []
    for (const f of w) f()
  }

  /** The first queued message (not yet taken) that matches, taken from the queue; bounded wait. */
  async next(pred: (m: PeerMsg) => boolean, what: string, ms = 4000): Promise<PeerMsg> {
    const deadline = Date.now() + ms
    for (;;) {
      const i = this.queue.findIndex(pred)
      if (i >= 0) return this.queue.splice(i, 1)[0]!
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`${this.name}: no ${what} within ${ms} ms; queued: ${this.queue.map(q => q.start).join(' | ')}`)
      await new Promise<void>(r => { const t = setTimeout(r, Math.min(left, 250)); this.waiters.push(() => { clearTimeout(t); r() }) })
    }
  }

  request(method: string, cseqMethod?: string): (m: PeerMsg) => boolean {
    return m => m.method === method && (cseqMethod === undefined || m.cseq.method === cseqMethod)
  }

  response(status: number | ((s: number) => boolean), method: string): (m: PeerMsg) => boolean {
    return m => m.status !== 0 && (typeof status === 'number' ? m.status === status : status(m.status)) && m.cseq.method === method
  }

  /** Whether no queued message matches (e.g. nothing more arrived). */
  none(pred: (m: PeerMsg) => boolean): boolean {
    return !this.queue.some(pred)
  }

  send(text: string, host: string, port: number, transport: PeerTransport = this.transport, conn: Socket | null = null): void {
    this.sent.push(text)
    const b = Buffer.from(text, 'latin1')
    if (transport === 'udp') { this.udp!.send(b, port, host); return }
    if (conn !== null && !conn.destroyed) { conn.write(b); return }
    const key = host + ':' + port
    let s = this.conns.get(key)
    if (s === undefined || s.destroyed) {
      s = connect({ host, port, localAddress: this.address })
      this.adopt(s)
      this.conns.set(key, s)
    }
    s.write(b)
  }

  /** Builds and sends a request; returns its text. */
  sendRequest(method: string, ruri: string, o: RequestOpts = {}): string {
    const branch = o.branch ?? 'z9hG4bK-' + this.name + '-' + randomBytes(5).toString('hex')
    this.branches.push(branch)
    const callId = o.callId ?? `${this.name}-${randomBytes(6).toString('hex')}@${this.contactHost}`
    if (!this.callIds.includes(callId)) this.callIds.push(callId)
    const body = o.body ?? ''
    const lines = [
      `${method} ${ruri} SIP/2.0`,
      `Via: SIP/2.0/${this.transport.toUpperCase()} ${this.advertise}:${this.port};branch=${branch};rport`,
      'Max-Forwards: 70',
      ...(o.route !== undefined && o.route.length > 0 ? [`Route: ${o.route.join(', ')}`] : []),
      `From: <${o.from ?? `sip:${this.name}@example.com`}>;tag=${o.fromTag ?? tag()}`,
      `To: <${o.to ?? ruri}>${o.toTag !== undefined ? ';tag=' + o.toTag : ''}`,
      `Call-ID: ${callId}`,
      `CSeq: ${o.cseq ?? 1} ${method}`,
      ...(o.contact === false ? [] : [`Contact: <${this.contact}>`]),
      ...(o.headers ?? []),
      `Content-Length: ${Buffer.byteLength(body)}`,
    ]
    const text = lines.join('\r\n') + '\r\n\r\n' + body
    const dest = o.dest ?? (o.route !== undefined && o.route.length > 0 ? hopOfUri(uriOf(o.route[0]!)) : hopOfUri(ruri))
    this.send(text, dest.host, dest.port, dest.transport ?? this.transport)
    return text
  }

  /** Answers `req` (UAS): its Vias, From, To (+ tag), Call-ID, CSeq, Record-Route when asked, our Contact when asked. */
  respond(req: PeerMsg, status: number, reason: string, o: { toTag?: string; contact?: boolean; rr?: boolean; headers?: readonly string[] } = {}): string {
    const to = req.get('to')
    const lines = [
      `SIP/2.0 ${status} ${reason}`,
      ...req.all('via').map(v => 'Via: ' + v),
      ...(o.rr === true ? req.all('record-route').map(v => 'Record-Route: ' + v) : []),
      'From: ' + req.get('from'),
      'To: ' + (o.toTag !== undefined && !/;tag=/.test(to) ? `${to};tag=${o.toTag}` : to),
      'Call-ID: ' + req.get('call-id'),
      'CSeq: ' + req.get('cseq'),
      ...(o.contact === true ? [`Contact: <${this.contact}>`] : []),
      ...(o.headers ?? []),
      'Content-Length: 0',
    ]
    const text = lines.join('\r\n') + '\r\n\r\n'
    // RFC 3261 §18.2.2 / RFC 3581: back to where the request came from.
    this.send(text, req.from.address, req.from.port, this.transport, req.conn)
    return text
  }

  /** Requests sent (ACK excepted) that got no final response. */
  unanswered(): string[] {
    const finals = new Set(this.received.filter(m => m.status >= 200).map(m => m.branch + ' ' + m.cseq.method))
    const out: string[] = []
    for (const t of this.sent) {
      if (t.startsWith('SIP/2.0') || t.startsWith('ACK ')) continue
      const branch = /;branch=([^;,\s]+)/.exec(t)?.[1] ?? ''
      const method = t.split(' ')[0]!
      if (!finals.has(branch + ' ' + method)) out.push(t.split('\r\n')[0]! + ' (' + branch + ')')
    }
    return out
  }

  close(): void {
    try { this.udp?.close() } catch { /* closed */ }
    this.server?.close()
    for (const s of this.conns.values()) s.destroy()
    for (const s of this.accepted) s.destroy()
  }
}

/** A dialog as one peer holds it (RFC 3261 §12): route set, remote target, local CSeq. */
export class PeerDialog {
  readonly peer: SipPeer
  readonly callId: string
  readonly localTag: string
  remoteTag: string
  readonly localUri: string
  readonly remoteUri: string
  remoteTarget: string
  routeSet: string[]
  cseq: number

  constructor(peer: SipPeer, callId: string, localUri: string, localTag: string, remoteUri: string, remoteTag: string, remoteTarget: string, routeSet: string[], cseq: number) {
    this.peer = peer
    this.callId = callId
    this.localUri = localUri
    this.localTag = localTag
    this.remoteUri = remoteUri
    this.remoteTag = remoteTag
    this.remoteTarget = remoteTarget
    this.routeSet = routeSet
    this.cseq = cseq
  }

  /** The caller's dialog from a 1xx/2xx (§12.1.2: route set = Record-Route reversed). */
  static asUac(peer: SipPeer, req: string, resp: PeerMsg): PeerDialog {
    const m = new PeerMsg(req, { address: '', port: 0 }, null)
    return new PeerDialog(peer, resp.get('call-id'), uriOf(m.get('from')), /;tag=([^;>\s]+)/.exec(m.get('from'))![1]!, uriOf(m.get('to')),
      /;tag=([^;>\s]+)/.exec(resp.get('to'))?.[1] ?? '', uriOf(resp.get('contact')), resp.all('record-route').reverse(), m.cseq.seq)
  }

  /** The callee's dialog from the request (§12.1.1: route set = Record-Route in order). */
  static asUas(peer: SipPeer, req: PeerMsg, localTag: string): PeerDialog {
    return new PeerDialog(peer, req.get('call-id'), uriOf(req.get('to')), localTag, uriOf(req.get('from')),
      /;tag=([^;>\s]+)/.exec(req.get('from'))![1]!, uriOf(req.get('contact')), req.all('record-route'), 0)
  }

  /** Sends an in-dialog request; ACK and CANCEL reuse the given CSeq. */
  send(method: string, o: { cseq?: number; contact?: boolean; headers?: readonly string[]; branch?: string } = {}): string {
    const cseq = o.cseq ?? ++this.cseq
    return this.peer.sendRequest(method, this.remoteTarget, {
      callId: this.callId, from: this.localUri, fromTag: this.localTag, to: this.remoteUri, toTag: this.remoteTag, cseq,
      route: this.routeSet, contact: o.contact ?? (method !== 'BYE' && method !== 'ACK' && method !== 'PRACK' && method !== 'INFO'),
      headers: o.headers ?? [], ...(o.branch !== undefined ? { branch: o.branch } : {}),
    })
  }

  /** A target refresh from the far side (re-INVITE, UPDATE, NOTIFY): its Contact is the new remote target. */
  refresh(m: PeerMsg): void {
    const c = m.get('contact')
    if (c !== '') this.remoteTarget = uriOf(c)
  }
}
