// Logs of the running product (ports 21200-21299): JSON lines written by the log thread, SIP
// tracing switched on at run time for the test's source address (every message in and out then
// writes one trace line, from the workers through their log ports), and rotation under that
// load: logrotate-style (mv + SIGHUP, several times) and the built-in size rotation. Every line
// must be present exactly once across the files, none torn.
import t from 'tap'
import { createSocket } from 'node:dgram'
import { existsSync, readFileSync, readdirSync, renameSync } from 'node:fs'
import { join } from 'node:path'
import { tempDir, sipRequest, uniqueCallId, parseResponse, until } from '@sipedge/tests'
import { startSipedge, http, sleepMs, sampleValue, type SipedgeProcess } from '../dist/ops.js'
import { parseExposition } from '../../metrics/test/fixtures/expo-parser.js'

// a loaded CI host may take a while to start a node and push the traffic through
t.setTimeout(240_000)
const tmp = tempDir()
t.teardown(tmp.cleanup)
const TOKEN = 'ops-logs-token-0123456789abcdef'

function config(sip: number, admin: number, file: string, rotate: string): string {
  return `
workers: 2
listen: [udp:127.0.0.1:${sip}]
registrar: { store: "lmdb:${tmp.dir}/store-${sip}" }
admin: { listen: 127.0.0.1:${admin}, token: ${TOKEN} }
metrics: { listen: 127.0.0.1:${admin} }
logging:
  file: ${file}
  rotate: ${rotate}
`
}

/**
 * Sends `total` OPTIONS (unique Call-IDs, no retransmission) in bursts; runs `during` meanwhile,
 * which can follow the progress (answers so far).
 */
async function load(port: number, total: number, during: (answered: () => number) => Promise<void>): Promise<{ sent: string[]; answered: Set<string> }> {
  const sock = createSocket('udp4')
  await new Promise<void>(r => sock.bind(0, '127.0.0.1', () => r()))
  try { sock.setRecvBufferSize(4 * 1024 * 1024) } catch { /* capped by the kernel */ }
  const answered = new Set<string>()
  sock.on('message', m => { const id = parseResponse(m.toString('latin1')).callId; if (id !== undefined) answered.add(id) })
  const sent: string[] = []
  const sender = (async () => {
    for (let i = 0; i < total; i += 20) {
      for (let k = i; k < Math.min(total, i + 20); k++) {
        const callId = uniqueCallId('rot')
        sent.push(callId)
        sock.send(Buffer.from(sipRequest({ callId }), 'latin1'), port, '127.0.0.1')
      }
      await sleepMs(10)
    }
  })()
  try {
    await Promise.all([sender, during(() => answered.size)])
    // answers still in flight: until all are in, or none came for a second (the rest was lost
    // on the way; bounded)
    const deadline = Date.now() + 15_000
    let seen = answered.size
    let since = Date.now()
    while (answered.size < sent.length && Date.now() < deadline && Date.now() - since < 1_000) {
      await sleepMs(50)
      if (answered.size !== seen) { seen = answered.size; since = Date.now() }
    }
  } finally {
    sock.close()
  }
  return { sent, answered }
}

interface TraceCount { in: number; out: number }

/** Reads every file; every line must be whole JSON. Counts trace lines per Call-ID. */
function readLogs(files: string[]): { traces: Map<string, TraceCount>; lines: Array<Record<string, unknown>>; torn: string[] } {
  const traces = new Map<string, TraceCount>()
  const lines: Array<Record<string, unknown>> = []
  const torn: string[] = []
  for (const f of files) {
    const text = readFileSync(f, 'utf8')
    if (text.length > 0 && !text.endsWith('\n')) torn.push(`${f}: does not end with a newline`)
    for (const l of text.split('\n')) {
      if (l === '') continue
      let o: Record<string, unknown>
      try { o = JSON.parse(l) as Record<string, unknown> } catch { torn.push(`${f}: ${l.slice(0, 120)}`); continue }
      lines.push(o)
      if (o['module'] === 'trace') {
        const id = String(o['callId'])
        const c = traces.get(id) ?? { in: 0, out: 0 }
        if (o['trace'] === 'in') c.in++
        else c.out++
        traces.set(id, c)
      }
    }
  }
  return { traces, lines, torn }
}

/**
 * The node's own counters say how many messages it handled (requests received, responses sent):
 * exactly that many trace lines must be in the files, once per Call-ID and direction. A datagram
 * lost on a loaded host changes both sides alike, so the check does not depend on it.
 */
function checkTraces(t: { ok(v: unknown, m?: string): void; equal(a: unknown, b: unknown, m?: string): void }, sent: string[], answered: Set<string>, traces: Map<string, TraceCount>, handled: { in: number; out: number }): void {
  let missingOut = 0, dup = 0, ins = 0, outs = 0
  for (const id of sent) {
    const c = traces.get(id)
    if (answered.has(id) && (c === undefined || c.in !== 1 || c.out !== 1)) missingOut++
    if (c !== undefined && (c.in > 1 || c.out > 1)) dup++
    ins += c?.in ?? 0
    outs += c?.out ?? 0
  }
  t.ok(answered.size >= sent.length * 0.9, `answered ${answered.size}/${sent.length}`)
  t.equal(ins, handled.in, `one "in" trace line per request received (${handled.in})`)
  t.equal(outs, handled.out, `one "out" trace line per response sent (${handled.out})`)
  t.equal(missingOut, 0, 'every answered request has both its lines')
  t.equal(dup, 0, 'no line written twice')
}

