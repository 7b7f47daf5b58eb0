// WebSocket / secure WebSocket listener for WebRTC clients (RFC 7118, subprotocol "sip") on
// uWebSockets.js. The primary thread owns it; the engine plugs in through WsSink (ws-types.ts).
//
// uWS rules this file lives by:
//   - a uWS WebSocket object is valid from `open` until `close` returns; touching it afterwards
//     is a use-after-free in C++, so every path goes through the connection's `ws` slot, which
//     is nulled in the close handler, and through the `closed` flag;
//   - the ArrayBuffer handed to `message` is neutered when the callback returns, so the bytes
//     given to the sink are copied exactly once;
//   - the HttpRequest in `upgrade` is stack-allocated: read every header before returning.
import { isUtf8 } from 'node:buffer'
import { constants as fsConstants } from 'node:fs'
import { access } from 'node:fs/promises'
import type {
  HttpRequest,
  HttpResponse,
  TemplatedApp,
  WebSocket,
  WebSocketBehavior,
  us_listen_socket,
  us_socket,
  us_socket_context_t,
} from 'uWebSockets.js'
import { loadUws } from './uws.js'
import type { UwsModule } from './uws.js'

/** uSockets LIBUS_LISTEN_EXCLUSIVE_PORT: no SO_REUSEPORT. */
const LIBUS_LISTEN_EXCLUSIVE_PORT = 1
/** The (host, port, options, cb) overload uWS has at run time but not in its typings. */
interface ExclusiveListen<S> { listen(host: string, port: number, options: number, cb: (s: S | false) => void): void }
import type { WsConnection, WsListener, WsListenerOptions, WsListenerStats, WsSink } from './ws-types.js'

export type { WsConnection, WsListener, WsListenerOptions, WsListenerStats, WsSink } from './ws-types.js'

/** RFC 7118 §7: the IANA-registered WebSocket subprotocol for SIP. */
export const SIP_SUBPROTOCOL = 'sip'
export const DEFAULT_WS_MAX_BACKPRESSURE = 256 * 1024

/** uWS aborts the process (std::terminate) for 0 < idleTimeout < 8 or > 960 s. */
const UWS_IDLE_MIN_S = 8
const UWS_IDLE_MAX_S = 960
/** uWS WebSocket.send() result: message dropped because buffered amount > maxBackpressure. */
const UWS_SEND_DROPPED = 2

const CRLF = Buffer.from('\r\n', 'latin1')

export interface WsError extends Error {
  code: 'ERR_WS_OPTIONS' | 'ERR_WS_TLS_CONFIG' | 'ERR_WS_LISTEN'
}

function wsError(code: WsError['code'], message: string, cause?: unknown): WsError {
  const err = new Error(message, cause === undefined ? undefined : { cause }) as WsError
  err.code = code
  return err
}

/**
 * uWS counts idle time in 4 s ticks and only accepts 0 (off) or 8..960 s. Round up to the next
 * tick (never time out earlier than asked) and clamp into that range.
 */
export function uwsIdleTimeoutSeconds(idleTimeoutMs: number): number {
  if (!(idleTimeoutMs > 0)) return 0
  const s = Math.ceil(idleTimeoutMs / 4000) * 4
  return s < UWS_IDLE_MIN_S ? UWS_IDLE_MIN_S : s > UWS_IDLE_MAX_S ? UWS_IDLE_MAX_S : s
}

/**
 * Formats the binary address from uWS getRemoteAddress(): 4 bytes (IPv4) or 16 bytes (IPv6).
 * We use the binary form rather than getRemoteAddressAsText() because uWS 20.30 prints IPv6 fully
 * expanded ("0000:...:0001"), which would need parsing anyway. IPv4-mapped IPv6
 * (::ffff:a.b.c.d, seen on dual-stack listeners) becomes plain a.b.c.d so that one client has one
 * address whichever socket family it arrived on; other IPv6 follows RFC 5952 (lower case, longest
 * zero run compressed).
 */
