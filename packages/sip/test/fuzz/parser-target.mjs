// One fuzz input through everything @sipedge/sip does with untrusted bytes: parse, validate, every
// lazy accessor a proxy decision uses, the stream framer, the Call-ID scan, and, for a valid
// request, the response and the edited forward a proxy would send (both must parse again).
//
// The contract (docs/errors.md "sip"): every input parses or is refused with a SipParseError
// whose code is one of ErrorCodes. Anything else is a failure:
//   crash     an exception that is not a SipParseError (or a wrong return type)
//   internal  ERR_SIP_MALFORMED made by wrapError() from an internal exception (a crash the
//             parser's safety net caught: still a bug, the input says where)
//   code      a SipParseError with a code outside ErrorCodes
//   rebuild   a response or edited forward of a valid request that does not parse (validate) again
import {
  tryParseMessage, parseMessage, SipParseError, SipMessage, ErrorCodes, MessageEditor, StreamFramer, buildResponse,
  buildAckForNonTwoXx, buildCancel, callIdHash,
} from '@sipedge/sip'

const CODES = new Set(Object.values(ErrorCodes))

class Failure extends Error {
  constructor(kind, detail) {
    super(detail)
    this.kind = kind
  }
}

function checkError(e, stage) {
  if (!(e instanceof SipParseError)) throw new Failure('crash', `${stage}: ${e?.stack ?? String(e)}`)
  if (!CODES.has(e.code)) throw new Failure('code', `${stage}: unknown code ${e.code}`)
  // wrapError() turns an internal exception into ERR_SIP_MALFORMED "Malformed message: <detail>"
  if (e.code === 'ERR_SIP_MALFORMED' && e.message.startsWith('Malformed message: ')) throw new Failure('internal', `${stage}: ${e.message}`)
  return `${stage}:${e.code}`
}

function accessAll(m) {
  void m.callId; void m.cseq; void m.from; void m.to; void m.topVia; void m.vias; void m.maxForwards
  void m.contacts; void m.routes; void m.recordRoutes; void m.body; void m.contentLength
  m.headerValues('via'); m.header('x-unknown'); m.headerNames()
  if (m.isRequest) void m.requestUri
}

/** Runs one input; returns the outcome label ("ok", "parse:ERR_...", "validate:ERR_...", ...). Throws Failure. */
export function runParser(buf) {
  callIdHash(buf)
  const fr = new StreamFramer()
  fr.push(buf)
  try {
    for (let i = 0; i < 8 && fr.next() !== null; i++);
  } catch (e) {
    checkError(e, 'framer')
  }

  const r = tryParseMessage(buf)
  if (r instanceof SipParseError) return checkError(r, 'parse')
  if (!(r instanceof SipMessage)) throw new Failure('crash', `tryParseMessage returned ${Object.prototype.toString.call(r)}`)
  // a response off the network, decoded no further than its top Via, acknowledged by a client transaction
  if (!r.isRequest) ackFor(r)
  try {
    r.validate()
  } catch (e) {
    const label = checkError(e, 'validate')
    // accessors on an invalid message may refuse, but only with a typed error
    try { accessAll(r) } catch (e2) { checkError(e2, 'access') }
    return label
  }
  try {
    accessAll(r)
  } catch (e) {
    return checkError(e, 'access')
  }
  if (r.isRequest && r.method !== 'ACK') rebuild(r)
  return 'ok'
}

/**
 * Rebuilt messages are parsed without the size and header-count limits: those are a receiver's
 * local policy, and a request at our limit (512 headers) is forwarded with one more Via.
 */
const UNLIMITED = { maxSize: 1 << 20, maxHeaders: 1 << 16 }

const INVITE = parseMessage(Buffer.from('INVITE sip:bob@127.0.0.2:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKfz\r\n' +
  'Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: fz@x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n'))

/** The ACK for a non-2xx final response (§17.1.1.3) copies the response's To: it must parse, or be refused with a typed error. */
function ackFor(resp) {
  let ack
  try {
    ack = buildAckForNonTwoXx(INVITE, resp)
  } catch (e) {
    checkError(e, 'ack')
    return
  }
  const a = tryParseMessage(ack, UNLIMITED)
  if (a instanceof SipParseError) throw new Failure('rebuild', `the ACK for this response does not parse: ${a.code} ${a.message}`)
}

/** What a proxy sends for a valid request must parse: its own response, the forwarded request, a CANCEL of it. */
function rebuild(m) {
  let resp
  try {
    resp = buildResponse(m, 400, undefined, { toTag: 'fz' })
  } catch (e) {
    throw new Failure('rebuild', `buildResponse threw: ${e?.stack ?? e}`)
  }
  const p = tryParseMessage(resp, UNLIMITED)
  if (p instanceof SipParseError) throw new Failure('rebuild', `the 400 response does not parse: ${p.code} ${p.message}`)
  if (m.method === 'INVITE') {
    const c = tryParseMessage(buildCancel(m), UNLIMITED)
    if (c instanceof SipParseError) throw new Failure('rebuild', `the CANCEL of this INVITE does not parse: ${c.code} ${c.message}`)
  }
  let fwd
  try {
    const ed = new MessageEditor(m).prependVia('SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKfuzz').setMaxForwards(m.maxForwards < 0 ? 70 : Math.max(0, m.maxForwards - 1))
    if (m.routes.length > 0) ed.removeFirstRoute()
    fwd = ed.toBuffer()
  } catch (e) {
    if (e instanceof SipParseError) return // a header the edit needs did not decode: the proxy answers 400
    throw new Failure('rebuild', `MessageEditor threw: ${e?.stack ?? e}`)
  }
  const f = tryParseMessage(fwd, UNLIMITED)
  if (f instanceof SipParseError) throw new Failure('rebuild', `the forwarded request does not parse: ${f.code} ${f.message}`)
  try {
    f.validate()
  } catch (e) {
    throw new Failure('rebuild', `the forwarded request does not validate: ${e.code ?? ''} ${e.message}`)
  }
}

export { Failure }
