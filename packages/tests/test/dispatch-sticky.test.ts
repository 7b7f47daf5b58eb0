// Stickiness without the dialog table (ports 20400-20499): calls up, the workers' dialog tables
// are dropped (test hook `dialog-admin clear`, SIPEDGE_TEST_HOOKS=1), and every ACK/BYE still
// reaches the backend that took the call through the signed Record-Route parameter (the
// backends' Contact names 127.0.0.9, where nothing listens). The dialog mirror runs on LMDB in a
// temporary directory. A forged Record-Route parameter is rejected with 403.
import t from 'tap'
import { createSocket } from 'node:dgram'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startProxy } from '../dist/sipp.js'
import { waitUntil } from '@sipedge/tests'
import { startBackends, stopBackends, startUac, untilSeen, type Backend } from '../dist/dispatch.js'

process.env['SIPEDGE_TEST_HOOKS'] = '1'
const dir = mkdtempSync(join(tmpdir(), 'sipedge-dlg-'))
const PROXY = '127.0.0.1:20400'
const BP = 20410
const config = `
workers: 2
listen: [udp:127.0.0.1:20400]
domains: [127.0.0.1]
dialog: { store: "lmdb:${dir}/dialogs", secret: "sticky-test-secret-0123" }
dispatcher:
  sets:
    apps: { algorithm: hash-callid, probe: false, destinations: ["sip:127.0.0.2:${BP}", "sip:127.0.0.3:${BP}"] }
routes:
  - { match: { method: INVITE }, action: { dispatch: apps } }
`

const { engine } = await startProxy(config)
t.teardown(async () => { await engine.stop(); rmSync(dir, { recursive: true, force: true }) })
const backends: Backend[] = await startBackends(['127.0.0.2', '127.0.0.3'], BP)
t.teardown(() => stopBackends(backends))

t.test('dialog table lost while calls are up: ACK/BYE still reach the right backend', async t => {
  const uac = startUac({ proxy: PROXY, port: 20420, calls: 30, rate: 30, limit: 100, holdMs: 2500, timeoutS: 30 })
  t.teardown(async () => { await uac.stop(); uac.cleanup() })
  // Drop the tables while calls are up: once the backends have seen INVITEs and no BYE yet
  // (calls are held 2.5 s), however slowly sipp got going.
  await waitUntil(() => backends.reduce((n, b) => n + b.seen().invites.length, 0) >= 10, '10 calls up at the backends')
  const byesBefore = backends.reduce((n, b) => n + b.seen().byes.length, 0)
  engine.control({ type: 'dialog-admin', action: 'clear' })
  await engine.query('all', 'dialogs') // answered after the clear (same port, in order)
  const r = await uac.done
  t.equal(r.failed, 0, 'no failed call', { log: r.log })
  t.equal(r.successful, 30)
  t.equal(byesBefore, 0, 'the tables were dropped before any call ended')
  // every INVITE and BYE in the backends' logs (bounded wait for the files)
  await untilSeen(backends, seen => seen.reduce((n, s) => n + s.invites.length, 0) >= 30 &&
    seen.reduce((n, s) => n + s.byes.length, 0) >= 30)
  let total = 0
  for (const b of backends) {
    const s = b.seen()
    total += s.invites.length
    const byes = new Set(s.byes)
    t.ok(s.invites.every(c => byes.has(c)), `${b.ip}: every BYE at the backend of its INVITE (${s.invites.length} calls)`)
    t.equal(s.byes.length, s.invites.length, `${b.ip}: no foreign BYE`)
  }
  t.equal(total, 30)
})

function udpRequest(text: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4')
    const timer = setTimeout(() => { s.close(); reject(new Error('no response')) }, 3000)
    s.on('message', m => {
      const txt = m.toString()
      if (txt.startsWith('SIP/2.0 100')) return
      clearTimeout(timer); s.close(); resolve(txt)
    })
    s.bind(port, '127.0.0.1', () => s.send(text, 20400, '127.0.0.1'))
  })
}

t.test('forged Record-Route parameter: 403', async t => {
  const dest = Buffer.from(`apps sip:127.0.0.3:${BP}`).toString('base64url')
  const forged = `${dest}.AAAAAAAAAAAAAAAA`
  const msg = [
    `INFO sip:app@127.0.0.9:${BP} SIP/2.0`,
    'Via: SIP/2.0/UDP 127.0.0.1:20430;branch=z9hG4bK-forged1;rport',
    'Max-Forwards: 70',
    `Route: <sip:127.0.0.1:20400;lr;sed=${forged}>`,
    'From: <sip:mallory@127.0.0.1>;tag=m1',
    'To: <sip:bob@127.0.0.1>;tag=b1',
    'Call-ID: forged-1@test',
    'CSeq: 2 INFO',
    'Content-Length: 0', '', ''].join('\r\n')
  const resp = await udpRequest(msg, 20430)
  t.match(resp, /^SIP\/2\.0 403 Invalid Dialog Route/)
})
