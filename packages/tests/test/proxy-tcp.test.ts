// End-to-end flows through the proxy over TCP with sipp peers (ports 17100-17199):
// sipp UAC -t t1 -> sipedge tcp:127.0.0.1:17100 -> sipp UAS -t t1 on 127.0.0.2 (the proxy opens
// the connection: connId 0 + FLAG_OPEN_CONNECTION, reused for ACK/BYE); plus TCP in / UDP out
// (double Record-Route, RFC 5658).
import t from 'tap'
import { startProxy, runFlow } from '../dist/sipp.js'

const PROXY = '127.0.0.1:17100'
const UAS_TCP = 17110
const UAS_UDP = 17111
const UAC = 17120

const config = `
workers: 2
listen: [udp:127.0.0.1:17100, tcp:127.0.0.1:17100]
domains: [127.0.0.1]
timers: { t1: 100ms, t2: 1s, t4: 1s }
dispatcher:
  sets:
    apps_tcp:
      probe: false
      destinations: ["sip:127.0.0.2:${UAS_TCP};transport=tcp"]
    apps_udp:
      probe: false
      destinations: ["sip:127.0.0.2:${UAS_UDP}"]
routes:
  - name: loop
    match: { domain: loop.test }
    action: { forward: "sip:127.0.0.1:17100;transport=tcp" }
  - name: to-udp
    match: { user_prefix: udp }
    action: { dispatch: apps_udp }
  - name: apps
    match: { method: [INVITE, INFO, REFER, NOTIFY, MESSAGE, OPTIONS] }
    action: { dispatch: apps_tcp }
`

const { engine } = await startProxy(config)
t.teardown(() => engine.stop())

const flows: Array<{ name: string; uas: string | null; uac: string; calls: number; domain?: string; service?: string; uasPort?: number; uasTransport?: 'u1' | 't1' }> = [
  { name: 'INVITE/100/180/200/ACK/BYE', uas: 'uas-call.xml', uac: 'uac-call.xml', calls: 20 },
  { name: 'INVITE rejected 486, ACK hop by hop', uas: 'uas-486.xml', uac: 'uac-expect-486.xml', calls: 10 },
  { name: 'CANCEL of a ringing call (200, 487, ACK)', uas: 'uas-cancel.xml', uac: 'uac-cancel.xml', calls: 10 },
  { name: 're-INVITE and INFO in dialog', uas: 'uas-reinvite-info.xml', uac: 'uac-reinvite-info.xml', calls: 10 },
  { name: 'REFER with NOTIFY from the far end', uas: 'uas-refer.xml', uac: 'uac-refer.xml', calls: 10 },
  { name: 'Max-Forwards 0 -> 483', uas: null, uac: 'uac-expect-483.xml', calls: 5 },
  { name: 'loop -> 482', uas: null, uac: 'uac-expect-482.xml', calls: 5, domain: 'loop.test' },
  { name: 'TCP in, UDP out (double Record-Route)', uas: 'uas-call.xml', uac: 'uac-call.xml', calls: 10, service: 'udpuser', uasPort: UAS_UDP, uasTransport: 'u1' },
  { name: 'TCP in, UDP out: re-INVITE and INFO', uas: 'uas-reinvite-info.xml', uac: 'uac-reinvite-info.xml', calls: 5, service: 'udpuser', uasPort: UAS_UDP, uasTransport: 'u1' },
]

for (const f of flows) {
  t.test(`TCP: ${f.name}`, async t => {
    const r = await runFlow({
      uas: f.uas, uac: f.uac, proxy: PROXY, uasPort: f.uasPort ?? UAS_TCP, uacPort: UAC, transport: 't1', uasTransport: f.uasTransport ?? 't1',
      calls: f.calls, domain: f.domain, service: f.service,
    })
    t.equal(r.uac.code, 0, 'sipp UAC exit code 0 (all calls succeeded)', { log: r.uac.log })
    t.equal(r.uac.successful, f.calls, `${f.calls} successful calls`)
    t.equal(r.uac.failed, 0, 'no failed call')
    if (r.uas !== null) t.equal(r.uas.successful, f.calls, `UAS saw ${f.calls} complete calls`, { log: r.uas.log })
  })
}
