// The whole worker message handler, in-process, as a fuzz target: the module the engine loads for
// every worker (`proxyHandlerUrl`, `createHandler(ctx)`) with a HandlerContext whose send()
// collects frames and whose log is silent. Shared by packages/tests/test/handler-fuzz.test.ts and
// benchmarks/fuzz.mjs. Plain JavaScript so the benchmark can load it without a build.
//
// What it holds the handler to:
//   throw      onFrame throws (in a worker that kills the thread: every call on it is lost)
//   output     a frame it sends is not a SIP message that parses, or names no valid destination
// Conditions are those of a worker: the payload is a view that is overwritten as soon as onFrame
// returns (ring memory), every host name resolves (to 127.0.0.9, no DNS query leaves the
// machine), and the clock jumps ahead now and then so transaction timers fire.
import { createHash } from 'node:crypto'
import dns from 'node:dns'
import fs from 'node:fs'
import { syncBuiltinESMExports } from 'node:module'
import path from 'node:path'
import { parseConfig } from '@sipedge/config'
import { proxyHandlerUrl } from '@sipedge/workers'
import { tryParseMessage, parseMessage, SipParseError, buildResponse } from '@sipedge/sip'
import { MAX_INPUT, mutateLightly } from '@sipedge/sip/fuzz/mutator'

export class HandlerFailure extends Error {
  constructor(kind, detail) {
    super(detail)
    this.kind = kind
  }
}

let dnsStubbed = false
/** Every name resolves to 127.0.0.9 without a query: fuzzed host names must not reach a resolver. */
function stubDns() {
  if (dnsStubbed) return
  dnsStubbed = true
  const answer = (opts) => (opts !== null && typeof opts === 'object' && opts.all ? [{ address: '127.0.0.9', family: 4 }] : { address: '127.0.0.9', family: 4 })
  dns.promises.lookup = async (_host, opts) => answer(opts)
  dns.lookup = (_host, opts, cb) => { const f = typeof opts === 'function' ? opts : cb; const a = answer(typeof opts === 'function' ? null : opts); queueMicrotask(() => (Array.isArray(a) ? f(null, a) : f(null, a.address, a.family))) }
  syncBuiltinESMExports()
}

const md5 = s => createHash('md5').update(s).digest('hex')

/** The configuration: registrar with digest auth, a dispatcher set, prefix/header routes, lookup. */
function configText(dir) {
  return `
workers: 1
listen: [udp:127.0.0.1:5060, tcp:127.0.0.1:5060, ws:127.0.0.1:5066]
domains: [example.com, 127.0.0.1, apps.example.com]
store: "lmdb:${dir}/store"
auth:
  domains:
    example.com: { users_file: "${dir}/users.txt", methods: [REGISTER, MESSAGE] }
dispatcher:
  sets:
    apps:
      algorithm: hash-callid
      probe: false
      destinations: [sip:127.0.0.2:5070, "sip:127.0.0.3:5070;transport=tcp"]
routes:
  - { match: { method: REGISTER, domain: [example.com, 127.0.0.1] }, action: register }
  - { match: { method: REGISTER }, action: { reject: { code: 403, reason: Not here } } }
  - { match: { domain: apps.example.com }, action: { dispatch: apps } }
  - { match: { user_prefix: "+1555" }, action: { dispatch: apps } }
  - { match: { header: { name: X-Tenant, regex: "^gold$" } }, action: { forward: "sip:127.0.0.4:5080;transport=tcp" } }
  - { match: { domain: [example.com, 127.0.0.1] }, action: lookup }
  - { action: { reject: 404 } }
`
}

const COOKIE = Buffer.from('z9hG4bK')
/**
 * Every branch made unique to this input (`z9hG4bK` -> `z9hG4bK<tag>`), as a real client's
 * requests are: the same branch again is a retransmission that the transaction layer absorbs,
 * and the fuzzer would mostly test that.
 */
function uniqueBranches(buf, tag) {
  const parts = []
  let from = 0
  for (let i = buf.indexOf(COOKIE); i >= 0 && parts.length < 64; i = buf.indexOf(COOKIE, i + 7)) {
    parts.push(buf.subarray(from, i + 7), tag)
    from = i + 7
  }
  if (parts.length === 0) return buf
  parts.push(buf.subarray(from))
  return Buffer.concat(parts)
}

const RESPONSE_CODES = [100, 180, 183, 200, 200, 200, 202, 302, 401, 407, 408, 480, 486, 487, 488, 500, 503, 603]

/**
 * One handler and its context. `feed(i, buf, rng)` gives input i to it as a UDP and as a TCP frame,
 * and sometimes a response to a request it forwarded; `settle()` lets time pass (timers, async
 * store answers) and checks what was sent meanwhile. Failures are thrown as HandlerFailure.
 */
