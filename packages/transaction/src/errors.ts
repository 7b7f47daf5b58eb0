/**
 * Errors of the transaction layer carry a stable `code`; tests and callers assert the code,
 * never the message text.
 */
export type TransactionErrorCode =
  | 'ERR_TX_BAD_CONFIG'
  | 'ERR_TX_BAD_TRANSITION'
  | 'ERR_TX_DUPLICATE'
  | 'ERR_TX_ACK_NOT_A_TRANSACTION'
  | 'ERR_TX_BAD_STATUS'
  | 'ERR_TX_NO_REQUEST'

export class TransactionError extends Error {
  readonly code: TransactionErrorCode
  constructor(code: TransactionErrorCode, message: string) {
    super(message)
    this.name = 'TransactionError'
    this.code = code
  }
}