/** Requests received and responses sent, from the node's /metrics. */
async function handledNow(admin: number): Promise<{ in: number; out: number }> {
  const f = parseExposition((await http('GET', `http://127.0.0.1:${admin}/metrics`)).text)
  return {
    in: sampleValue(f, 'sipedge_requests_received_total', 'sipedge_requests_received_total', { method: 'OPTIONS' }),
    out: sampleValue(f, 'sipedge_responses_total', 'sipedge_responses_total', { direction: 'local' }),
  }
}

/**
 * The counts once the node has handled everything that reached it: every request sent was
 * received, or the counts stayed the same for a second (the rest was dropped on the way).
 * A loaded host may still be working through its queues when the load loop ends.
 */
async function handled(admin: number, sent: number): Promise<{ in: number; out: number }> {
  let last = await handledNow(admin)
  let since = Date.now()
  const deadline = Date.now() + 20_000
  while (Date.now() < deadline) {
    if (last.in >= sent && last.out >= last.in) return last
    await sleepMs(100)
    const now = await handledNow(admin)
    if (now.in !== last.in || now.out !== last.out) { last = now; since = Date.now() } else if (Date.now() - since >= 1_000) return last
  }
  return last
}

async function trace(admin: number): Promise<void> {
  const r = await http('PUT', `http://127.0.0.1:${admin}/api/trace`, { token: TOKEN, body: { sources: ['127.0.0.1'] } })
  if (r.status !== 200) throw new Error(`PUT /api/trace: ${r.status} ${r.text}`)
}

const t0 = Date.now()
const since = (): string => `${Date.now() - t0} ms`

t.test('logrotate style: mv + SIGHUP five times under traced load loses no line', async t => {
  const SIP = 21200, ADMIN = 21201
  const log = join(tmp.dir, 'hup.log')
  const proc: SipedgeProcess = await startSipedge(tmp.dir, 'hup.yaml', config(SIP, ADMIN, log, '{ size: false, interval: false }'), { logFile: log })
  t.teardown(() => proc.stop())
  t.equal(proc.output().includes('"msg":"ready"'), false, 'with a log file nothing goes to stdout')
  t.comment(`started ${since()}`)
  await trace(ADMIN)
  const rotated: string[] = []
  const TOTAL = 2000
  const { sent, answered } = await load(SIP, TOTAL, async progress => {
    for (let i = 1; i <= 5; i++) {
      // rotate while the traffic flows: at 1/6, 2/6, ... of the answers (bounded wait)
      for (let k = 0; k < 200 && progress() < (TOTAL * i) / 6; k++) await sleepMs(25)
      const to = `${log}.${i}`
      renameSync(log, to)
      rotated.push(to)
      proc.child.kill('SIGHUP')
      // like logrotate's postrotate: the next rotation only after sipedge reopened the file
      if (!(await until(() => existsSync(log), 20_000))) throw new Error(`sipedge did not reopen ${log} within 20 s of SIGHUP ${i}`)
    }
  })
  t.comment(`load done ${since()}: ${answered.size}/${sent.length}`)
  const counts = await handled(ADMIN, sent.length)
  const { code } = await proc.stop()
  t.comment(`stopped ${since()}`)
  t.equal(code, 0)
  const files = [...rotated, log]
  for (const f of files) t.ok(existsSync(f), `${f} exists`)
  const { traces, lines, torn } = readLogs(files)
  t.same(torn, [], 'no torn line')
  checkTraces(t, sent, answered, traces, counts)
  const msgs = lines.map(l => l['msg'])
  t.equal(msgs.filter(m => m === 'log file reopened').length, 5, 'five reopens logged')
  t.equal(msgs.filter(m => m === 'configuration reloaded').length, 5, 'SIGHUP also reloads the configuration')
  t.ok(msgs.includes('ready') && msgs.includes('stopped') && msgs.includes('exit'), 'first and last lines are there (flushed before exit)')
  const perFile = files.map(f => readFileSync(f, 'utf8').split('\n').filter(l => l.includes('"module":"trace"')).length)
  t.ok(perFile.filter(n => n > 0).length >= 3, `trace lines spread over the files: ${perFile.join(', ')}`)
})

t.test('built-in size rotation under traced load loses no line', async t => {
  const SIP = 21210, ADMIN = 21211
  const dir = join(tmp.dir, 'size')
  const { mkdirSync } = await import('node:fs')
  mkdirSync(dir)
  const log = join(dir, 'size.log')
  const proc = await startSipedge(tmp.dir, 'size.yaml', config(SIP, ADMIN, log, '{ size: 256KiB, interval: false, keep: 100 }'), { logFile: log })
  t.teardown(() => proc.stop())
  await trace(ADMIN)
  const { sent, answered } = await load(SIP, 1000, async () => {})
  const counts = await handled(ADMIN, sent.length)
  t.equal((await proc.stop()).code, 0)
  const files = readdirSync(dir).map(f => join(dir, f))
  t.ok(files.length >= 2, `rotated into ${files.length} files`)
  for (const f of files) t.ok(readFileSync(f).length <= 256 * 1024 + 70_000, `${f} about the size limit`)
  const { traces, torn } = readLogs(files)
  t.same(torn, [], 'no torn line')
  checkTraces(t, sent, answered, traces, counts)
})
