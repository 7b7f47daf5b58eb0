// workers: 0 — the handler on the primary thread: frames straight to onFrame, handler errors
// contained and counted, transport-error reports delivered on a later turn (never inside the
// handler's own send), control and queries, close.
import t from 'tap'
import { InProcessTarget, Counters, createLogger, FLAG_TRANSPORT_ERROR, TCP, type FrameMeta, type MessageHandler } from '@sipedge/transport'

const quiet = createLogger({ level: 'silent' })
const meta = (): FrameMeta => ({ transport: TCP, socketId: 0, connId: 3, family: 4, address: '127.0.0.1', port: 5070, recvTime: 1, flags: FLAG_TRANSPORT_ERROR })

t.test('deliver calls onFrame; a throw is counted, not propagated', async t => {
  const seen: string[] = []
  const counters = new Counters()
  const h: MessageHandler = {
    onFrame(m, p) {
      if (p.length === 0) throw new Error('boom')
      seen.push(`${m.port} ${Buffer.from(p).toString()}`)
    },
  }
  const ip = new InProcessTarget(h, counters, quiet)
  t.equal(ip.deliver(123, { ...meta(), flags: 0 }, Buffer.from('hello')), true)
  t.equal(ip.deliver(123, { ...meta(), flags: 0 }, new Uint8Array(0)), true, 'taken even when the handler throws')
  t.same(seen, ['5070 hello'])
  t.equal(counters.handlerErrors, 1)
})

t.test('transportError: a copy of the header, delivered on a later turn, once each', async t => {
  const reports: FrameMeta[] = []
  const counters = new Counters()
  const ip = new InProcessTarget({ onFrame() {}, onTransportError(m) { reports.push(m) } }, counters, quiet)
  const m = meta()
  t.equal(ip.transportError(0, m), true)
  m.port = 1 // the caller reuses its header
  t.equal(ip.transportError(0, { ...meta(), port: 5071 }), true)
  t.equal(reports.length, 0, 'not synchronously: the report may come from inside the handler\'s own send')
  await new Promise(r => setImmediate(r))
  t.same(reports.map(r => r.port), [5070, 5071])
  t.equal(reports[0]!.flags, FLAG_TRANSPORT_ERROR)
  await new Promise(r => setImmediate(r))
  t.equal(reports.length, 2, 'delivered once')
})

t.test('transportError: a handler without onTransportError ignores it; a throw is counted', async t => {
  const counters = new Counters()
  const quietIp = new InProcessTarget({ onFrame() {} }, counters, quiet)
  t.equal(quietIp.transportError(0, meta()), true)
  const throwing = new InProcessTarget({ onFrame() {}, onTransportError() { throw new Error('x') } }, counters, quiet)
  throwing.transportError(0, meta())
  await new Promise(r => setImmediate(r))
  t.equal(counters.handlerErrors, 1)
})

t.test('control, query, close', async t => {
  const controls: unknown[] = []
  let closed = 0
  const ip = new InProcessTarget({
    onFrame() {},
    onControl(m) { controls.push(m) },
    onQuery(what, args) { return { what, args } },
    close() { closed++ },
  }, new Counters(), quiet)
  ip.control({ type: 'config', config: { a: 1 } })
  t.same(controls, [{ type: 'config', config: { a: 1 } }])
  t.same(await ip.query('stats', { x: 1 }), { what: 'stats', args: { x: 1 } })
  await ip.close()
  t.equal(closed, 1)
  t.equal(ip.transportError(0, meta()), false, 'no reports after close')
  const bare = new InProcessTarget({ onFrame() {} }, new Counters(), quiet)
  await t.rejects(bare.query('stats', null), { code: 'ERR_QUERY_UNSUPPORTED' })
})

t.test('load: the handler module gets the in-process context', async t => {
  const sent: unknown[] = []
  const ip = await InProcessTarget.load(new URL('./fixtures/echo-handler.mjs', import.meta.url), {
    config: { c: 1 }, send: (m, p) => { sent.push([m.port, Buffer.from(p as Uint8Array).toString('latin1')]); return true }, log: quiet, counters: new Counters(),
  })
  ip.deliver(0, { ...meta(), flags: 0 }, Buffer.from('OPTIONS sip:x SIP/2.0\r\nCall-ID: abc\r\n\r\n'))
  t.equal(sent.length, 1)
  t.match(String((sent[0] as [number, string])[1]), /Call-ID: abc/)
})
