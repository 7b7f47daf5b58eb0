// The subset of @sipedge/sip the primary uses, in one place: the Call-ID scan, stream framing,
// and the few responses the primary itself sends (400 without Call-ID, 503 on a full ring). The
// primary never parses a message it forwards; it parses only to build these answers.
import { callIdHash, callIdHashOf, StreamFramer, KEEPALIVE_PING, KEEPALIVE_PONG, tryParseMessage, buildResponse, SipParseError } from '@sipedge/sip'

export { callIdHash, callIdHashOf, StreamFramer, KEEPALIVE_PING, KEEPALIVE_PONG, SipParseError }

/**
 * Builds a response to `buf` if it is a parseable request other than ACK (RFC 3261 §17.2.1:
 * ACK gets no response), else returns null (the caller drops and counts).
 */
export function answerFor(buf: Buffer, status: number, reason: string, headers?: Array<[string, string]>): Buffer | null {
  const msg = tryParseMessage(buf)
  if (msg instanceof SipParseError) return null
  if (!msg.isRequest || msg.method === 'ACK') return null
  try {
    return buildResponse(msg, status, reason, headers !== undefined ? { headers } : undefined)
  } catch {
    return null
  }
}
