// Structured logs through the log thread: format, per-module levels, reopen under load, rotation.
import { existsSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MessageChannel } from 'node:worker_threads'
import t from 'tap'
import { FileSink, Tracer, createLogging, createPortLogging, redactCredentials } from '../dist/index.js'

function tmp(t: { teardown(fn: () => void): void }): string {
  const d = mkdtempSync(join(tmpdir(), 'sipedge-log-'))
  t.teardown(() => rmSync(d, { recursive: true, force: true }))
  return d
}
type Line = Record<string, unknown>
const lines = (file: string): Line[] => readFileSync(file, 'utf8').split('\n').filter(l => l !== '').map(l => JSON.parse(l) as Line)

t.test('JSON lines with level, time, module, msg; per-module levels; reconfigure', async t => {
  const file = join(tmp(t), 'a.log')
  const log = createLogging({ file, level: 'info', modules: { dispatcher: 'debug', noisy: 'error' }, base: { node: 'edge-a' } })
  log.logger('dispatcher').debug({ set: 'pbx' }, 'probe sent')
  log.logger('core').debug('dropped: core is at info')
  log.logger('core').info('started')
  log.logger('noisy').warn('dropped: noisy is at error')
  log.configure('warn', { core: 'debug' })
  log.logger('core').debug('now visible')
  log.logger('dispatcher').info('dropped: dispatcher back to the default, warn')
  log.logger('fresh').warn('a new module takes the new default')
  await log.close()
  const got = lines(file)
  t.same(got.map(l => l['msg']), ['probe sent', 'started', 'now visible', 'a new module takes the new default'])
  for (const l of got) {
    t.type(l['level'], 'string')
    t.match(l['time'] as string, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
    t.type(l['module'], 'string')
    t.equal(l['node'], 'edge-a')
    t.notOk('pid' in l)
  }
  t.same(got[0], { ...got[0], level: 'debug', module: 'dispatcher', set: 'pbx' })
  t.equal(log.logger('core'), log.logger('core'), 'module loggers are cached')
})

t.test('rename + reopen under load loses no line and keeps order', async t => {
  const dir = tmp(t)
  const file = join(dir, 'sipedge.log')
  const log = createLogging({ file, level: 'info' })
  await log.ready()
  const l = log.logger('load')
  const N = 20_000
  let renames = 0
  for (let i = 0; i < N; i++) {
    l.info({ n: i }, 'line')
    if (i % 2500 === 1234) {
      // logrotate: move the file away, then signal; the lines in between go to the moved file
      renameSync(file, `${file}.r${++renames}`)
      await log.reopen()
    }
    if (i % 1000 === 0) await new Promise(setImmediate)
  }
  await log.close()
  const files = [...Array.from({ length: renames }, (_, k) => `${file}.r${k + 1}`), file]
  const all = files.flatMap(f => lines(f)).map(x => x['n'] as number)
  t.equal(renames, 8)
  t.equal(all.length, N, 'exactly N lines')
  t.ok(all.every((n, i) => n === i), 'in order across the files')
  t.ok(files.every(f => lines(f).length > 0), 'each file got lines')
})

t.test('size rotation produces numbered files and keeps `keep`', async t => {
  const dir = tmp(t)
  const file = join(dir, 'r.log')
  const log = createLogging({ file, rotate: { size: 4096, interval: false, keep: 3 } })
  for (let i = 0; i < 2000; i++) log.logger('x').info({ n: i }, 'some text to fill the file up')
  await log.close()
  const names = readdirSync(dir).sort()
  t.same(names, ['r.log', 'r.log.1', 'r.log.2', 'r.log.3'])
  for (const n of names) {
    const text = readFileSync(join(dir, n), 'utf8')
    t.ok(text.endsWith('\n'), `${n} ends on a whole line`)
    t.ok(text.length <= 4096, `${n} is within the size limit`)
  }
  const kept = ['r.log.3', 'r.log.2', 'r.log.1', 'r.log'].flatMap(n => lines(join(dir, n))).map(l => l['n'] as number)
  t.equal(kept.at(-1), 1999, 'newest line in the live file')
  t.ok(kept.every((n, i) => i === 0 || n === kept[i - 1]! + 1), 'kept files are contiguous')
})

t.test('rotate() on demand and time rotation', async t => {
  const dir = tmp(t)
  const file = join(dir, 't.log')
  const log = createLogging({ file })
  log.logger('x').info('one')
  await log.rotate()
  log.logger('x').info('two')
  await log.close()
  t.same(lines(`${file}.1`).map(l => l['msg']), ['one'])
  t.same(lines(file).map(l => l['msg']), ['two'])

  let now = 0
  const f2 = join(dir, 'time.log')
  const sink = new FileSink(f2, { interval: 60_000, keep: 2 }, () => now)
  sink.write('a\n')
  now = 59_999
  sink.write('b\n')
  now = 60_000
  sink.write('c\npartial')
  sink.close()
  t.equal(readFileSync(`${f2}.1`, 'utf8'), 'a\nb\n')
  t.equal(readFileSync(f2, 'utf8'), 'c\npartial\n', 'a partial last line is completed, not lost')
  t.notOk(existsSync(`${f2}.2`))
})

t.test('worker loggers post batched lines to the primary', async t => {
  const file = join(tmp(t), 'w.log')
  const log = createLogging({ file })
  const { port1, port2 } = new MessageChannel()
  log.attachPort(port1)
  let posts = 0
  const orig = port2.postMessage.bind(port2)
  port2.postMessage = (m: unknown) => { posts++; orig(m) }
  const w = createPortLogging(port2, { level: 'debug', modules: { quiet: 'error' } })
  // the batch reaching the primary's side is the event to wait for (bounded), not a guessed delay
  const delivered = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timed out after 10 s waiting for the batch on the primary port')), 10_000)
    port1.once('message', () => { clearTimeout(timer); resolve() })
  })
  for (let i = 0; i < 100; i++) w.logger('worker').debug({ i }, 'from worker')
  w.logger('quiet').info('dropped')
  await delivered
  await log.close()
  port1.close()
  t.equal(posts, 1, 'one message for 100 lines')
  const got = lines(file)
  t.equal(got.length, 100)
  t.equal(got[99]!['i'], 99)
})

