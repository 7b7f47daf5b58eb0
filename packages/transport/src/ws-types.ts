// Contract between the WebSocket listener (ws.ts, uWebSockets.js) and the transport engine.
// RFC 7118: SIP over WebSocket, subprotocol "sip"; one SIP message per WebSocket message (§5).

export interface WsConnection {
  readonly transport: 'ws' | 'wss'
  /** Normalised: IPv4 dotted quad (also for IPv4-mapped IPv6), IPv6 in RFC 5952 form. */
  readonly remoteAddress: string
  /** 0 when the uWS build in use cannot report it (20.30 cannot). */
  readonly remotePort: number
  /** The connId the sink returned from onOpen (-1 before that). */
  readonly connId: number
  /** True once the connection is closed (by either side); send() then returns false. */
  readonly closed: boolean
  /**
   * Sends one SIP message as one WebSocket message (an array is joined into that one message).
   * Returns false if the connection is closed or the message was dropped because the peer is
   * too slow (buffered amount over maxBackpressure); drops are counted in the listener stats.
   * Never throws.
   */
  send(data: Buffer | Buffer[]): boolean
  /** Sends a ping frame (RFC 6455 §5.5.2; NAT keep-alives); the pong comes to sink.onPong. false if closed. */
  ping(): boolean
  /**
   * Closes the connection (WebSocket close 1000). Idempotent. The sink's onClose runs
   * synchronously inside this call.
   */
  close(): void
}

export interface WsSink {
  /** A handshake completed; returns the connId the engine assigns to this connection. */
  onOpen(conn: WsConnection): number
  /** One whole SIP message per WS message (RFC 7118 §5); `data` is a private copy. */
  onMessage(connId: number, data: Buffer): void
  /** Called exactly once per opened connection, whoever closed it. Do not send from here. */
  onClose(connId: number): void
  /** A pong frame arrived (the answer to ping(), NAT keep-alives). */
  onPong?(connId: number): void
}

export interface WsListenerOptions {
  proto: 'ws' | 'wss'
  address: string
  /** 0 = any free port; read the real one from WsListener.port. */
  port: number
  /** PEM file paths; required for wss. */
  tls?: { cert: string; key: string; passphrase?: string }
  /** Largest WebSocket message accepted; a bigger one closes the connection. */
  maxMessageSize: number
  /**
   * Idle timeout: a peer silent this long is closed; uWS pings it (at about half the timeout)
   * so a live peer always has something to answer.
   * uWS works in 4 s steps between 8 s and 960 s: the value is rounded up to a multiple of 4 s
   * and clamped to that range; 0 disables the timeout (and the pings).
   */
  idleTimeoutMs: number
  /** Per-connection send buffer limit in bytes before messages are dropped. Default 256 KiB. */
  maxBackpressure?: number
  /** URL path to accept WebSocket upgrades on (exact match). Default: any path. */
  path?: string
  sink: WsSink
}

export interface WsListenerStats {
  /** Connections currently open. */
  connections: number
  opened: number
  closed: number
  /** Handshakes refused (no `sip` subprotocol, bad version, wrong path, plain HTTP). */
  rejected: number
  messagesIn: number
  bytesIn: number
  messagesOut: number
  bytesOut: number
  /** Outgoing messages dropped because the peer's send buffer was over maxBackpressure. */
  dropped: number
  /** RFC 5626 §3.5.1 CRLFCRLF keep-alives answered with CRLF (not passed to the sink). */
  keepalives: number
}

export interface WsListener {
  readonly port: number
  readonly proto: 'ws' | 'wss'
  readonly address: string
  /** Live counters (the same object is updated in place). */
  readonly stats: Readonly<WsListenerStats>
  /** Stops listening and closes every connection (sink.onClose runs for each). Idempotent. */
  close(): void
}
