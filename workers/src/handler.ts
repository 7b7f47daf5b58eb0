// The default message handler until the proxy core lands: OPTIONS addressed to the proxy itself
// -> 200 OK, every other request -> 501 Not Implemented, responses and ACK -> no answer. It
// exercises the whole pipe (socket -> ring -> worker -> ring -> socket) end to end.
import { tryParseMessage, buildResponse, SipParseError, type SipMessage } from '@sipedge/sip'
import type { CreateHandler, HandlerContext, MessageHandler, FrameMeta } from './types.js'

const ALLOW: Array<[string, string]> = [['Allow', 'OPTIONS'], ['Accept', 'application/sdp']]
const hooksEnabled = process.env['SIPEDGE_TEST_HOOKS'] === '1'

export class DefaultResponder implements MessageHandler {
  readonly ctx: HandlerContext
  /** Hosts (lower case) that name this proxy: a Request-URI with a user part aimed at one of them is still "for us". */
  localHosts: Set<string>
  answered200 = 0
  answered501 = 0
  answered4xx = 0
  dropped = 0

  constructor(ctx: HandlerContext) {
    this.ctx = ctx
    this.localHosts = hostsFromConfig(ctx.config)
  }

  onFrame(meta: FrameMeta, payload: Uint8Array): void {
    const buf = Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength)
    const msg = tryParseMessage(buf)
    if (msg instanceof SipParseError) { this.dropped++; return } // nothing to build an answer from
    if (!msg.isRequest || msg.method === 'ACK') return // RFC 3261 §17: no response to ACK or a response
    if (hooksEnabled && !this.ctx.inProcess) testHook(msg)
    let status: number
    let reason: string
    try {
      msg.validate()
      if (msg.method === 'OPTIONS' && this.#forUs(msg)) { status = 200; reason = 'OK'; this.answered200++ }
      else { status = 501; reason = 'Not Implemented'; this.answered501++ }
    } catch (err) {
      if (!(err instanceof SipParseError)) throw err
      status = err.status
      reason = err.reason
      this.answered4xx++
    }
    let resp: Buffer
    try {
      resp = buildResponse(msg, status, reason, status === 200 ? { headers: ALLOW } : undefined)
    } catch {
      this.dropped++
      return
    }
    // Same transport, socket and connection (or source address:port for UDP, RFC 3581 style).
    this.ctx.send(meta, resp)
  }

  /** A request for the proxy itself: no user part in the Request-URI (a keep-alive/health ping) or a local host. */
  #forUs(msg: SipMessage): boolean {
    const u = msg.requestUri
    if (u.user === undefined || u.user === '') return true
    return this.localHosts.has(u.host.toLowerCase())
  }

  onControl(msg: { type: string; [k: string]: unknown }): void {
    if (msg.type === 'config') {
      this.localHosts = hostsFromConfig(msg['config'])
      this.ctx.log.info('configuration updated', { worker: this.ctx.workerIndex })
    }
  }

  close(): void { /* nothing in flight beyond the current call */ }
}

function hostsFromConfig(config: unknown): Set<string> {
  const out = new Set<string>()
  const c = config as { proxy?: { domains?: unknown; aliases?: unknown }; domains?: unknown } | null | undefined
  for (const list of [c?.proxy?.domains, c?.proxy?.aliases, c?.domains]) {
    if (Array.isArray(list)) for (const d of list) if (typeof d === 'string') out.add(d.toLowerCase())
  }
  return out
}

/**
 * Test-only behaviour, enabled by SIPEDGE_TEST_HOOKS=1 and never in-process: header
 * `X-Sipedge-Test: crash` kills the worker thread (uncaught exception outside the frame loop's
 * try/catch); `busy=MS` spins the worker for up to 2 s so the inbound ring fills.
 */
function testHook(msg: SipMessage): void {
  const v = msg.header('x-sipedge-test')
  if (v === undefined) return
  if (v === 'crash') {
    setImmediate(() => { throw new Error('SIPEDGE_TEST_HOOKS: crash requested') })
  } else if (v.startsWith('busy=')) {
    const until = Date.now() + Math.min(2_000, Number(v.slice(5)) || 0)
    while (Date.now() < until) { /* spin */ }
  }
}

export const createHandler: CreateHandler = ctx => new DefaultResponder(ctx)
