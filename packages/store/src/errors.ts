/**
 * Errors of @sipedge/store. Every error carries a stable `code`; tests and callers assert
 * the code, never the message. Across threads send `{ code, message }` and rebuild with
 * `StoreError.from`.
 */
export const StoreErrorCode = {
  /** The store URL could not be parsed or names an unknown backend. */
  BAD_URL: 'ERR_STORE_BAD_URL',
  /** The backend cannot be reached (Redis down, connection lost, command timed out). */
  UNAVAILABLE: 'ERR_STORE_UNAVAILABLE',
  /** An optimistic update lost the race too many times in a row. */
  CONFLICT: 'ERR_STORE_CONFLICT',
  /** A value handed to the store is malformed (q out of range, expiry not a number ...). */
  BAD_VALUE: 'ERR_STORE_BAD_VALUE',
  /** A key is too long for the backend (LMDB keys are limited to ~1978 bytes). */
  KEY_TOO_LONG: 'ERR_STORE_KEY_TOO_LONG',
  /** The store was closed. */
  CLOSED: 'ERR_STORE_CLOSED',
  /** The backend answered with an error that is not an outage (a bug or a misconfiguration). */
  BACKEND: 'ERR_STORE_BACKEND',
} as const
export type StoreErrorCode = (typeof StoreErrorCode)[keyof typeof StoreErrorCode]

export class StoreError extends Error {
  readonly code: StoreErrorCode
  constructor(code: StoreErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'StoreError'
    this.code = code
  }
  toJSON(): { code: StoreErrorCode; message: string } {
    return { code: this.code, message: this.message }
  }
  static from(o: { code: StoreErrorCode; message: string }): StoreError {
    return new StoreError(o.code, o.message)
  }
}

export function isStoreError(err: unknown, code?: StoreErrorCode): err is StoreError {
  return err instanceof StoreError && (code === undefined || err.code === code)
}