t.test('tracer: cheap when off, matches Call-ID or source', async t => {
  const file = join(tmp(t), 'trace.log')
  const log = createLogging({ file, modules: { trace: 'error' } })
  const tr = new Tracer(log.logger('trace'))
  t.equal(tr.active, false)
  tr.setFilters({ callIds: ['c1@x'], sources: ['192.0.2.7', '[2001:db8::1]:5060'] })
  t.equal(tr.active, true)
  t.ok(tr.matches('c1@x', '10.0.0.1', 5060))
  t.ok(tr.matches('other', '192.0.2.7', 1234))
  t.ok(tr.matches('other', '2001:db8::1', 5060))
  t.notOk(tr.matches('other', '2001:db8::1', 5061))
  t.notOk(tr.matches('other', '192.0.2.8', 5060))
  tr.trace('in', { callId: 'c1@x', address: '192.0.2.7', port: 5060, transport: 'udp' }, Buffer.from('OPTIONS sip:x SIP/2.0\r\n\r\n'))
  t.same(tr.filters(), { callIds: ['c1@x'], sources: ['192.0.2.7', '[2001:db8::1]:5060'] })
  tr.clear()
  t.equal(tr.active, false)
  await log.close()
  const got = lines(file)
  t.equal(got.length, 1, 'traced even though the trace module is at error: it was asked for')
  t.match(got[0], { module: 'trace', trace: 'in', callId: 'c1@x', sip: /^OPTIONS/ })
})

t.test('trace-logs-digest-credentials: Authorization and Proxy-Authorization are redacted in trace lines', async t => {
  const file = join(tmp(t), 'trace.log')
  const log = createLogging({ file })
  const tr = new Tracer(log.logger('trace'))
  tr.setFilters({ callIds: ['reg1@x'], sources: [] })
  const response = 'response="6629fae49393a05397450978507c4ef1"'
  const register = [
    'REGISTER sip:example.com SIP/2.0',
    'Via: SIP/2.0/UDP 127.0.200.7:5060;branch=z9hG4bK-r1',
    'From: <sip:alice@example.com>;tag=1', 'To: <sip:alice@example.com>', 'Call-ID: reg1@x', 'CSeq: 2 REGISTER',
    `Authorization: Digest username="alice", realm="example.com", nonce="dcd98b7102dd2f0e", uri="sip:example.com", ${response}, algorithm=MD5`,
    // another case, space before the colon, and a folded value (RFC 3261 §7.3.1)
    'proxy-authorization : Digest username="alice",', ` realm="example.com", ${response}`,
    'Content-Length: 0', '', '',
  ].join('\r\n')
  tr.trace('in', { callId: 'reg1@x', address: '127.0.200.7', port: 5060, transport: 'udp' }, Buffer.from(register))
  tr.trace('out', { callId: 'reg1@x', address: '127.0.0.9', port: 5060, transport: 'tcp' }, 'INVITE sip:b@x SIP/2.0\r\nAuthorization: Basic YWxpY2U6c2VjcmV0\r\nWWW-Authenticate: Digest realm="x", nonce="n1"\r\nAuthorization: Bearer eyJ.sig\r\n\r\n')
  await log.close()
  const got = lines(file).map(l => l['sip'] as string)
  t.equal(got.length, 2)
  t.notMatch(got[0], /6629fae4|dcd98b71|username="alice"/, 'neither the digest response nor its inputs are logged')
  t.match(got[0], /\r\nAuthorization: Digest <redacted>\r\n/)
  t.match(got[0], /\r\nproxy-authorization : Digest <redacted>\r\nContent-Length: 0\r\n/, 'the folded continuation line is redacted with it')
  t.match(got[0], /^REGISTER sip:example\.com SIP\/2\.0\r\nVia: .*\r\nCall-ID: reg1@x\r\n/s, 'the rest of the message is traced as it was')
  t.notMatch(got[1], /YWxpY2U6c2VjcmV0|eyJ/, 'Basic and Bearer credentials are the secret itself')
  t.match(got[1], /Authorization: Basic <redacted>\r\n/)
  t.match(got[1], /WWW-Authenticate: Digest realm="x", nonce="n1"/, 'a challenge carries no secret and stays')
  t.equal(redactCredentials('Authorization: s3cret-without-scheme\r\n'), 'Authorization: <redacted>\r\n')
  const plain = 'OPTIONS sip:x SIP/2.0\r\nX-Authorization-Hint: kept\r\n\r\n'
  t.equal(redactCredentials(plain), plain, 'only the two credential headers')
})
