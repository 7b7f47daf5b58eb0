/**
 * Typed parse/validation errors. Every rejection carries a stable `code` (tests and metrics
 * key on it), the SIP `status` and `reason` an element should answer with (e.g.
 * `400 Missing Call-ID`), and an operator-fit `message`.
 *
 * Across threads send `{ code, status, reason, message }` and rebuild with
 * `SipParseError.from()`: class identity does not survive structured cloning.
 */
export const ErrorCodes = {
  ERR_SIP_MALFORMED: 'ERR_SIP_MALFORMED',
  ERR_SIP_TOO_LARGE: 'ERR_SIP_TOO_LARGE',
  ERR_SIP_TOO_MANY_HEADERS: 'ERR_SIP_TOO_MANY_HEADERS',
  ERR_SIP_BAD_START_LINE: 'ERR_SIP_BAD_START_LINE',
  ERR_SIP_BAD_VERSION: 'ERR_SIP_BAD_VERSION',
  ERR_SIP_BAD_METHOD: 'ERR_SIP_BAD_METHOD',
  ERR_SIP_BAD_STATUS: 'ERR_SIP_BAD_STATUS',
  ERR_SIP_BAD_HEADER: 'ERR_SIP_BAD_HEADER',
  ERR_SIP_INCOMPLETE: 'ERR_SIP_INCOMPLETE',
  ERR_SIP_MISSING_HEADER: 'ERR_SIP_MISSING_HEADER',
  ERR_SIP_DUPLICATE_HEADER: 'ERR_SIP_DUPLICATE_HEADER',
  ERR_SIP_BAD_CONTENT_LENGTH: 'ERR_SIP_BAD_CONTENT_LENGTH',
  ERR_SIP_MISSING_CONTENT_LENGTH: 'ERR_SIP_MISSING_CONTENT_LENGTH',
  ERR_SIP_BAD_CALL_ID: 'ERR_SIP_BAD_CALL_ID',
  ERR_SIP_BAD_CSEQ: 'ERR_SIP_BAD_CSEQ',
  ERR_SIP_CSEQ_METHOD_MISMATCH: 'ERR_SIP_CSEQ_METHOD_MISMATCH',
  ERR_SIP_BAD_VIA: 'ERR_SIP_BAD_VIA',
  ERR_SIP_BAD_MAX_FORWARDS: 'ERR_SIP_BAD_MAX_FORWARDS',
  ERR_SIP_BAD_NAME_ADDR: 'ERR_SIP_BAD_NAME_ADDR',
  ERR_SIP_BAD_URI: 'ERR_SIP_BAD_URI',
  ERR_SIP_BAD_REQUEST_URI: 'ERR_SIP_BAD_REQUEST_URI',
  ERR_SIP_UNSUPPORTED_URI_SCHEME: 'ERR_SIP_UNSUPPORTED_URI_SCHEME',
  ERR_SIP_BAD_DATE: 'ERR_SIP_BAD_DATE',
  ERR_SIP_TOO_MANY_VALUES: 'ERR_SIP_TOO_MANY_VALUES',
} as const
export type SipErrorCode = keyof typeof ErrorCodes

export class SipParseError extends Error {
  readonly code: string
  /** SIP status to answer a request with (400, 413, 416, 505, 513 ...). Responses are dropped. */
  readonly status: number
  /** Reason phrase for that answer, e.g. "Missing Call-ID". */
  readonly reason: string

  constructor(code: SipErrorCode | string, reason: string, status = 400, message?: string) {
    super(message ?? reason)
    this.name = 'SipParseError'
    this.code = code
    this.status = status
    this.reason = reason
  }

  /** Rebuild an error that crossed a thread boundary as a plain object. */
  static from(o: { code: string; reason?: string; status?: number; message?: string }): SipParseError {
    return new SipParseError(o.code, o.reason ?? o.message ?? 'Bad Request', o.status ?? 400, o.message)
  }

  toJSON(): { code: string; status: number; reason: string; message: string } {
    return { code: this.code, status: this.status, reason: this.reason, message: this.message }
  }
}

export function isSipParseError(e: unknown): e is SipParseError {
  return e instanceof SipParseError
}

/** Turn anything thrown inside the parser into a SipParseError (never leak an untyped error). */
export function wrapError(e: unknown): SipParseError {
  if (e instanceof SipParseError) return e
  const detail = e instanceof Error ? e.message : String(e)
  return new SipParseError(ErrorCodes.ERR_SIP_MALFORMED, 'Malformed message', 400, 'Malformed message: ' + detail)
}
