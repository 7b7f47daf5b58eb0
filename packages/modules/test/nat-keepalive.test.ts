// NAT keep-alives over real UDP sockets (127.0.0.1, ports 19600-19629), real clock: ten phones
// register from behind "NAT" (Via and Contact 127.0.200.x:5062, an unused loopback address; they
// send from their real sockets), the proxy pings each one every 5 s at its own phase. Nine answer
// the OPTIONS, one does not: after `failures_remove` unanswered pings its binding is removed and
// counted; the nine stay. The pings of one interval are spread over it, not sent in a burst.
import t from 'tap'
import { join } from 'node:path'
import { createSocket, type Socket } from 'node:dgram'
import { parseConfig, type FrozenConfig } from '@sipedge/config'
import { openStores } from '@sipedge/store'
import type { NatModule } from '../dist/index.js'
import { proxyWith } from './fixtures/proxy.js'

const PROXY_PORT = 19600
const N = 10
const INTERVAL_MS = 5000
const log = { debug() {}, info() {}, warn() {}, error() {} }

class Phone {
  readonly sock: Socket
  readonly pings: number[] = []
  readonly uris: string[] = []
  registered = false
  constructor(readonly index: number, readonly port: number, readonly answers: boolean) {
    this.sock = createSocket('udp4')
    this.sock.on('message', m => {
      const s = m.toString('latin1')
      if (s.startsWith('SIP/2.0 200')) { this.registered = true; return }
      if (!s.startsWith('OPTIONS ')) return
      this.pings.push(performance.now())
      this.uris.push(s.slice(8, s.indexOf(' ', 8)))
      if (!this.answers) return
      const keep = s.split('\r\n').filter(l => /^(via|from|to|call-id|cseq):/i.test(l)).map(l => (/^to:/i.test(l) ? l + ';tag=ph' : l))
      this.sock.send(Buffer.from(['SIP/2.0 200 OK', ...keep, 'Content-Length: 0', '', ''].join('\r\n'), 'latin1'), PROXY_PORT, '127.0.0.1')
    })
  }
  get natHost(): string { return `127.0.200.${50 + this.index}:5062` }
  bind(): Promise<void> { return new Promise(r => this.sock.bind(this.port, '127.0.0.1', () => r())) }
  register(): void {
    const aor = `sip:ka${this.index}@example.com`
    this.sock.send(Buffer.from([
      'REGISTER sip:example.com SIP/2.0', `Via: SIP/2.0/UDP ${this.natHost};branch=z9hG4bKreg${this.index}x${Date.now()}`,
      'Max-Forwards: 70', `From: <${aor}>;tag=r${this.index}`, `To: <${aor}>`, `Call-ID: ka-reg-${this.index}`, 'CSeq: 1 REGISTER',
      `Contact: <sip:ka${this.index}@${this.natHost}>`, 'Expires: 300', 'Content-Length: 0', '', ''].join('\r\n'), 'latin1'), PROXY_PORT, '127.0.0.1')
  }
  close(): void { try { this.sock.close() } catch { /* closed */ } }
}

async function until(what: string, ms: number, cond: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(r => setTimeout(r, 50))
  }
}

