/**
 * @sipedge/sip - SIP message parser and builder, URIs, headers. No I/O.
 * See docs/contracts.md (section @sipedge/sip) and docs/errors.md (section sip).
 */
export { SipParseError, ErrorCodes, isSipParseError, type SipErrorCode } from './errors.js'
export {
  parseMessage, tryParseMessage, SipMessage, HeaderField, DEFAULT_MAX_SIZE, DEFAULT_MAX_HEADERS,
  type ParseOptions, type CSeq,
} from './message.js'
export { parseUri, uriEquals, formatUri, unescapeUri, type SipUri } from './uri.js'
export { parseNameAddr, type NameAddr } from './nameaddr.js'
export { parseVia, isRfc3261Branch, MAGIC_COOKIE, type Via } from './via.js'
export { splitList, MAX_LIST_ELEMENTS, EMPTY_PARAMS, EMPTY_URI_HEADERS } from './params.js'
export { MessageEditor } from './editor.js'
export {
  buildResponse, buildAckForNonTwoXx, buildCancel, randomBranch, randomTag, REASONS, type BuildResponseOptions,
} from './build.js'
export { StreamFramer, KEEPALIVE_PING, KEEPALIVE_PONG, type StreamFramerOptions } from './framer.js'
export {
  findCallId, findCallIdStart, lastCallIdEnd, callIdRangeStart, callIdRangeLength, callIdHash, callIdHashOf, fnv1a,
} from './callid.js'
export { canonicalName, wireName, lookupHeaderName } from './headers.js'
