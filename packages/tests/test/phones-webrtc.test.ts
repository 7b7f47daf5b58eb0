// WebRTC in a real browser through sipedge (issue #16): a SIP.js page in headless Chromium
// registers over WSS, calls a phone registered over UDP (sipp) and is called by one; the SDP
// (ICE, DTLS) passes through, signaling completes (200, ACK, BYE). The WS side gets a doubled
// Record-Route, every request to the browser goes over its one WebSocket, and WS pings keep an
// idle connection open.
// Ports 24400-24499: sipedge 24400 (udp), 24401 (wss), 24402 (metrics + admin); the page on
// 24403; sipp 24410-24419.
import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { tempDir, WsClient } from '@sipedge/tests'
import { startSipedge, http, sampleValue } from '../dist/ops.js'
import { startSipp, scenario, type Sipp } from '../dist/sipp.js'
import { makeCa, makeServerCert } from '../dist/pki.js'
import { chromiumMissing, servePage, CHROMIUM } from '../dist/webrtc.js'
import { parseExposition } from '../../metrics/test/fixtures/expo-parser.js'

const missing = chromiumMissing()
if (missing !== null) t.skip(`WebRTC browser tests: ${missing}`)
// one parent test: the steps share the browser and await between them
else t.test('SIP.js in headless Chromium through sipedge (WSS) and a UDP phone', async t => { await main(t) })

