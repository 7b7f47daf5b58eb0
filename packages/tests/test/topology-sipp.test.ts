// The proxy-core flows with sipp peers (proxy-udp.test.ts) and `topology_hiding: true` added at
// the top level, the configuration otherwise unchanged (ports 23700-23749): sipp builds its
// in-dialog requests from the Record-Route and Contact the edge shows it (edge URIs), so every
// call completing end to end is the proof that the hiding breaks none of them.
import t from 'tap'
import { startProxy, runFlow } from '../dist/sipp.js'

const PROXY = '127.0.0.1:23700'
const UAS = 23710
const UAC = 23720

const config = `
workers: 2
listen: [udp:127.0.0.1:23700, tcp:127.0.0.1:23700]
domains: [127.0.0.1]
timers: { t1: 100ms, t2: 1s, t4: 1s }
dispatcher:
  sets:
    apps:
      algorithm: hash-callid
      probe: false
      destinations: [sip:127.0.0.2:${UAS}]
routes:
  - name: loop
    match: { domain: loop.test }
    action: { forward: "sip:127.0.0.1:23700" }
  - name: spiral
    match: { domain: spiral.test }
    rewrite_host: final.test
    action: { forward: "sip:127.0.0.1:23700" }
  - name: apps
    match: { method: [INVITE, INFO, REFER, NOTIFY, MESSAGE, OPTIONS] }
    action: { dispatch: apps }
topology_hiding: true
`

const { engine } = await startProxy(config)
t.teardown(() => engine.stop())

const flows: Array<{ name: string; uas: string | null; uac: string; calls: number; domain?: string; timeoutS?: number; rate?: number; uasWaitMs?: number; uasUnchecked?: boolean }> = [
  { name: 'INVITE/100/180/200/ACK/BYE', uas: 'uas-call.xml', uac: 'uac-call.xml', calls: 20 },
  { name: 'INVITE rejected 486, ACK hop by hop', uas: 'uas-486.xml', uac: 'uac-expect-486.xml', calls: 10 },
  { name: 'CANCEL of a ringing call (200, 487, ACK)', uas: 'uas-cancel.xml', uac: 'uac-cancel.xml', calls: 10 },
  { name: 're-INVITE and INFO in dialog', uas: 'uas-reinvite-info.xml', uac: 'uac-reinvite-info.xml', calls: 10 },
  { name: 'REFER with NOTIFY from the far end', uas: 'uas-refer.xml', uac: 'uac-refer.xml', calls: 10 },
  { name: 'Max-Forwards 0 -> 483', uas: null, uac: 'uac-expect-483.xml', calls: 5 },
  { name: 'loop (forwarded back unchanged) -> 482', uas: null, uac: 'uac-expect-482.xml', calls: 5, domain: 'loop.test' },
  { name: 'spiral (back with a new Request-URI) is forwarded', uas: 'uas-call.xml', uac: 'uac-call.xml', calls: 5, domain: 'spiral.test' },
  { name: '10% loss both directions, every call completes', uas: 'uas-call-lossy.xml', uac: 'uac-call-lossy.xml', calls: 20, rate: 10, timeoutS: 40, uasWaitMs: 12000, uasUnchecked: true },
]

for (const f of flows) {
  t.test(`UDP, topology hiding: ${f.name}`, async t => {
    const run = () => runFlow({ uas: f.uas, uac: f.uac, proxy: PROXY, uasPort: UAS, uacPort: UAC, transport: 'u1', calls: f.calls, domain: f.domain, timeoutS: f.timeoutS, rate: f.rate, uasWaitMs: f.uasWaitMs })
    let r = await run()
    // As in proxy-udp.test.ts: only a sipp UAS that aborted a call under its own simulated loss earns another run (at most two).
    for (let rerun = 0; rerun < 2 && f.uasUnchecked === true && r.uac.code !== 0 && r.uas !== null && r.uas.aborts.length > 0; rerun++) {
      t.comment(`the sipp UAS aborted a call under its own simulated loss (${r.uas.aborts.join('; ')}); running the flow once more`)
      r = await run()
    }
    t.equal(r.uac.code, 0, 'sipp UAC exit code 0 (all calls succeeded)', { log: r.uac.log })
    t.equal(r.uac.successful, f.calls, `${f.calls} successful calls`)
    t.equal(r.uac.failed, 0, 'no failed call')
    if (r.uas !== null && f.uasUnchecked !== true) t.equal(r.uas.successful, f.calls, `UAS saw ${f.calls} complete calls`, { log: r.uas.log })
  })
}

t.test('the edge counted what it hid and restored, and refused nothing', async t => {
  const stats = (await engine.query('all', 'stats')) as Array<{ topology: { hiddenRequests: number; restored: number; forged: number } }>
  const sum = (k: 'hiddenRequests' | 'restored' | 'forged'): number => stats.reduce((n, s) => n + s.topology[k], 0)
  t.ok(sum('hiddenRequests') > 0)
  t.ok(sum('restored') > 0)
  t.equal(sum('forged'), 0)
})
