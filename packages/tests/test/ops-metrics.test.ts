// GET /metrics on the running product (ports 21000-21099): `sipedge` as a child process, sipp
// UAC -> sipedge -> sipp UAS (127.0.0.2), once with 2 workers and once with `workers: 0` (the
// handler on the primary thread, what the default runs on one CPU: its messages must be counted
// the same way). The exposition is scraped with a real HTTP client while sipp runs (each scrape
// must parse strictly, counters never go back), and after the run the per-method counters must
// match what sipp sent.
import t from 'tap'
import { createSocket } from 'node:dgram'
import { tempDir, until, sipRequest, parseResponse } from '@sipedge/tests'
import { startSipp, type SippResult } from '../dist/sipp.js'
import { startSipedge, http, sampleValue, sippCounts, sleepMs } from '../dist/ops.js'
import { parseExposition, type ExpoFamily } from '../../metrics/test/fixtures/expo-parser.js'

const TOKEN = 'ops-metrics-token-0123456789'
const CALLS = 20

for (const [workers, offset] of [[2, 0], [0, 50]] as const) t.test(`workers: ${workers}`, async t => {
  const SIP = 21000 + offset
  const HTTP = SIP + 1
  const UAS = SIP + 10
  const UAC = SIP + 20
  const base = `http://127.0.0.1:${HTTP}`

  const tmp = tempDir()
  t.teardown(tmp.cleanup)

  const config = `
workers: ${workers}
listen: [udp:127.0.0.1:${SIP}]
domains: [127.0.0.1]
registrar: { store: "lmdb:${tmp.dir}/store" }
dispatcher:
  sets:
    apps:
      algorithm: hash-callid
      probe: false
      destinations: [sip:127.0.0.2:${UAS}]
routes:
  - name: apps
    match: { method: [INVITE, OPTIONS] }
    action: { dispatch: apps }
metrics: { listen: 127.0.0.1:${HTTP} }
admin: { listen: 127.0.0.1:${HTTP}, token: ${TOKEN} }
`

  const proc = await startSipedge(tmp.dir, `metrics-w${workers}.yaml`, config)
  t.teardown(() => proc.stop())

  async function scrape(): Promise<Map<string, ExpoFamily>> {
    const r = await http('GET', `${base}/metrics`)
    if (r.status !== 200) throw new Error(`GET /metrics: ${r.status}`)
    if (!/^text\/plain; version=0\.0\.4/.test(r.headers.get('content-type') ?? '')) throw new Error(`content-type ${r.headers.get('content-type')}`)
    return parseExposition(r.text)
  }

  const received = (f: Map<string, ExpoFamily>, method: string): number =>
    sampleValue(f, 'sipedge_requests_received_total', 'sipedge_requests_received_total', { method, transport: 'udp' })
  const sent = (f: Map<string, ExpoFamily>, method: string): number =>
    sampleValue(f, 'sipedge_requests_sent_total', 'sipedge_requests_sent_total', { method, transport: 'udp' })
  const responses = (f: Map<string, ExpoFamily>, direction: string, code: string): number =>
    sampleValue(f, 'sipedge_responses_total', 'sipedge_responses_total', { direction, code })
  const histCount = (f: Map<string, ExpoFamily>, name: string): number => sampleValue(f, name, `${name}_count`)

  t.test('the exposition parses strictly and carries the process-level series', async t => {
    const f = await scrape()
    for (const name of ['sipedge_config_generation', 'sipedge_ready', 'sipedge_workers_alive', 'sipedge_build_info', 'sipedge_process_resident_memory_bytes'])
      t.ok(f.has(name), `${name} present`)
    t.equal(sampleValue(f, 'sipedge_config_generation', 'sipedge_config_generation'), 1)
    t.equal(sampleValue(f, 'sipedge_ready', 'sipedge_ready'), 1)
    // in-process there is no worker thread: the primary runs the handler (docs/metrics.md)
    t.equal(sampleValue(f, 'sipedge_workers_alive', 'sipedge_workers_alive'), workers)
    // Every thread samples its event-loop lag when scraped (later on a loaded host): wait for the
    // series of every thread rather than for a guessed second.
    const want = workers === 0 ? ['main'] : ['main', 'worker0', 'worker1']
    let g = f
    const lagThreads = (f: Map<string, ExpoFamily>): string[] => f.get('sipedge_event_loop_lag_p99_seconds')?.samples.map(s => s.labels['thread']!).sort() ?? []
    await until(async () => { g = await scrape(); return lagThreads(g).length >= want.length }, 15_000, 200)
    t.same(lagThreads(g), want, 'event-loop lag per thread (no series for a thread that does not exist)')
    if (workers > 0) {
      t.equal(sampleValue(g, 'sipedge_ring_capacity_bytes', 'sipedge_ring_capacity_bytes', { worker: '1', direction: 'in' }) > 0, true, 'ring series per worker')
      t.ok(sampleValue(g, 'sipedge_ring_touched_bytes', 'sipedge_ring_touched_bytes', { worker: '1', direction: 'out' }) >= 0, 'ring touched series per worker')
    }
    else t.notOk(g.get('sipedge_ring_capacity_bytes')?.samples.length, 'no ring series without workers')
  })

  t.test(`${CALLS} sipp calls: counters match what sipp sent, scraped during the run`, async t => {
    const before = await scrape()
    // -trace_counts: per-message counts (sent, retransmitted) of each side, to compare with
    const uas = startSipp({ scenario: 'uas-call.xml', localIp: '127.0.0.2', localPort: UAS, transport: 'u1', calls: CALLS, timeoutS: 35, extra: ['-trace_counts'] })
    let uacRes: SippResult | undefined
    let uasRes: SippResult | undefined
    let uasN: (m: string, k: string) => number = () => 0
    let uacN: (m: string, k: string) => number = () => 0
    const scrapes: Array<Map<string, ExpoFamily>> = []
    try {
      await uas.ready() // the first INVITE must find it listening
      const uac = startSipp({
        scenario: 'uac-call.xml', remote: `127.0.0.1:${SIP}`, localIp: '127.0.0.1', localPort: UAC, transport: 'u1',
        calls: CALLS, rate: 10, timeoutS: 30, service: 'alice', domain: '127.0.0.1', extra: ['-trace_counts'],
      })
      // scrape while the calls run: every answer must parse, counters must not go backwards
      let running = true
      void uac.done.then(() => { running = false })
      for (let i = 0; i < 200 && running; i++) {
        scrapes.push(await scrape())
        await sleepMs(100)
      }
      uacRes = await uac.done
      uacN = sippCounts(uac.dir)
      await uac.stop()
      uac.cleanup()
      // the UAS ends by itself after its last call's final pause (seconds on a loaded host)
      let timer: NodeJS.Timeout | undefined
      uasRes = (await Promise.race([uas.done, new Promise<undefined>(r => { timer = setTimeout(() => r(undefined), 15_000) })])) ?? await uas.stop()
      clearTimeout(timer)
      uasN = sippCounts(uas.dir)
    } finally {
      await uas.stop()
      uas.cleanup()
    }
    t.equal(uacRes!.successful, CALLS, 'every call completed', { log: uacRes!.log })
    t.equal(uasRes!.successful, CALLS, 'the UAS saw every call', { log: uasRes!.log })
    t.ok(scrapes.length >= 2, `scraped ${scrapes.length} times during the run`)
    for (let i = 1; i < scrapes.length; i++) {
      if (received(scrapes[i]!, 'INVITE') < received(scrapes[i - 1]!, 'INVITE')) t.fail(`INVITE counter went backwards at scrape ${i}`)
    }

    // The counters are read live; the workers' gauges (dispatcher state) are published once a
    // second, later on a loaded host: wait for them rather than for a guessed second.
    let after = await scrape()
    const gaugesIn = (f: Map<string, ExpoFamily>): boolean => f.has('sipedge_registrations_aors') &&
      sampleValue(f, 'sipedge_dispatcher_destination_state', 'sipedge_dispatcher_destination_state', { set: 'apps', destination: `sip:127.0.0.2:${UAS}`, state: 'active' }) === 1
    await until(async () => { if (gaugesIn(after)) return true; after = await scrape(); return gaugesIn(after) }, 15_000, 200)
    const d = (fn: (f: Map<string, ExpoFamily>) => number): number => fn(after) - fn(before)
    if (workers > 0) {
      // the calls went through the rings, which the consumers kept up with: written only at their front
      for (const w of ['0', '1']) for (const direction of ['in', 'out']) {
        const cap = sampleValue(after, 'sipedge_ring_capacity_bytes', 'sipedge_ring_capacity_bytes', { worker: w, direction })
        const touched = sampleValue(after, 'sipedge_ring_touched_bytes', 'sipedge_ring_touched_bytes', { worker: w, direction })
        t.ok(touched > 0 && touched <= cap / 8 + 4096, `worker ${w} ${direction}: ring touched ${touched} of ${cap} bytes`)
      }
    }
    // What sipp put on the wire, retransmissions included (a stateful proxy absorbs the client's
    // retransmissions and retransmits on its own towards the UAS, so each hop is compared with the
    // sipp side of that hop).
    const uac = (m: string): number => uacN(m, 'Sent') + uacN(m, 'Retrans')
    const uasGot = (m: string): number => uasN(m, 'Recv') + uasN(m, 'Retrans')
    const uasSent = (m: string): number => uasN(m, 'Sent') + uasN(m, 'Retrans')
    t.equal(uacN('INVITE', 'Sent'), CALLS, 'sipp counts were read')
    t.comment(`sipp retransmissions: uac INVITE ${uacN('INVITE', 'Retrans')} BYE ${uacN('BYE', 'Retrans')}; uas 180 ${uasN('180', 'Retrans')} 200 ${uasN('200', 'Retrans')}`)
    // UAC -> sipedge
    t.equal(d(f => received(f, 'INVITE')), uac('INVITE'), 'INVITE received = INVITEs the UAC sent')
    t.equal(d(f => received(f, 'BYE')), uac('BYE'), 'BYE received = BYEs the UAC sent')
    // an ACK is resent by sipp for each retransmitted 200 without counting it as a step retransmission
    const acks = d(f => received(f, 'ACK'))
    t.ok(acks >= uac('ACK') && acks <= uac('ACK') + uasN('200', 'Retrans'), `ACK received ${acks} = ACKs the UAC sent (${uac('ACK')}, + re-ACKs of retransmitted 200s)`)
    // sipedge -> UAS
    t.equal(d(f => sent(f, 'INVITE')), uasGot('INVITE'), 'INVITE sent = INVITEs the UAS got')
    t.equal(d(f => sent(f, 'BYE')), uasGot('BYE'), 'BYE sent = BYEs the UAS got')
    const acksOut = d(f => sent(f, 'ACK'))
    t.ok(acksOut >= uasGot('ACK') && acksOut <= acks, `ACK sent ${acksOut} (UAS got ${uasGot('ACK')})`)
    // UAS -> sipedge -> UAC
    t.equal(d(f => responses(f, 'received', '180')), uasSent('180'), '180 received = 180s the UAS sent')
    t.equal(d(f => responses(f, 'received', '200')), uasSent('200'), '200 received = 200s the UAS sent (INVITE and BYE)')
    t.equal(d(f => responses(f, 'forwarded', '180')), uacN('180', 'Recv') + uacN('180', 'Retrans') + uacN('180', 'Unexp'), '180 forwarded = 180s the UAC got')
    const fwd200 = d(f => responses(f, 'forwarded', '200'))
    t.ok(fwd200 >= 2 * uacRes!.successful && fwd200 <= uasSent('200'), `200 forwarded ${fwd200}`)
    t.ok(d(f => responses(f, 'local', '100')) >= CALLS, '100 Trying generated for every INVITE')
    // transaction durations: INVITE -> first provisional and -> final once per INVITE transaction,
    // non-INVITE (BYE) -> final once per BYE transaction
    t.equal(d(f => histCount(f, 'sipedge_transaction_invite_provisional_seconds')), uacN('INVITE', 'Sent'), 'INVITE -> first provisional observed per call')
    t.equal(d(f => histCount(f, 'sipedge_transaction_invite_final_seconds')), uacN('INVITE', 'Sent'), 'INVITE -> final observed per call')
    t.equal(d(f => histCount(f, 'sipedge_transaction_non_invite_seconds')), uacN('BYE', 'Sent'), 'non-INVITE (BYE) -> final observed per call')
    t.equal(d(f => sampleValue(f, 'sipedge_transport_messages_total', 'sipedge_transport_messages_total', { direction: 'in' })) >= 5 * CALLS, true, 'transport datagrams in')
    t.ok(d(f => sampleValue(f, 'sipedge_thread_messages_total', 'sipedge_thread_messages_total')) >= 6 * CALLS, 'frames handled by the threads that run the handler')
    t.equal(sampleValue(after, 'sipedge_dispatcher_destination_state', 'sipedge_dispatcher_destination_state', { set: 'apps', destination: `sip:127.0.0.2:${UAS}`, state: 'active' }), 1, 'dispatcher destination state from the workers')
    t.equal(sampleValue(after, 'sipedge_registrations_aors', 'sipedge_registrations_aors'), 0, 'registrations from the store opened in the primary')
    const errs = after.get('sipedge_scrape_errors_total')?.samples.filter(x => x.value > 0).map(x => `${x.labels['source']}: ${x.value}`) ?? []
    if (errs.length > 0) t.comment(`scrape sources that failed or were slow at some point: ${errs.join(', ')}`)
    t.ok(after.has('sipedge_registrations_aors') && (after.get('sipedge_dispatcher_destination_state')?.samples.length ?? 0) > 0, 'store and dispatcher sources answered the last scrape')
  })

  t.test('SIP tracing switched on at run time: the message in and the answer out are traced', async t => {
    const callId = `traced-${workers}-${process.pid}@ops-metrics`
    const r = await http('PUT', `${base}/api/trace`, { token: TOKEN, body: { callIds: [callId] } })
    t.equal(r.status, 200, r.text)
    const sock = createSocket('udp4')
    t.teardown(() => sock.close())
    await new Promise<void>(res => sock.bind(0, '127.0.0.1', () => res()))
    const port = (sock.address() as { port: number }).port
    const answered = new Promise<string>(res => sock.once('message', m => res(m.toString('latin1'))))
    sock.send(sipRequest({ method: 'OPTIONS', uri: `sip:127.0.0.1:${SIP}`, port, callId }), SIP, '127.0.0.1')
    t.match(parseResponse(await answered).status, 200, 'OPTIONS to the node answered')
    const lines = (): Array<Record<string, unknown>> => proc.output().split('\n').filter(l => l.includes('"module":"trace"') && l.includes(callId)).map(l => JSON.parse(l) as Record<string, unknown>)
    t.ok(await until(() => lines().length >= 2, 10_000, 50), 'two trace lines')
    t.same(lines().map(l => l['trace']).sort(), ['in', 'out'], 'one in, one out')
  })

  t.test('retransmissions both ways are counted: a client that repeats its request, a next hop that never answers', async t => {
    const retx = (f: Map<string, ExpoFamily>, direction: string, message: string): number =>
      sampleValue(f, 'sipedge_retransmissions_total', 'sipedge_retransmissions_total', { direction, message })
    const before = await scrape()
    t.equal(before.get('sipedge_retransmissions_total')?.type, 'counter', 'sipedge_retransmissions_total is a counter')
    const sock = createSocket('udp4')
    t.teardown(() => sock.close())
    await new Promise<void>(res => sock.bind(0, '127.0.0.1', () => res()))
    const port = (sock.address() as { port: number }).port
    // routed to the dispatcher set, whose UAS (sipp) has gone: nobody answers the forwarded OPTIONS,
    // so sipedge's client transaction retransmits it (Timer E, 500 ms); the client repeats its own
    // request with the same branch, which sipedge's server transaction absorbs
    const req = sipRequest({ method: 'OPTIONS', uri: `sip:retx@127.0.0.1:${SIP}`, port, callId: `retx-${workers}-${process.pid}@ops-metrics` })
    sock.send(req, SIP, '127.0.0.1')
    await sleepMs(600)
    sock.send(req, SIP, '127.0.0.1')
    let after = before
    const counted = (f: Map<string, ExpoFamily>): boolean => retx(f, 'received', 'request') - retx(before, 'received', 'request') >= 1 && retx(f, 'sent', 'request') - retx(before, 'sent', 'request') >= 1
    t.ok(await until(async () => { after = await scrape(); return counted(after) }, 15_000, 200), 'both counted')
    t.ok(retx(after, 'received', 'request') - retx(before, 'received', 'request') >= 1, 'the client\'s retransmission, absorbed: received request')
    t.ok(retx(after, 'sent', 'request') - retx(before, 'sent', 'request') >= 1, 'Timer E towards the silent next hop: sent request')
    t.equal(retx(after, 'sent', 'response') - retx(before, 'sent', 'response'), 0, 'no response was repeated (none was sent yet)')
    t.ok(after.has('sipedge_transaction_timeouts_total') && after.has('sipedge_responses_withheld_total'), 'timeouts and withheld responses are exposed')
  })

  t.test('SIGTERM: drains, exits 0, last lines written', async t => {
    const { code } = await proc.stop()
    t.equal(code, 0, proc.output().slice(-2000))
    t.match(proc.output(), /"msg":"stopped"/)
    t.match(proc.output(), /"msg":"exit"/)
  })
})