export function formatRemoteAddress(raw: ArrayBuffer | Uint8Array): string {
  const b = raw instanceof Uint8Array ? raw : new Uint8Array(raw)
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`
  if (b.length !== 16) return ''
  let mapped = b[10] === 0xff && b[11] === 0xff
  for (let i = 0; i < 10 && mapped; i++) if (b[i] !== 0) mapped = false
  if (mapped) return `${b[12]}.${b[13]}.${b[14]}.${b[15]}`
  const groups: number[] = []
  for (let i = 0; i < 16; i += 2) groups.push((b[i]! << 8) | b[i + 1]!)
  // RFC 5952 §4.2: compress the longest run of two or more zero groups, the first if tied.
  let bestStart = -1
  let bestLen = 1
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) { i++; continue }
    let j = i
    while (j < 8 && groups[j] === 0) j++
    if (j - i > bestLen) { bestStart = i; bestLen = j - i }
    i = j
  }
  const hex = groups.map(g => g.toString(16))
  if (bestStart < 0) return hex.join(':')
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`
}

/** Normalises a textual address the way formatRemoteAddress does (for addresses from config). */
export function normaliseAddressText(text: string): string {
  const lower = text.toLowerCase()
  return lower.startsWith('::ffff:') && lower.indexOf('.') > 0 ? lower.slice(7) : lower
}

/** True when a Sec-WebSocket-Protocol value (comma-separated list) offers exactly "sip". */
export function offersSipSubprotocol(headerValue: string): boolean {
  if (headerValue.length === 0) return false
  for (const token of headerValue.split(',')) if (token.trim() === SIP_SUBPROTOCOL) return true
  return false
}

function emptyStats(): WsListenerStats {
  return {
    connections: 0,
    opened: 0,
    closed: 0,
    rejected: 0,
    messagesIn: 0,
    bytesIn: 0,
    messagesOut: 0,
    bytesOut: 0,
    dropped: 0,
    keepalives: 0,
  }
}

/**
 * uWS userData. uWS.js copies the own properties of the object given to res.upgrade() onto its
 * WebSocket object (getUserData() returns that object), so prototype methods would be lost and
 * our `send` would be shadowed by the native one: keep the connection one level down.
 */
interface UserData {
  readonly conn: UwsWsConnection
}

/** One WebSocket connection as the engine sees it. */
class UwsWsConnection implements WsConnection {
  readonly transport: 'ws' | 'wss'
  readonly remoteAddress: string
  readonly remotePort: number
  connId: number
  closed: boolean
  /** Valid between uWS open and close only. */
  ws: WebSocket<UserData> | null
  /**
   * RFC 7118 §5.1 lets either side use text or binary frames. We answer in the kind the client
   * last used (browsers' SIP stacks send text), but never put bytes that are not UTF-8 in a
   * text frame: RFC 6455 §8.1 makes the receiver fail the connection for that.
   */
  text: boolean
  /** True while sink.onOpen runs, so a close from inside it is reported after connId is known. */
  opening: boolean
  closePending: boolean
  readonly listener: UwsWsListener

  constructor(listener: UwsWsListener, remoteAddress: string, remotePort: number) {
    this.transport = listener.proto
    this.remoteAddress = remoteAddress
    this.remotePort = remotePort
    this.connId = -1
    this.closed = false
    this.ws = null
    this.text = true
    this.opening = false
    this.closePending = false
    this.listener = listener
  }

  send(data: Buffer | Buffer[]): boolean {
    const ws = this.ws
    if (this.closed || ws === null) return false
    // One SIP message must be one WebSocket message (RFC 7118 §5): join the pieces.
    const msg = Array.isArray(data) ? (data.length === 1 ? data[0]! : Buffer.concat(data)) : data
    const stats = this.listener.stats
    // uWS itself refuses (returns DROPPED) when getBufferedAmount() > maxBackpressure, so a slow
    // reader costs at most that much memory; we count the drop and let SIP retransmission or the
    // transaction timeout deal with the loss, like a full UDP socket buffer.
    const r = ws.send(msg, !this.text || !isUtf8(msg), false)
    if (r === UWS_SEND_DROPPED) {
      stats.dropped++
      return false
    }
    stats.messagesOut++
    stats.bytesOut += msg.length
    return true
  }

