// TLS listener: TLS 1.2 and 1.3, certificates chosen by SNI, reload of rewritten certificate
// files without a restart, client-certificate verification, IPv6.
import t from 'tap'
import { mkdtempSync, rmSync, copyFileSync, renameSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { Engine, createLogger, type TlsOptions } from '@sipedge/transport'
import { Client, handlerUrl, makeCert, req, until } from './fixtures/net.js'

const quiet = createLogger({ level: 'silent' })
const dir = mkdtempSync(join(tmpdir(), 'sipedge-tls-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const a = makeCert(dir, 'a', 'a.example.test')
const b = makeCert(dir, 'b', 'b.example.test')

async function start(t: typeof import('tap').default, tls: TlsOptions, address = '127.0.0.1'): Promise<{ e: Engine; port: number }> {
  const e = new Engine({ listeners: [{ transport: 'tls', address, port: 0, tls }], workers: 0, handlerUrl, logger: quiet })
  await e.start()
  t.teardown(() => e.stop())
  return { e, port: e.listeners[0]!.port }
}

function cn(c: Client & { sock: import('node:tls').TLSSocket }): string {
  return String(c.sock.getPeerCertificate().subject?.CN)
}

t.test('OPTIONS over TLS 1.3 and TLS 1.2; frames say TLS', async t => {
  const { port } = await start(t, { certificates: [a] })
  for (const v of ['TLSv1.3', 'TLSv1.2'] as const) {
    const c = await Client.tls(port, { minVersion: v, maxVersion: v })
    t.equal(c.sock.getProtocol(), v)
    c.write(req({ callId: `tls-${v}` }))
    const [r] = await c.wait(1)
    t.match(r, new RegExp(`Call-ID: tls-${v}`))
    t.match(r, /X-Transport: 3/)
    c.close()
  }
})

t.test('TLS 1.1 is refused', async t => {
  const { e, port } = await start(t, { certificates: [a] })
  await t.rejects(Client.tls(port, { minVersion: 'TLSv1', maxVersion: 'TLSv1.1' }))
  t.ok(await until(() => e.counters.tlsHandshakeErrors >= 1), 'handshake error counted')
})

t.test('SNI picks the certificate; unknown or no name gets the first', async t => {
  const { port } = await start(t, { certificates: [a, b] })
  const ca = await Client.tls(port, { servername: 'a.example.test' })
  const cb = await Client.tls(port, { servername: 'b.example.test' })
  const cx = await Client.tls(port, { servername: 'other.example.test' })
  t.teardown(() => { ca.close(); cb.close(); cx.close() })
  t.equal(cn(ca), 'a.example.test')
  t.equal(cn(cb), 'b.example.test')
  t.equal(cn(cx), 'a.example.test')
})

t.test('explicit server names and wildcards', async t => {
  const { port } = await start(t, { certificates: [a, { ...b, serverNames: ['*.wild.test'] }] })
  const c = await Client.tls(port, { servername: 'x.wild.test' })
  t.teardown(() => c.close())
  t.equal(cn(c), 'b.example.test')
})

t.test('a rewritten certificate file is picked up without a restart; a broken one is refused', async t => {
  const d = mkdtempSync(join(tmpdir(), 'sipedge-tls-reload-'))
  t.teardown(() => rmSync(d, { recursive: true, force: true }))
  copyFileSync(a.cert, join(d, 'live.crt'))
  copyFileSync(a.key, join(d, 'live.key'))
  const live = { cert: join(d, 'live.crt'), key: join(d, 'live.key') }
  const { e, port } = await start(t, { certificates: [live] })
  const before = await Client.tls(port, { servername: 'b.example.test' })
  t.equal(cn(before), 'a.example.test')
  // New cert + key written next to it and renamed into place (what certbot & co. do).
  const n = makeCert(d, 'next', 'c.example.test')
  renameSync(n.key, live.key)
  renameSync(n.cert, live.cert)
  t.ok(await until(() => e.counters.tlsReloads >= 1), 'reloaded by the file watch')
  const after = await Client.tls(port)
  t.equal(cn(after), 'c.example.test', 'new handshakes get the new certificate')
  before.write(req({ callId: 'old-conn' }))
  await before.wait(1)
  t.pass('the connection made before the reload still works')
  // A broken file: the reload fails and the old certificate stays.
  const reloadsBefore = e.counters.tlsReloads
  const errorsBefore = e.counters.tlsReloadErrors
  copyFileSync(b.cert, live.cert) // key no longer matches
  t.ok(await until(() => e.counters.tlsReloadErrors > errorsBefore), 'failed reload counted')
  t.equal(e.counters.tlsReloads, reloadsBefore)
  const still = await Client.tls(port)
  t.equal(cn(still), 'c.example.test', 'kept the working certificate')
  t.equal(e.reloadTls(), false, 'explicit reload (SIGHUP) reports the failure too')
  for (const c of [before, after, still]) c.close()
})

t.test('client certificate verification (verifyClient: require)', async t => {
  const client = makeCert(dir, 'client', 'phone.example.test')
  const { port } = await start(t, { certificates: [a], ca: client.cert, verifyClient: 'require' })
  // TLS 1.3: the server's rejection arrives after the client's handshake completes.
  let refused = false
  try {
    const c = await Client.tls(port)
    c.write(req({ callId: 'no-cert' }))
    refused = await c.waitClosed()
  } catch { refused = true }
  t.ok(refused, 'no client certificate: refused')
  const ok = await Client.tls(port, { cert: readFileSync(client.cert), key: readFileSync(client.key) })
  t.teardown(() => ok.close())
  ok.write(req({ callId: 'with-cert' }))
  const [r] = await ok.wait(1)
  t.match(r, /with-cert/)
})

t.test('IPv6 TLS listener on ::1', async t => {
  const { port } = await start(t, { certificates: [a] }, '::1')
  const c = await Client.tls(port, { host: '::1' })
  t.teardown(() => c.close())
  c.write(req({ callId: 'v6' }))
  const [r] = await c.wait(1)
  t.match(r, /X-Remote: ::1:/)
  t.ok(new X509Certificate(readFileSync(a.cert)).subject.includes('a.example.test'))
})