t.test('keep-alives: spread over the interval, a silent binding removed after failures_remove, answering ones kept', async t => {
  const dir = t.testdir({})
  const config = parseConfig(`
workers: 1
listen: [udp:127.0.0.1:${PROXY_PORT}]
domains: [example.com]
timers: { t1: 100ms, t2: 1s, t4: 1s }
registrar: { store: "lmdb:${join(dir, 'loc')}", min_expires: 1s }
nat: { keepalive: { enabled: true, interval: 5s, method: auto, failures_remove: 2 } }
routes:
  - { match: { method: REGISTER }, action: register }
  - { match: { domain: example.com }, action: lookup }
`) as FrozenConfig
  const stores = await openStores(config.registrar.store, { sweepIntervalMs: 0 })
  const sock = createSocket('udp4')
  await new Promise<void>(r => sock.bind(PROXY_PORT, '127.0.0.1', () => r()))
  const proxy = await proxyWith({
    config, workerIndex: 0, workers: 1, log,
    now: () => performance.timeOrigin + performance.now(),
    send: (dest, data) => sock.send(Array.isArray(data) ? Buffer.concat(data) : data, dest.port, dest.address),
  }, stores)
  sock.on('message', (m, ri) => proxy.receive(m, { transport: 'udp', address: ri.address, port: ri.port, socketId: 0, connId: 0, recvTime: performance.timeOrigin + performance.now() }))
  const phones = Array.from({ length: N }, (_, i) => new Phone(i, PROXY_PORT + 10 + i, i !== N - 1))
  for (const p of phones) await p.bind()
  t.teardown(async () => { for (const p of phones) p.close(); await proxy.close(100); sock.close(); await stores.close() })

  const t0 = performance.now()
  for (const p of phones) p.register()
  await until('every phone registered', 5000, () => phones.every(p => p.registered))
  const nat = proxy.module<NatModule>('nat')!
  t.equal(nat.keepalive.size, N, 'one keep-alive entry per NATed binding')

  // One full interval: every phone got exactly its first ping, at its own phase.
  await until('a first ping at every phone', INTERVAL_MS + 2000, () => phones.every(p => p.pings.length >= 1))
  const first = phones.map(p => p.pings[0]! - t0).sort((a, b) => a - b)
  t.ok(first[N - 1]! - first[0]! >= 0.6 * INTERVAL_MS, `the first pings span most of the interval (${Math.round(first[0]!)}..${Math.round(first[N - 1]!)} ms)`)
  let most = 0
  for (let i = 0; i < N; i++) most = Math.max(most, first.filter(x => x >= first[i]! && x < first[i]! + 1000).length)
  t.ok(most <= 4, `no burst: at most ${most} of ${N} pings in any 1-second window (mean ${N * 1000 / INTERVAL_MS})`)
  t.same(phones[0]!.uris[0], 'sip:ka0@127.0.200.50:5062', 'OPTIONS to the Contact, sent to the source')

  // The silent phone: removed after 2 unanswered pings; the others answered and stay.
  const silent = phones[N - 1]!
  await until('the silent binding removed', 3 * INTERVAL_MS + 3000, async () => (await stores.location.get(`sip:ka${N - 1}@example.com`)).length === 0)
  t.ok(silent.pings.length >= 2, `the silent phone got ${silent.pings.length} pings before removal`)
  for (const p of phones.slice(0, N - 1)) {
    t.equal((await stores.location.get(`sip:ka${p.index}@example.com`)).length, 1, `phone ${p.index} answered and keeps its binding`)
  }
  t.ok(phones.slice(0, N - 1).every(p => p.pings.length >= 2), 'the answering phones were pinged again')
  // Each phone's pings are one interval apart (its phase is fixed).
  const gaps = phones[0]!.pings.slice(1).map((x, i) => x - phones[0]!.pings[i]!)
  t.ok(gaps.every(g => Math.abs(g - INTERVAL_MS) < 600), `one phone's pings are an interval apart (${gaps.map(Math.round).join(', ')} ms)`)
  const c = nat.counters
  t.equal(c.bindingsRemoved, 1, 'one binding removed and counted')
  t.ok(c.pingsFailed[0]! >= 2, 'failed pings counted (udp)')
  t.ok(c.pingsAnswered[0]! >= 2 * (N - 1), 'answered pings counted')
  t.ok(c.pingsSent[0]! >= c.pingsAnswered[0]! + c.pingsFailed[0]!, 'sent >= answered + failed')
  t.equal(nat.keepalive.size, N - 1, 'the removed binding is no longer pinged')
})

t.test('a worker that starts takes over the keep-alives of this node\'s NATed bindings from the store', async t => {
  const dir = t.testdir({})
  const config = parseConfig(`
workers: 1
listen: [udp:127.0.0.1:${PROXY_PORT}]
domains: [example.com]
registrar: { store: "lmdb:${join(dir, 'loc')}", min_expires: 1s }
nat: { keepalive: { enabled: true, interval: 5s } }
routes:
  - { match: { method: REGISTER }, action: register }
  - { match: { domain: example.com }, action: lookup }
`) as FrozenConfig
  const stores = await openStores(config.registrar.store, { sweepIntervalMs: 0 })
  t.teardown(() => stores.close())
  const now = Date.now()
  const b = (contact: string, extra: Record<string, unknown>) => ({
    aor: '', contact, q: 1, expires: now + 60_000, callId: `cid-${contact}`, cseq: 1, path: [], updatedAt: now,
    received: { transport: 'udp', address: '127.0.0.1', port: 19629, socketId: 0, connId: 0 }, ...extra,
  })
  await stores.location.put('sip:r1@example.com', b('sip:r1@127.0.200.80:5062', { nat: true, nodeId: config.node.id }))
  await stores.location.put('sip:r2@example.com', b('sip:r2@127.0.0.1:19629', { nat: false, nodeId: config.node.id }))
  await stores.location.put('sip:r3@example.com', b('sip:r3@127.0.200.81:5062', { nat: true, nodeId: 'the-other-node' }))
  const sent: string[] = []
  const proxy = await proxyWith({
    config, workerIndex: 0, workers: 1, log, manualTimers: true,
    now: () => performance.timeOrigin + performance.now(),
    send: (_dest, data) => { sent.push((Array.isArray(data) ? Buffer.concat(data) : data).toString('latin1')) },
  }, stores)
  t.teardown(() => proxy.close(100))
  const nat = proxy.module<NatModule>('nat')!
  t.equal(await nat.rebuilt, 1, 'one binding adopted: NATed and written by this node')
  nat.keepalive.tick(performance.timeOrigin + performance.now() + INTERVAL_MS)
  t.same(sent.map(s => s.split('\r\n')[0]), ['OPTIONS sip:r1@127.0.200.80:5062 SIP/2.0'], 'and pinged')
})