export async function createHandlerHarness({ dir, seeds }) {
  stubDns()
  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(path.join(dir, 'users.txt'), `alice:example.com:${md5('alice:example.com:s3cret')}\nbob:example.com:${md5('bob:example.com:pw')}\n`)
  const config = parseConfig(configText(dir))
  let offset = 0
  const now = () => performance.timeOrigin + performance.now() + offset
  const sent = []
  const logged = { error: 0, warn: 0, firstError: null, firstWarn: null }
  const ctx = {
    workerIndex: 0,
    config,
    inProcess: true,
    now,
    nowJumps: true, // the clock jumps ahead (settle, close): timers check it every second
    log: {
      debug() {}, info() {},
      warn(msg, fields) { logged.warn++; logged.firstWarn ??= `${msg} ${JSON.stringify(fields ?? {})}` },
      error(msg, fields) { logged.error++; logged.firstError ??= `${msg} ${JSON.stringify(fields ?? {})}` },
    },
    send(meta, payload) {
      // copied, as the real send copies into the outbound ring before returning
      const parts = Array.isArray(payload) ? payload : [payload]
      sent.push({ meta: { ...meta }, bytes: Buffer.concat(parts.map(p => Buffer.from(p.buffer, p.byteOffset, p.byteLength))) })
      return true
    },
  }
  const mod = await import(proxyHandlerUrl.href)
  const handler = await mod.createHandler(ctx)

  // ring memory: the payload is a view that is overwritten once onFrame returns
  const scratch = Buffer.alloc(MAX_INPUT + 4096)
  /** Requests the handler forwarded, to answer them (responses exercise the client transactions). */
  const forwarded = []
  let lastInput = -1
  const stats = { frames: 0, sent: 0, responsesFed: 0, sentByKind: {}, activeAfterTimers: null }

  function frame(buf, meta, input) {
    const n = Math.min(buf.length, scratch.length)
    buf.copy(scratch, 0, 0, n)
    const view = scratch.subarray(0, n)
    stats.frames++
    try {
      handler.onFrame(meta, view)
    } catch (err) {
      throw new HandlerFailure('throw', `input ${input} (${meta.transport === 1 ? 'udp' : 'tcp'}): ${err?.stack ?? String(err)}`)
    } finally {
      scratch.fill(0xee, 0, n)
    }
  }

  function checkSent() {
    for (const s of sent.splice(0)) {
      stats.sent++
      const m = s.meta
      if (!(m.transport >= 1 && m.transport <= 5) || typeof m.address !== 'string' || m.address === '' || !(Number.isInteger(m.port) && m.port >= 0 && m.port <= 65535))
        throw new HandlerFailure('output', `after input ${lastInput}: a frame to an invalid destination ${JSON.stringify(m)}`)
      // no size or header-count limit: those are the receiver's policy (a request at our limit is forwarded with one more Via)
      const p = tryParseMessage(s.bytes, { maxSize: 1 << 20, maxHeaders: 1 << 16 })
      if (p instanceof SipParseError) {
        throw new HandlerFailure('output', `after input ${lastInput}: a sent frame does not parse (${p.code} ${p.message}):\n${s.bytes.toString('latin1').slice(0, 2000)}`)
      }
      const kind = p.isRequest ? p.method : `${p.status}`
      stats.sentByKind[kind] = (stats.sentByKind[kind] ?? 0) + 1
      if (p.isRequest && p.method !== 'ACK' && p.method !== 'CANCEL') {
        forwarded.push({ bytes: s.bytes, meta: m })
        if (forwarded.length > 64) forwarded.shift()
      }
    }
  }

  return {
    stats,
    logged,
    /** Input i (bytes) as a UDP datagram and as a TCP frame; sometimes a response to a forwarded request. */
    feed(i, buf, rng) {
      lastInput = i
      const port = 5060 + (i % 97)
      // a quarter of the inputs keep their branch: retransmissions and RFC 2543 matching are tested too
      const unique = rng.chance(0.75)
      frame(unique ? uniqueBranches(buf, Buffer.from(`${i}u`)) : buf, { transport: 1, socketId: 0, connId: 0, family: 4, address: '127.0.200.7', port, recvTime: now(), flags: 0 }, i)
      checkSent()
      frame(unique ? uniqueBranches(buf, Buffer.from(`${i}t`)) : buf, { transport: 2, socketId: 1, connId: 1000 + (i % 64), family: 4, address: '127.0.200.8', port: 40000 + (i % 1000), recvTime: now(), flags: 0 }, i)
      checkSent()
      if (forwarded.length > 0 && rng.chance(0.3)) {
        const f = forwarded[rng.int(forwarded.length)]
        let resp
        try {
          resp = buildResponse(parseMessage(f.bytes), rng.pick(RESPONSE_CODES), undefined, { toTag: `fz${rng.int(4)}` })
        } catch (err) {
          if (!(err instanceof SipParseError)) throw new HandlerFailure('output', `after input ${i}: a forwarded request cannot be answered: ${err?.stack ?? err}`)
          return
        }
        if (rng.chance(0.3)) resp = mutateLightly(rng, resp, seeds)
        stats.responsesFed++
        const meta = { transport: f.meta.transport, socketId: f.meta.transport === 1 ? 0 : 1, connId: f.meta.connId === 0 ? 2000 + rng.int(8) : f.meta.connId, family: 4, address: f.meta.address, port: f.meta.port, recvTime: now(), flags: 0 }
        frame(resp, meta, i)
        checkSent()
      }
    },
    /** The handler's transaction statistics (the `transactions` query), for diagnostics. */
    transactions() {
      return handler.onQuery?.('transactions', {}) ?? null
    },
    /** Lets `jumpMs` pass on the handler's clock and the event loop run (timer ticks, store answers); checks what it sent. */
    async settle(jumpMs) {
      offset += jumpMs
      // the transaction layer's timer driver wakes when a timer is due, at most 1 s apart
      await new Promise(r => setTimeout(r, 60))
      checkSent()
    },
    async close() {
      // past every transaction timer (Timer C is 3 min): what is still active now never ends
      // with nowJumps the layer's timer driver sleeps at most 1 s while timers are pending
      // (layer.ts maxSleepMs), so a jumped clock is seen within that
      for (const jump of [200_000, 200_000, 200_000]) {
        offset += jump
        await new Promise(r => setTimeout(r, 1100))
      }
      checkSent()
      const tx = handler.onQuery?.('transactions', {})
      stats.activeAfterTimers = tx?.active ?? null
      await handler.close?.()
      checkSent()
    },
  }
}
