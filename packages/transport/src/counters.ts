// Engine counters. Plain integer fields on one object of stable shape, bumped on the hot path
// and read by stats()/metrics; nothing here allocates.
export class Counters {
  udpIn = 0
  udpOut = 0
  udpOversize = 0
  udpNoCallId = 0
  udpSendErrors = 0
  streamIn = 0
  streamOut = 0
  streamNoCallId = 0
  keepalivePings = 0
  connAccepted = 0
  connOpened = 0
  connReused = 0
  connRefused = 0
  /** Refused: limits.max_connections_per_source reached for the remote address (not in connRefused). */
  connRefusedPerSource = 0
  /** Refused: the remote address is banned (pike; also in connRefused). */
  connRefusedBanned = 0
  /** Open connections closed because their remote address was banned. */
  connBannedClosed = 0
  connClosed = 0
  connIdleClosed = 0
  /** Connections that had only ever pinged, closed to make room when max_connections was reached. */
  connIdleEvicted = 0
  connPartialTimeout = 0
  connOversize = 0
  connBadStream = 0
  connConnectFailed = 0
  tlsHandshakeErrors = 0
  tlsReloads = 0
  tlsReloadErrors = 0
  ringFull = 0
  ringFull503 = 0
  sendNoConnection = 0
  sendUnsupported = 0
  /** FLAG_TRANSPORT_ERROR reports handed to a worker (or the in-process handler). */
  transportErrorsReported = 0
  /** Reports that could not be handed over (that worker's inbound ring full, or shutting down). */
  transportErrorsLost = 0
  workerCrashes = 0
  workerLostInFlight = 0
  drainDropped = 0
  handlerErrors = 0
}
export type CounterName = keyof Counters