  ping(): boolean {
    const ws = this.ws
    if (this.closed || ws === null) return false
    return ws.ping() !== UWS_SEND_DROPPED
  }

  close(): void {
    const ws = this.ws
    if (this.closed || ws === null) return
    this.closed = true
    // end() sends a close frame (1000) and runs our close handler synchronously.
    ws.end(1000)
  }
}

class UwsWsListener implements WsListener {
  readonly proto: 'ws' | 'wss'
  readonly address: string
  port: number
  readonly stats: WsListenerStats
  readonly sink: WsSink
  readonly connections: Set<UwsWsConnection>
  readonly app: TemplatedApp
  readonly uws: UwsModule
  listenSocket: us_listen_socket | null
  closed: boolean

  constructor(uws: UwsModule, app: TemplatedApp, opts: WsListenerOptions) {
    this.proto = opts.proto
    this.address = opts.address
    this.port = opts.port
    this.stats = emptyStats()
    this.sink = opts.sink
    this.connections = new Set()
    this.app = app
    this.uws = uws
    this.listenSocket = null
    this.closed = false
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    if (this.listenSocket !== null) {
      this.uws.us_listen_socket_close(this.listenSocket)
      this.listenSocket = null
    }
    // 1001 "going away" (RFC 6455 §7.4.1). Each end() runs the close handler, which removes the
    // connection from the set, so iterate over a copy.
    for (const conn of [...this.connections]) {
      const ws = conn.ws
      if (ws === null) continue
      conn.closed = true
      ws.end(1001)
    }
    // uWS >= 20.2x has app.close(): closes whatever sockets remain in the context (e.g. peers
    // still mid-handshake) so nothing keeps the event loop alive. Not in the shipped typings.
    const closable = this.app as unknown as { close?: () => void }
    if (typeof closable.close === 'function') closable.close()
  }

  // --- uWS handlers (arrow-free methods bound once in behavior()) ---

  upgrade(res: HttpResponse, req: HttpRequest, context: us_socket_context_t): void {
    // RFC 6455 §4.4: an unsupported version gets 426 and the versions we do speak.
    const version = req.getHeader('sec-websocket-version')
    if (version !== '13') {
      this.stats.rejected++
      res.writeStatus('426 Upgrade Required').writeHeader('Sec-WebSocket-Version', '13')
        .end('WebSocket version 13 required\n', true)
      return
    }
    const key = req.getHeader('sec-websocket-key')
    let protocols = req.getHeader('sec-websocket-protocol')
    if (!offersSipSubprotocol(protocols)) protocols = allHeaderValues(req, 'sec-websocket-protocol')
    if (!offersSipSubprotocol(protocols)) {
      // RFC 7118 §4 requires the client to offer "sip" and the server to select it. RFC 6455
      // §4.2.1 says a handshake the server cannot accept is answered with an HTTP error "such as
      // 400 Bad Request". 426 is not right here: it means "switch to another protocol" (RFC 9110
      // §15.5.22) and RFC 6455 §4.4 reserves it for a Sec-WebSocket-Version mismatch; the client
      // already speaks WebSocket, its request simply lacks the subprotocol we serve. Accepting
      // without a subprotocol (the other RFC 6455 option) would leave a non-SIP peer connected.
      this.stats.rejected++
      res.writeStatus('400 Bad Request').end('WebSocket subprotocol "sip" required (RFC 7118)\n', true)
      return
    }
    const extensions = req.getHeader('sec-websocket-extensions')
    // Decoded once here, not per message. uWS 20.30 has no remote-port accessor; newer builds
    // may, so probe for one and fall back to 0.
    const portFn = (res as { getRemotePort?: () => number }).getRemotePort
    const remotePort = typeof portFn === 'function' ? portFn.call(res) : 0
    const conn = new UwsWsConnection(this, formatRemoteAddress(res.getRemoteAddress()), remotePort)
    res.upgrade<UserData>({ conn }, key, SIP_SUBPROTOCOL, extensions, context)
  }

