// End-to-end flows through the proxy over UDP with sipp peers (ports 17000-17099):
// sipp UAC (127.0.0.1) -> sipedge (127.0.0.1:17000, 2 workers) -> sipp UAS (127.0.0.2).
import t from 'tap'
import { startProxy, runFlow } from '../dist/sipp.js'

const PROXY = '127.0.0.1:17000'
const UAS = 17010
const UAC = 17020

const config = `
workers: 2
listen: [udp:127.0.0.1:17000, tcp:127.0.0.1:17000]
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
    action: { forward: "sip:127.0.0.1:17000" }
  - name: spiral
    match: { domain: spiral.test }
    rewrite_host: final.test
    action: { forward: "sip:127.0.0.1:17000" }
  - name: apps
    match: { method: [INVITE, INFO, REFER, NOTIFY, MESSAGE, OPTIONS] }
    action: { dispatch: apps }
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
  { name: '10% loss both directions, every call completes', uas: 'uas-call-lossy.xml', uac: 'uac-call-lossy.xml', calls: 20, rate: 10, timeoutS: 40, uasWaitMs: 20_000, uasUnchecked: true },
]

for (const f of flows) {
  t.test(`UDP: ${f.name}`, async t => {
    const run = () => runFlow({ uas: f.uas, uac: f.uac, proxy: PROXY, uasPort: UAS, uacPort: UAC, transport: 'u1', calls: f.calls, domain: f.domain, timeoutS: f.timeoutS, rate: f.rate, uasWaitMs: f.uasWaitMs })
    let r = await run()
    // sipp's simulated loss can make its own UAS abort a call, and the proxy then rightly answers
    // 408. Seen in CI: the UAS 'loses' both its 180 and its 200; our INVITE retransmission (T1 is
    // 100 ms here) arrives before its 200 retransmission, and sipp 3.7 maps a retransmission only
    // to the first send after a receive (the 180), so an INVITE after the 200 is 'unexpected' and
    // the call is aborted: about 1% of calls while the UAS retransmitted at 100 ms too, rarer now
    // that it does so at 50 ms (uas-call-lossy.xml). Only such an abort, read from the UAS's error
    // log, earns another run (at most two); the run that is judged must be complete.
    for (let rerun = 0; rerun < 2 && f.uasUnchecked === true && r.uac.code !== 0 && r.uas !== null && r.uas.aborts.length > 0; rerun++) {
      t.comment(`the sipp UAS aborted a call under its own simulated loss (${r.uas.aborts.join('; ')}); running the flow once more`)
      r = await run()
    }
    t.equal(r.uac.code, 0, 'sipp UAC exit code 0 (all calls succeeded)', { log: r.uac.log, uasLog: r.uas?.log })
    t.equal(r.uac.successful, f.calls, `${f.calls} successful calls`)
    t.equal(r.uac.failed, 0, 'no failed call')
    // Under simulated loss the sipp UAS itself may abort a call whose ACK it 'lost' before the BYE
    // arrives; what counts is that every UAC call completed end to end.
    if (r.uas !== null && f.uasUnchecked !== true) t.equal(r.uas.successful, f.calls, `UAS saw ${f.calls} complete calls`, { log: r.uas.log })
  })
}
