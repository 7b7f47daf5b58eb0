// Requests the proxy originates for its modules (dispatcher probes, BYE on dialog timeout): built
// once as text, sent on a new client transaction whose callbacks go back to the module.
import { callIdHashOf, randomTag, type SipMessage } from '@sipedge/sip'
import type { ClientTransaction, TimeoutReason } from '@sipedge/transaction'
import type { CoreState } from './internals.js'
import type { OriginateOptions } from './module.js'

class Origin {
  readonly o: OriginateOptions
  constructor(o: OriginateOptions) { this.o = o }
}

const onResponse = (msg: SipMessage, tx: ClientTransaction): void => {
  const o = (tx.context as Origin).o
  o.onResponse?.(msg, o.context)
}
const onTimeout = (tx: ClientTransaction, reason: TimeoutReason): void => {
  const o = (tx.context as Origin).o
  o.onTimeout?.(reason, o.context)
}

/** A Call-ID that the primary shards to THIS worker, so the responses come back here. */
export function pinnedCallId(workerIndex: number, workers: number): string {
  const n = Math.max(1, workers)
  for (let i = 0; i < 64 * n; i++) {
    const id = 'sE-' + randomTag() + randomTag() + '@sipedge'
    if (callIdHashOf(id) % n === workerIndex % n) return id
  }
  return 'sE-' + randomTag() + randomTag() + '@sipedge'
}

/** Builds and sends the request; false when no listener speaks the destination's transport. */
export function originate(core: CoreState, o: OriginateOptions): boolean {
  const out = core.local.listenerFor(o.dest.transport)
  if (out === undefined) return false
  const branch = core.branches.next('00000000')
  const callId = o.callId ?? (o.pinned === true ? pinnedCallId(core.workerIndex, core.workers) : randomTag() + randomTag() + '@sipedge')
  let text = o.method + ' ' + o.uri + ' SIP/2.0\r\n' +
    'Via: ' + out.viaPrefix + branch + '\r\n' +
    'Max-Forwards: 70\r\n' +
    'From: ' + o.from + '\r\n' +
    'To: ' + o.to + '\r\n' +
    'Call-ID: ' + callId + '\r\n' +
    'CSeq: ' + (o.cseq ?? 1) + ' ' + o.method + '\r\n'
  if (o.headers !== undefined) for (const [n, v] of o.headers) text += n + ': ' + v + '\r\n'
  text += 'User-Agent: ' + core.config.proxy.user_agent + '\r\nContent-Length: 0\r\n\r\n'
  core.counters.originated++
  core.layer.createClient({
    request: Buffer.from(text, 'utf8'),
    method: o.method,
    branch,
    dest: o.dest.socketId === undefined ? { ...o.dest, socketId: out.socketId } : o.dest,
    onResponse,
    onTimeout,
    context: new Origin(o),
  })
  return true
}
