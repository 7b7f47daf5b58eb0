import type { SipMessage } from '@sipedge/sip'

export type TransportName = 'udp' | 'tcp' | 'tls' | 'ws' | 'wss'

/** Where a message goes (or came from). `connId`/`socketId` are opaque to this layer. */
export interface Destination {
  transport: TransportName
  address: string
  port: number
  connId?: number
  socketId?: number
}

/** Monotonic milliseconds. Injected so that timer behaviour is tested without sleeping. */
export interface Clock {
  now(): number
}

/** Hands bytes to the transport. Must not throw; failures come back as `layer.transportError(dest)`. */
export type SendFn = (dest: Destination, data: Buffer | Buffer[]) => void

/**
 * Why a transaction ended without a final response (client) or without the ACK (server).
 * - `timeout`: Timer B/F (client, §17.1.1.2/§17.1.2.2) or Timer H (INVITE server, §17.2.1)
 * - `transport-error`: reported by the host via `layer.transportError(dest | tx)` (§17.1.4, §17.2.4)
 * - `timer-c`: proxy Timer C fired before any provisional (§16.8: behave as if 408 received)
 * - `cancel-timeout`: no final response 64*T1 after our CANCEL was sent (§9.1)
 */
export type TimeoutReason = 'timeout' | 'transport-error' | 'timer-c' | 'cancel-timeout'

export type TransactionKind = 'ict' | 'nict' | 'ist' | 'nist'

export type TransactionState =
  | 'Calling'
  | 'Trying'
  | 'Proceeding'
  | 'Completed'
  | 'Confirmed'
  | 'Accepted'
  | 'Terminated'

export type ResponseHandler<T> = (msg: SipMessage, tx: T) => void
export type TimeoutHandler<T> = (tx: T, reason: TimeoutReason) => void
export type TerminatedHandler<T> = (tx: T) => void
