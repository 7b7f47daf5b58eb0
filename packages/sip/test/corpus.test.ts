// Parser corpus: every file in test/corpus/{valid,invalid} must have an expectation.
import t from 'tap'
import fs from 'node:fs'
import { parseMessage, SipParseError, StreamFramer, KEEPALIVE_PING, KEEPALIVE_PONG } from '@sipedge/sip'
import { judge, routingReads } from './fixtures/reads.js'

const dir = new URL('./corpus/', import.meta.url)
const load = (sub: string) => JSON.parse(fs.readFileSync(new URL(sub + '/expected.json', dir), 'utf8')) as Record<string, Record<string, unknown>>

t.test('valid corpus', async t => {
  const exp = load('valid')
  const files = fs.readdirSync(new URL('valid/', dir)).filter(f => f.endsWith('.sip'))
  t.same(files.sort(), Object.keys(exp).sort(), 'every file has an expectation')
  for (const f of files) {
    const e = exp[f]!
    const m = parseMessage(fs.readFileSync(new URL('valid/' + f, dir)))
    m.validate()
    routingReads(m)
    if (e.method !== undefined) t.equal(m.method, e.method, f + ' method')
    if (e.status !== undefined) t.equal(m.status, e.status, f + ' status')
    if (e.reason !== undefined) t.equal(m.reason, e.reason, f + ' reason')
    t.equal(m.callId, e.callId, f + ' Call-ID')
    if (e.cseq !== undefined) t.same([m.cseq.seq, m.cseq.method], e.cseq, f + ' CSeq')
    if (e.branch !== undefined) t.equal(m.topVia.branch, e.branch, f + ' branch')
    if (e.transport !== undefined) t.equal(m.topVia.transport, e.transport, f + ' transport')
    if (e.vias !== undefined) t.equal(m.vias.length, e.vias, f + ' via count')
    if (e.fromTag !== undefined) t.equal(m.from.tag, e.fromTag, f + ' From tag')
    if (e.toTag !== undefined) t.equal(m.to.tag, e.toTag, f + ' To tag')
    if (e.fromDisplay !== undefined) t.equal(m.from.displayName, e.fromDisplay, f + ' From display')
    if (e.toDisplay !== undefined) t.equal(m.to.displayName, e.toDisplay, f + ' To display')
    if (e.maxForwards !== undefined) t.equal(m.maxForwards, e.maxForwards, f + ' Max-Forwards')
    if (e.contentLength !== undefined) t.equal(m.contentLength, e.contentLength, f + ' Content-Length')
    if (e.contacts !== undefined) t.same(m.contacts.map(c => c.uri), e.contacts, f + ' contacts')
    if (e.routes !== undefined) t.equal(m.routes.length, e.routes, f + ' routes')
    if (e.recordRoutes !== undefined) t.equal(m.recordRoutes.length, e.recordRoutes, f + ' record-routes')
    if (e.ruriUser !== undefined) t.equal(m.requestUri.user, e.ruriUser, f + ' R-URI user')
    if (e.values !== undefined) for (const [h, v] of Object.entries(e.values as Record<string, string[]>)) t.same(m.headerValues(h), v, f + ' ' + h)
  }
})

t.test('invalid corpus', async t => {
  const exp = load('invalid')
  const files = fs.readdirSync(new URL('invalid/', dir)).filter(f => f.endsWith('.sip'))
  t.same(files.sort(), Object.keys(exp).sort(), 'every file has an expectation')
  for (const f of files) {
    const e = exp[f]!
    // stage "read": validate() accepts (it is lazy), the header is rejected where routing reads it
    const got = judge(fs.readFileSync(new URL('invalid/' + f, dir)), routingReads)
    t.equal(got?.stage, e.stage, f + ' fails at ' + String(e.stage))
    const err: unknown = got?.err
    t.ok(err instanceof SipParseError, f + ' rejected with SipParseError')
    const pe = err as SipParseError
    t.equal(pe.code, e.code, f + ' code')
    t.equal(pe.status, e.status, f + ' status')
    if (e.reason !== undefined) t.equal(pe.reason, e.reason, f + ' reason')
  }
})

t.test('every corpus file through the StreamFramer terminates', async t => {
  for (const sub of ['valid', 'invalid']) {
    for (const f of fs.readdirSync(new URL(sub + '/', dir)).filter(x => x.endsWith('.sip'))) {
      const fr = new StreamFramer()
      fr.push(fs.readFileSync(new URL(sub + '/' + f, dir)))
      let n = 0
      try {
        for (let i = 0; i < 100; i++) {
          const m = fr.next()
          if (m === null) break
          if (m !== KEEPALIVE_PING && m !== KEEPALIVE_PONG) n++
        }
      } catch (e) {
        t.ok(e instanceof SipParseError, sub + '/' + f + ' framing error is typed')
      }
      t.ok(n >= 0)
    }
  }
})