async function main(t: Tap.Test): Promise<void> {
  const { chromium } = await import('playwright-core')
  const SIP = 24400
  const WSS = 24401
  const HTTP = 24402
  const PAGE = 24403
  // the admin API always needs its bearer token (docs/security.md "Admin API")
  const TOKEN = 'phones-webrtc-admin-token-01234'
  const tmp = tempDir('sipedge-webrtc-')
  t.teardown(tmp.cleanup)
  const ca = makeCa(tmp.dir)
  const cert = makeServerCert(tmp.dir, 'edge', ca, ['127.0.0.1'])
  writeFileSync(join(tmp.dir, 'users.yaml'), 'users:\n  webrtc: webrtc-pw\n')
  const edge = await startSipedge(tmp.dir, 'edge.yaml', `
workers: 2
listen:
  - udp:127.0.0.1:${SIP}
  - wss:127.0.0.1:${WSS}
tls:
  certificates: [{ cert: ${cert.cert}, key: ${cert.key} }]
# WebSocket connections idle this long are pinged at about half of it and closed when not even
# the pong comes back (uWebSockets.js; rounded up to 8 s at least)
limits: { idle_timeout: 8s }
domains: [example.com, open.test, sha.test]
store: "lmdb:${tmp.dir}/store"
metrics: { listen: 127.0.0.1:${HTTP} }
admin: { token: ${TOKEN} }
auth:
  domains:
    # SIP.js 0.21 answers MD5 only (docs/clients.md)
    example.com: { users_file: ${join(tmp.dir, 'users.yaml')}, algorithms: [MD5] }
    # the defaults: SHA-256 and MD5 (issue #16 defect 3)
    sha.test: { users_file: ${join(tmp.dir, 'users.yaml')} }
routes:
  - { match: { method: REGISTER }, action: register }
  - { match: { domain: [example.com, open.test, sha.test] }, action: lookup }
`)
  t.teardown(() => edge.stop())
  const page$ = await servePage(PAGE)
  t.teardown(() => page$.close())

  const metrics = async (): Promise<(family: string, labels?: Record<string, string>) => number> => {
    const f = parseExposition((await http('GET', `http://127.0.0.1:${HTTP}/metrics`)).text)
    return (family, labels = {}) => sampleValue(f, family, family, labels)
  }
  const registered = async (aor: string): Promise<boolean> => {
    const r = await http('GET', `http://127.0.0.1:${HTTP}/api/registrations?aor=${encodeURIComponent(aor)}`, { token: TOKEN })
    const items = (r.json as { items?: Array<{ bindings: unknown[] }> } | undefined)?.items ?? []
    return items.length > 0 && items[0]!.bindings.length > 0
  }
  const until = async (check: () => Promise<boolean>, ms: number, what: string): Promise<void> => {
    const deadline = Date.now() + ms
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms: ${what}`)
      await new Promise(r => setTimeout(r, 100))
    }
  }

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // fake microphone, no permission prompt; the edge's test certificate is trusted by ignoring
    // certificate errors in this test browser only
    args: ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream', '--ignore-certificate-errors'],
  })
  t.teardown(() => browser.close())
  const context = await browser.newContext({ ignoreHTTPSErrors: true })
  const page = await context.newPage()
  const consoleLines: string[] = []
  page.on('console', m => consoleLines.push(m.text()))
  await page.goto(`http://127.0.0.1:${PAGE}/`)
  await page.waitForFunction(() => (window as unknown as { phoneReady?: boolean }).phoneReady === true, undefined, { timeout: 15_000 })
  type Log = Array<{ ev: string; state?: string; dir?: string; status?: number; recordRoute?: string[] }>
  const log = (): Promise<Log> => page.evaluate(() => (window as unknown as { phone: { log: Log } }).phone.log)
  const sessionState = (): Promise<string | null> => page.evaluate(() => (window as unknown as { phone: { sessionState: string | null } }).phone.sessionState)
  const waitSession = (state: string, ms = 15_000): Promise<unknown> =>
    page.waitForFunction(s => (window as unknown as { phone: { sessionState: string | null } }).phone.sessionState === s, state, { timeout: ms })
  const sockets = (): Promise<{ n: number; open: number[] }> => page.evaluate(() => {
    const s = (window as unknown as { sockets: WebSocket[] }).sockets
    return { n: s.length, open: s.map(x => x.readyState) }
  })

  // the UDP phone: registers sippy@open.test, answers calls (-oocsf) for 60 s at most
  let phone: Sipp | null = startSipp({
    scenario: scenario('registrar/reg.xml'), remote: `127.0.0.1:${SIP}`, localIp: '127.0.0.1', localPort: 24410,
    service: 'sippy', domain: 'open.test', calls: 1, timeoutS: 70,
    extra: ['-key', 'expires', '120', '-d', '60000', '-oocsf', scenario('webrtc/phone-answer.xml')],
  })
  t.teardown(async () => { if (phone !== null) { await phone.stop(); phone.cleanup() } })

  await t.test('the browser registers over WSS (digest MD5)', async t => {
    await page.evaluate(o => (window as unknown as { phone: { start(o: unknown): Promise<void> } }).phone.start(o),
      { server: `wss://127.0.0.1:${WSS}`, aor: 'sip:webrtc@example.com', user: 'webrtc', password: 'webrtc-pw' })
    await page.waitForFunction(() => (window as unknown as { phone: { registered: boolean } }).phone.registered, undefined, { timeout: 10_000 })
    t.ok(true, 'SIP.js says Registered')
    await until(() => registered('sip:sippy@open.test'), 10_000, 'the UDP phone registered')
    t.ok(await registered('sip:webrtc@example.com'), 'the registrar has the browser\'s binding')
  })

  const before = await metrics()
  const accepted0 = before('sipedge_connection_events_total', { event: 'accepted' })
  const opened0 = before('sipedge_connection_events_total', { event: 'opened' })

  await t.test('browser -> UDP phone: 200, ACK, BYE; the 200 carries a doubled Record-Route (WSS and UDP side)', async t => {
    await page.evaluate(() => (window as unknown as { phone: { call(u: string): Promise<void> } }).phone.call('sip:sippy@open.test'))
    await waitSession('Established')
    t.ok(true, 'SIP.js session Established (200 with the phone\'s answer accepted, ACK sent)')
    const acc = (await log()).find(e => e.ev === 'accepted')
    t.equal(acc?.status, 200)
    const rr = acc?.recordRoute ?? []
    t.equal(rr.length, 2, `two Record-Route entries of sipedge: ${JSON.stringify(rr)}`)
    t.ok(rr.some(r => /transport=wss?/i.test(r) && r.includes(`:${WSS}`)), 'one names the WSS listener')
    t.ok(rr.some(r => r.includes(`:${SIP}`) && !/transport=wss?/i.test(r)), 'one names the UDP listener')
    await page.evaluate(() => (window as unknown as { phone: { hangup(): Promise<void> } }).phone.hangup())
    await waitSession('Terminated')
    t.ok(true, 'BYE sent and the session terminated')
  })

  await t.test('UDP phone -> browser: the browser answers; the phone ACKs and hangs up', async t => {
    const uac = startSipp({
      scenario: scenario('webrtc/uac-call.xml'), remote: `127.0.0.1:${SIP}`, localIp: '127.0.0.1', localPort: 24411,
      service: 'webrtc', domain: 'example.com', calls: 1, timeoutS: 10,
    })
    let r
    try { r = await uac.done } finally { await uac.stop(); uac.cleanup() }
    const l = await log()
    const inv = l.find(e => e.ev === 'invite')
    const rr = inv?.recordRoute ?? []
    t.equal(rr.length, 2, `the INVITE the browser got has two Record-Route entries: ${JSON.stringify(rr)}`)
    t.ok(rr.some(x => /transport=wss?/i.test(x)), 'one of them names the WSS listener')
    t.ok(l.some(e => e.ev === 'session' && e.dir === 'in' && e.state === 'Established'), 'the browser answered: its session was Established (200 with its SDP answer sent)')
    await t.test('in-dialog ACK and BYE from the UDP phone reach the browser over its WebSocket', async t => {
      t.ok(l.some(e => e.ev === 'ack' && e.dir === 'in'), 'the browser got the ACK')
      t.ok(l.some(e => e.ev === 'bye' && e.dir === 'in'), 'the browser got the BYE')
      t.equal(r.code, 0, 'sipp: 200, ACK, BYE -> 200', { log: r.log })
    })
    // whatever happened, end the browser's call before the next step
    if ((await sessionState()) === 'Established') await page.evaluate(() => (window as unknown as { phone: { hangup(): Promise<void> } }).phone.hangup())
  })

  await t.test('every request to the browser went over its one WebSocket', async t => {
    const m = await metrics()
    t.equal(m('sipedge_connection_events_total', { event: 'accepted' }) - accepted0, 0, 'no new connection accepted during both calls')
    t.equal(m('sipedge_connection_events_total', { event: 'opened' }) - opened0, 0, 'none opened by sipedge')
    t.equal(m('sipedge_connections', { transport: 'wss' }), 1, 'one WSS connection')
    const s = await sockets()
    t.same(s, { n: 1, open: [1] }, 'the page opened one WebSocket and it is open')
  })

  await t.test('WS pings keep an idle WebSocket open; a peer that does not answer them is closed', async t => {
    const pong = await WsClient.connect(WSS, true)
    const silent = await WsClient.connect(WSS, true)
    silent.answerPings = false
    t.teardown(() => { pong.close(); silent.close() })
    const closed0 = (await metrics())('sipedge_connection_events_total', { event: 'closed' })
    // bounded wait on an event: the silent peer is closed by the idle timeout (8 s, pings unanswered)
    const deadline = Date.now() + 30_000
    while (!silent.closed && Date.now() < deadline) await new Promise(r => setTimeout(r, 200))
    t.ok(silent.closed, 'the peer that never answered a ping was closed')
    t.ok(silent.pings >= 1, `it was pinged (${silent.pings})`)
    t.ok(pong.pings >= 1 && !pong.closed, `the peer that answers pings is still open (${pong.pings} pings)`)
    const s = await sockets()
    t.same(s, { n: 1, open: [1] }, 'the browser\'s WebSocket, idle since the last call, is still open')
    const m = await metrics()
    t.equal(m('sipedge_connections', { transport: 'wss' }), 2, 'sipedge still holds the browser\'s and the answering peer\'s connection')
    t.ok(m('sipedge_connection_events_total', { event: 'closed' }) - closed0 >= 1, 'the silent one counted as closed')
  })

  await t.test('defect-3-sipjs-default-digest-algorithms: SIP.js registers on a domain with the default algorithms [SHA-256, MD5]', async t => {
    const p2 = await context.newPage()
    await p2.goto(`http://127.0.0.1:${PAGE}/`)
    await p2.waitForFunction(() => (window as unknown as { phoneReady?: boolean }).phoneReady === true, undefined, { timeout: 15_000 })
    await p2.evaluate(o => (window as unknown as { phone: { start(o: unknown): Promise<void> } }).phone.start(o).catch(() => {}),
      { server: `wss://127.0.0.1:${WSS}`, aor: 'sip:webrtc@sha.test', user: 'webrtc', password: 'webrtc-pw' })
    const ok = await p2.waitForFunction(() => (window as unknown as { phone: { registered: boolean } }).phone.registered, undefined, { timeout: 5_000 })
      .then(() => true, () => false)
    await t.test('SIP.js answers the challenge sipedge gives it', async t => {
      t.ok(ok, 'Registered (SIP.js reads only the first challenge and aborts when it is not MD5)')
    })
    await p2.close()
  })

  await page.evaluate(() => (window as unknown as { phone: { stop(): Promise<void> } }).phone.stop())
  if (phone !== null) { await phone.stop(); phone.cleanup(); phone = null }
  if (consoleLines.some(l => /error/i.test(l))) t.comment(`browser console:\n${consoleLines.join('\n').slice(-3000)}`)
}
