// Dispatcher distribution over sipp backends on 127.0.0.2/.3/.4 (ports 20000-20099): measured
// shares per algorithm, every call completed, every BYE at the backend that took the INVITE
// (the backends' Contact names 127.0.0.9: only stickiness gets ACK and BYE there).
import t from 'tap'
import { startProxy } from '../dist/sipp.js'
import { startBackends, stopBackends, runUac, untilSeen, type Backend } from '../dist/dispatch.js'

const PROXY = '127.0.0.1:20000'
const BP = 20010
const config = `
workers: 2
listen: [udp:127.0.0.1:20000]
domains: [127.0.0.1]
dialog: { mirror: false }
dispatcher:
  sets:
    rr: { algorithm: round-robin, probe: false, destinations: ["sip:127.0.0.2:${BP}", "sip:127.0.0.3:${BP}"] }
    hash: { algorithm: hash-callid, probe: false, destinations: ["sip:127.0.0.2:${BP}", "sip:127.0.0.3:${BP}", "sip:127.0.0.4:${BP}"] }
    w:
      algorithm: weighted
      probe: false
      destinations: [{ uri: "sip:127.0.0.2:${BP}", weight: 1 }, { uri: "sip:127.0.0.3:${BP}", weight: 3 }]
routes:
  - { match: { user_prefix: rr }, action: { dispatch: rr } }
  - { match: { user_prefix: hash }, action: { dispatch: hash } }
  - { match: { user_prefix: w }, action: { dispatch: w } }
`

const { engine } = await startProxy(config)
t.teardown(() => engine.stop())
const backends: Backend[] = await startBackends(['127.0.0.2', '127.0.0.3', '127.0.0.4'], BP)
t.teardown(() => stopBackends(backends))

/** Runs `calls` calls to user `service`; returns INVITEs per backend during the run. */
async function measure(t: Tap.Test, service: string, calls: number, port: number): Promise<number[]> {
  const before = backends.map(b => b.seen())
  // Fixed Call-IDs (dist-<service>-N@127.0.0.1): sipp's default ones carry its pid, and the
  // hash-callid shares of 300 random Call-IDs leave 100±15 in about 9% of runs, load or not.
  const r = await runUac({ proxy: PROXY, port, calls, rate: 100, limit: 200, service: service + '1', timeoutS: 40, cidStr: `dist-${service}1-%u@%s` })
  t.equal(r.failed, 0, 'no failed call', { log: r.log })
  t.equal(r.successful, calls, `${calls} calls completed`)
  // every INVITE and BYE of the run in the backends' logs (bounded wait for the files)
  const newCalls = (seen: Array<{ invites: string[]; byes: string[] }>): number => seen.reduce((n, s, i) => n + s.invites.length - before[i]!.invites.length, 0)
  const allByes = (seen: Array<{ invites: string[]; byes: string[] }>): boolean => seen.every(s => { const byes = new Set(s.byes); return s.invites.every(c => byes.has(c)) })
  await untilSeen(backends, seen => newCalls(seen) >= calls && allByes(seen))
  const after = backends.map(b => b.seen())
  for (let i = 0; i < backends.length; i++) {
    const newInv = after[i]!.invites.slice(before[i]!.invites.length)
    const byes = new Set(after[i]!.byes)
    t.ok(newInv.every(c => byes.has(c)), `backend ${backends[i]!.ip}: every call's BYE arrived there`)
  }
  return after.map((a, i) => a.invites.length - before[i]!.invites.length)
}
declare namespace Tap { type Test = typeof t }

t.test('round-robin: equal shares (exact per worker: within ±workers overall)', async t => {
  const [a, b, c] = await measure(t, 'rr', 300, 20020)
  t.equal(a! + b!, 300)
  t.equal(c, 0)
  t.ok(Math.abs(a! - b!) <= 2, `shares ${a}:${b}`)
})

t.test('hash-callid: three backends within ±15% of 100 over 300 calls', async t => {
  const shares = await measure(t, 'hash', 300, 20021)
  t.equal(shares.reduce((x, y) => x + y, 0), 300)
  for (const s of shares) t.ok(s >= 85 && s <= 115, `share ${s}`)
})

t.test('weighted 1:3: proportional within tolerance', async t => {
  const [a, b, c] = await measure(t, 'w', 300, 20022)
  t.equal(c, 0)
  t.equal(a! + b!, 300)
  t.ok(Math.abs(b! - 225) <= 30, `weighted shares ${a}:${b} (expected 75:225)`)
})
