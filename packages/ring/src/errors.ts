/**
 * Stable error codes of @sipedge/ring. Tests and callers match on `code`, never on the text.
 * Across threads, send `{ code, message }` and rebuild with `new RingError(code, message)`.
 */
export const RingErrorCode = {
  /** A frame (header + payload) larger than the ring's maximum frame; see `Ring.maxPayload`. */
  FRAME_TOO_LARGE: 'ERR_RING_FRAME_TOO_LARGE',
  /** `Ring.allocate` got a capacity that is not a finite number in the supported range. */
  BAD_CAPACITY: 'ERR_RING_BAD_CAPACITY',
  /** `new Ring(sab)` got something that is not a SharedArrayBuffer made by `Ring.allocate`. */
  BAD_BUFFER: 'ERR_RING_BAD_BUFFER',
  /** A frame's remote address is not a valid IPv4/IPv6 literal for the family given. */
  BAD_ADDRESS: 'ERR_RING_BAD_ADDRESS',
  /** The consumer found a record that cannot be valid: memory was overwritten or two producers/consumers ran. */
  CORRUPT: 'ERR_RING_CORRUPT',
  /** `drain` was called from inside a `drain` callback of the same ring. */
  REENTRANT_DRAIN: 'ERR_RING_REENTRANT_DRAIN',
} as const
export type RingErrorCode = (typeof RingErrorCode)[keyof typeof RingErrorCode]

export class RingError extends Error {
  readonly code: RingErrorCode
  constructor(code: RingErrorCode, message: string) {
    super(message)
    this.name = 'RingError'
    this.code = code
  }
}