  open(ws: WebSocket<UserData>): void {
    const conn = ws.getUserData().conn
    conn.ws = ws
    this.connections.add(conn)
    this.stats.opened++
    this.stats.connections++
    conn.opening = true
    try {
      conn.connId = this.sink.onOpen(conn)
    } finally {
      conn.opening = false
    }
    if (conn.closePending) this.sink.onClose(conn.connId)
  }

  message(ws: WebSocket<UserData>, data: ArrayBuffer, isBinary: boolean): void {
    const conn = ws.getUserData().conn
    if (conn.closed) return
    conn.text = !isBinary
    const len = data.byteLength
    if (len <= 4 && isCrlfOnly(data)) {
      // RFC 5626 §3.5.1 keep-alive as sent by SIP over WebSocket stacks (SIP.js): a CRLFCRLF
      // "ping" is answered with a single CRLF "pong"; neither is a SIP message for the engine.
      if (len === 4) {
        this.stats.keepalives++
        ws.send(CRLF, isBinary, false)
      }
      return
    }
    this.stats.messagesIn++
    this.stats.bytesIn += len
    // The ArrayBuffer dies with this callback: one copy into memory the sink owns.
    this.sink.onMessage(conn.connId, Buffer.from(new Uint8Array(data)))
  }

  pong(ws: WebSocket<UserData>): void {
    const conn = ws.getUserData().conn
    if (!conn.closed && !conn.opening) this.sink.onPong?.(conn.connId)
  }

  closeHandler(ws: WebSocket<UserData>): void {
    const conn = ws.getUserData().conn
    conn.closed = true
    conn.ws = null
    if (!this.connections.delete(conn)) return
    this.stats.closed++
    this.stats.connections--
    if (conn.opening) {
      conn.closePending = true
      return
    }
    this.sink.onClose(conn.connId)
  }

  /** Plain HTTP or an unknown path on the WebSocket port. */
  other(res: HttpResponse, req: HttpRequest, path: string | undefined): void {
    this.stats.rejected++
    if (path !== undefined && req.getUrl() !== path) {
      res.writeStatus('404 Not Found').end('', true)
      return
    }
    // RFC 9110 §15.5.22: 426 must name the protocol to upgrade to.
    res.writeStatus('426 Upgrade Required').writeHeader('Upgrade', 'websocket').writeHeader('Connection', 'Upgrade')
      .end('SIP over WebSocket (RFC 7118) only\n', true)
  }
}

function allHeaderValues(req: HttpRequest, name: string): string {
  let out = ''
  req.forEach((k, v) => {
    if (k === name) out = out.length === 0 ? v : `${out},${v}`
  })
  return out
}

function isCrlfOnly(data: ArrayBuffer): boolean {
  const b = new Uint8Array(data)
  for (let i = 0; i < b.length; i++) if (b[i] !== 0x0d && b[i] !== 0x0a) return false
  return true
}

function validate(opts: WsListenerOptions): void {
  if (opts.proto !== 'ws' && opts.proto !== 'wss') {
    throw wsError('ERR_WS_OPTIONS', `WebSocket listener proto must be "ws" or "wss", got ${String(opts.proto)}`)
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
    throw wsError('ERR_WS_OPTIONS', `WebSocket listener port must be 0..65535, got ${String(opts.port)}`)
  }
  if (typeof opts.address !== 'string' || opts.address.length === 0) {
    throw wsError('ERR_WS_OPTIONS', 'WebSocket listener address is required')
  }
  if (!Number.isInteger(opts.maxMessageSize) || opts.maxMessageSize < 1) {
    throw wsError('ERR_WS_OPTIONS', `WebSocket maxMessageSize must be a positive integer, got ${String(opts.maxMessageSize)}`)
  }
  if (!(opts.idleTimeoutMs >= 0)) {
    throw wsError('ERR_WS_OPTIONS', `WebSocket idleTimeoutMs must be >= 0, got ${String(opts.idleTimeoutMs)}`)
  }
  if (opts.maxBackpressure !== undefined && !(Number.isInteger(opts.maxBackpressure) && opts.maxBackpressure > 0)) {
    throw wsError('ERR_WS_OPTIONS', `WebSocket maxBackpressure must be a positive integer, got ${String(opts.maxBackpressure)}`)
  }
  if (opts.path !== undefined && !opts.path.startsWith('/')) {
    throw wsError('ERR_WS_OPTIONS', `WebSocket path must start with "/", got ${opts.path}`)
  }
  if (opts.proto === 'wss' && (opts.tls === undefined || !opts.tls.cert || !opts.tls.key)) {
    throw wsError('ERR_WS_OPTIONS', 'a wss listener needs tls.cert and tls.key (PEM file paths)')
  }
}

async function createApp(uws: UwsModule, opts: WsListenerOptions): Promise<TemplatedApp> {
  if (opts.proto === 'ws') return uws.App()
  const tls = opts.tls!
  // uWS only says "App construction failed" for a bad key/cert: check the files first so the
  // operator is told which one is the problem.
  for (const [what, file] of [['certificate', tls.cert], ['key', tls.key]] as const) {
    try {
      await access(file, fsConstants.R_OK)
    } catch (err) {
      throw wsError('ERR_WS_TLS_CONFIG', `wss ${what} file ${file} is not readable`, err)
    }
  }
  try {
    return uws.SSLApp({
      cert_file_name: tls.cert,
      key_file_name: tls.key,
      ...(tls.passphrase !== undefined ? { passphrase: tls.passphrase } : {}),
    })
  } catch (err) {
    throw wsError('ERR_WS_TLS_CONFIG',
      `wss certificate ${tls.cert} / key ${tls.key} could not be loaded (not PEM, mismatched, or wrong passphrase)`, err)
  }
}

/**
 * Starts a WS or WSS listener for SIP over WebSocket (RFC 7118). Resolves once listening; the
 * actual port (for port 0) is in the result. Rejects with code ERR_WS_OPTIONS, ERR_WS_TLS_CONFIG,
 * ERR_WS_LISTEN or ERR_UWS_UNAVAILABLE.
 */
export async function startWsListener(opts: WsListenerOptions): Promise<WsListener> {
  validate(opts)
  const uws = loadUws()
  const app = await createApp(uws, opts)
  const listener = new UwsWsListener(uws, app, opts)
  const idle = uwsIdleTimeoutSeconds(opts.idleTimeoutMs)
  const behavior: WebSocketBehavior<UserData> = {
    compression: uws.DISABLED,
    maxPayloadLength: opts.maxMessageSize,
    maxBackpressure: opts.maxBackpressure ?? DEFAULT_WS_MAX_BACKPRESSURE,
    closeOnBackpressureLimit: 0,
    idleTimeout: idle,
    // Pings keep NAT bindings open and detect dead peers: uWS pings a connection that has been
    // quiet for about half the timeout and closes it when nothing (not even the pong) arrives
    // within the timeout. Measured with 8 s: pinged twice, a silent peer closed after ~8 s.
    sendPingsAutomatically: idle > 0,
    maxLifetime: 0,
    upgrade: (res, req, context) => listener.upgrade(res, req, context),
    open: ws => listener.open(ws),
    message: (ws, data, isBinary) => listener.message(ws, data, isBinary),
    close: ws => listener.closeHandler(ws),
    pong: ws => listener.pong(ws),
  }
  const path = opts.path
  app.ws(path ?? '/*', behavior)
  app.any('/*', (res, req) => listener.other(res, req, path))

  const listenSocket = await new Promise<us_listen_socket | false>(resolve => {
    // Exclusive: a second process on the same port is an error, not a silent SO_REUSEPORT share.
    ;(app as unknown as ExclusiveListen<us_listen_socket>).listen(opts.address, opts.port, LIBUS_LISTEN_EXCLUSIVE_PORT, ls => resolve(ls))
  })
  if (listenSocket === false) {
    listener.close()
    throw wsError('ERR_WS_LISTEN',
      `cannot listen for ${opts.proto} on ${opts.address} port ${opts.port} (address in use or not local?)`)
  }
  listener.listenSocket = listenSocket
  listener.port = uws.us_socket_local_port(listenSocket as unknown as us_socket)
  return listener
}
