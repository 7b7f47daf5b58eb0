// Minimal RFC 6455 WebSocket client for tests, over node:net / node:tls (Node 20's global
// WebSocket is behind a flag). It does the opening handshake (key, accept check, subprotocols),
// sends masked frames (text, binary, fragmented, ping, close), reassembles fragmented server
// messages, answers pings (can be turned off), and reports how the connection ended.
// Every wait has a timeout so a broken server fails a test instead of hanging it.
import { createHash, randomBytes } from 'node:crypto'
import { connect as netConnect } from 'node:net'
import type { Socket } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import type { ConnectionOptions } from 'node:tls'
import type { WsConnection, WsSink } from '../../dist/ws-types.js'

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

/**
 * Bound of every wait unless a test gives its own. Generous: a loaded 2-core host stalls a
 * process for seconds, and a wait that is satisfied ends at once, so only a broken run pays.
 */
const DEFAULT_TIMEOUT_MS = 15_000

export const OP_CONT = 0x0
export const OP_TEXT = 0x1
export const OP_BINARY = 0x2
export const OP_CLOSE = 0x8
export const OP_PING = 0x9
export const OP_PONG = 0xa

export interface WsClientOptions {
  host: string
  port: number
  tls?: boolean
  tlsOptions?: ConnectionOptions
  path?: string
  /** Offered subprotocols; default ['sip']. An empty list sends no Sec-WebSocket-Protocol. */
  protocols?: string[]
  /** Replaces the Sec-WebSocket-Version value (default 13). */
  version?: string
  extraHeaders?: Record<string, string>
  /** Answer server pings automatically (default true). */
  autoPong?: boolean
  timeoutMs?: number
}

export interface WsMessage {
  readonly binary: boolean
  readonly data: Buffer
  readonly text: string
}

export interface WsCloseInfo {
  /** Close code from the server's close frame, or 1006 if the TCP connection just ended. */
  readonly code: number
  readonly reason: string
  readonly closeFrameReceived: boolean
}

/** The server answered the opening handshake with something other than 101. */
export class HandshakeRefused extends Error {
  readonly statusCode: number
  readonly statusLine: string
  readonly headers: Record<string, string>
  constructor(statusLine: string, headers: Record<string, string>) {
    super(`WebSocket handshake refused: ${statusLine}`)
    this.statusLine = statusLine
    this.statusCode = Number(statusLine.split(' ')[1])
    this.headers = headers
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timeout after ${ms} ms waiting for ${what}`)), ms)
  })
  return Promise.race([p, t]).finally(() => clearTimeout(timer))
}

function parseHead(head: string): { statusLine: string; headers: Record<string, string> } {
  const lines = head.split('\r\n')
  const statusLine = lines[0] ?? ''
  const headers: Record<string, string> = {}
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':')
    if (i <= 0) continue
    const k = line.slice(0, i).trim().toLowerCase()
    const v = line.slice(i + 1).trim()
    headers[k] = headers[k] === undefined ? v : `${headers[k]}, ${v}`
  }
  return { statusLine, headers }
}

export function encodeFrame(opcode: number, payload: Buffer, fin = true, mask = true): Buffer {
  const len = payload.length
  const headLen = 2 + (len < 126 ? 0 : len < 65536 ? 2 : 8) + (mask ? 4 : 0)
  const out = Buffer.allocUnsafe(headLen + len)
  out[0] = (fin ? 0x80 : 0) | opcode
  let o = 2
  if (len < 126) {
    out[1] = len
  } else if (len < 65536) {
    out[1] = 126
    out.writeUInt16BE(len, 2)
    o = 4
  } else {
    out[1] = 127
    out.writeBigUInt64BE(BigInt(len), 2)
    o = 10
  }
  if (mask) {
    out[1] = out[1]! | 0x80
    const key = randomBytes(4)
    key.copy(out, o)
    o += 4
    for (let i = 0; i < len; i++) out[o + i] = payload[i]! ^ key[i & 3]!
  } else {
    payload.copy(out, o)
  }
  return out
}

export class WsTestClient {
  readonly socket: Socket
  readonly protocol: string
  readonly responseHeaders: Record<string, string>
  readonly timeoutMs: number
  autoPong: boolean
  /** Payloads of pings and pongs received from the server. */
  readonly pings: Buffer[] = []
  readonly pongs: Buffer[] = []
  /** Protocol violations seen in server frames (e.g. masked frames); tests expect none. */
  readonly errors: string[] = []
  private readonly queue: WsMessage[] = []
  private readonly waiters: Array<(m: WsMessage | null) => void> = []
  private buf: Buffer = Buffer.alloc(0)
  private fragments: Buffer[] = []
  private fragmentBinary = false
  private closeSent = false
  private closeInfo: WsCloseInfo | null = null
  private closeFrame: { code: number; reason: string } | null = null
  readonly closed: Promise<WsCloseInfo>

  private constructor(socket: Socket, protocol: string, headers: Record<string, string>, rest: Buffer,
    opts: WsClientOptions) {
    this.socket = socket
    this.protocol = protocol
    this.responseHeaders = headers
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS
    this.autoPong = opts.autoPong ?? true
    this.closed = new Promise(resolve => {
      socket.once('close', () => {
        this.closeInfo = this.closeFrame !== null
          ? { code: this.closeFrame.code, reason: this.closeFrame.reason, closeFrameReceived: true }
          : { code: 1006, reason: '', closeFrameReceived: false }
        for (const w of this.waiters.splice(0)) w(null)
        resolve(this.closeInfo)
      })
    })
    socket.on('error', () => { /* surfaced as close 1006 */ })
    socket.on('data', (chunk: Buffer) => this.onData(chunk))
    if (rest.length > 0) this.onData(rest)
  }

  /** Opens a WebSocket; rejects with HandshakeRefused when the server does not answer 101. */
  static async connect(opts: WsClientOptions): Promise<WsTestClient> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS
    const socket: Socket = opts.tls === true
      ? tlsConnect({ host: opts.host, port: opts.port, servername: 'localhost', rejectUnauthorized: false, ...opts.tlsOptions })
      : netConnect({ host: opts.host, port: opts.port })
    socket.setNoDelay(true)
    const key = randomBytes(16).toString('base64')
    const protocols = opts.protocols ?? ['sip']
    const hostHeader = opts.host.includes(':') ? `[${opts.host}]:${opts.port}` : `${opts.host}:${opts.port}`
    const lines = [
      `GET ${opts.path ?? '/'} HTTP/1.1`,
      `Host: ${hostHeader}`,
      'Upgrade: websocket',
      'Connection: Upgrade',
      `Sec-WebSocket-Key: ${key}`,
      `Sec-WebSocket-Version: ${opts.version ?? '13'}`,
    ]
    if (protocols.length > 0) lines.push(`Sec-WebSocket-Protocol: ${protocols.join(', ')}`)
    for (const [k, v] of Object.entries(opts.extraHeaders ?? {})) lines.push(`${k}: ${v}`)
    const connectEvent = opts.tls === true ? 'secureConnect' : 'connect'

    const result = new Promise<WsTestClient>((resolve, reject) => {
      let acc = Buffer.alloc(0)
      const onError = (err: Error): void => { cleanup(); reject(err) }
      const onClose = (): void => { cleanup(); reject(new Error(`connection closed during handshake: ${acc.toString('latin1')}`)) }
      const onData = (chunk: Buffer): void => {
        acc = Buffer.concat([acc, chunk])
        const end = acc.indexOf('\r\n\r\n')
        if (end < 0) return
        cleanup()
        const { statusLine, headers } = parseHead(acc.subarray(0, end).toString('latin1'))
        const rest = acc.subarray(end + 4)
        if (!/^HTTP\/1\.1 101 /.test(statusLine)) {
          socket.destroy()
          reject(new HandshakeRefused(statusLine, headers))
          return
        }
        const expected = createHash('sha1').update(key + GUID).digest('base64')
        if (headers['sec-websocket-accept'] !== expected) {
          socket.destroy()
          reject(new Error(`bad Sec-WebSocket-Accept ${String(headers['sec-websocket-accept'])}`))
          return
        }
        resolve(new WsTestClient(socket, headers['sec-websocket-protocol'] ?? '', headers, rest, opts))
      }
      const cleanup = (): void => {
        socket.off('data', onData)
        socket.off('error', onError)
        socket.off('close', onClose)
      }
      socket.on('data', onData)
      socket.on('error', onError)
      socket.on('close', onClose)
      socket.once(connectEvent, () => socket.write(`${lines.join('\r\n')}\r\n\r\n`))
    })
    try {
      return await withTimeout(result, timeoutMs, 'WebSocket handshake')
    } catch (err) {
      socket.destroy()
      throw err
    }
  }

  get isClosed(): boolean {
    return this.closeInfo !== null
  }

  /** Sends one message; strings as text frames unless binary is set. */
  send(data: string | Buffer, binary = typeof data !== 'string'): void {
    const payload = typeof data === 'string' ? Buffer.from(data, 'utf8') : data
    this.socket.write(encodeFrame(binary ? OP_BINARY : OP_TEXT, payload))
  }

  /** Sends one message split into `pieces` frames (RFC 6455 §5.4). */
  sendFragmented(data: string | Buffer, pieces: number, binary = typeof data !== 'string'): void {
    const payload = typeof data === 'string' ? Buffer.from(data, 'utf8') : data
    const step = Math.ceil(payload.length / pieces)
    for (let i = 0, n = 0; i < payload.length; i += step, n++) {
      const last = i + step >= payload.length
      this.socket.write(encodeFrame(n === 0 ? (binary ? OP_BINARY : OP_TEXT) : OP_CONT, payload.subarray(i, i + step), last))
    }
  }

  sendFrame(opcode: number, payload: Buffer, fin = true): void {
    this.socket.write(encodeFrame(opcode, payload, fin))
  }

  ping(payload: Buffer = Buffer.alloc(0)): void {
    this.socket.write(encodeFrame(OP_PING, payload))
  }

  /** Next message from the server (queued ones first); rejects on timeout or close. */
  async nextMessage(timeoutMs = this.timeoutMs): Promise<WsMessage> {
    const queued = this.queue.shift()
    if (queued !== undefined) return queued
    if (this.closeInfo !== null) throw new Error('connection closed, no message')
    const p = new Promise<WsMessage>((resolve, reject) => {
      this.waiters.push(m => (m === null ? reject(new Error('connection closed before a message arrived')) : resolve(m)))
    })
    return withTimeout(p, timeoutMs, 'a WebSocket message')
  }

  /** Messages already received and not yet taken. */
  get pending(): number {
    return this.queue.length
  }

  /** Starts the closing handshake and waits for the TCP connection to end. */
  async close(code = 1000, reason = '', timeoutMs = this.timeoutMs): Promise<WsCloseInfo> {
    if (this.closeInfo === null && !this.closeSent) {
      this.closeSent = true
      const r = Buffer.from(reason, 'utf8')
      const payload = Buffer.allocUnsafe(2 + r.length)
      payload.writeUInt16BE(code, 0)
      r.copy(payload, 2)
      this.socket.write(encodeFrame(OP_CLOSE, payload))
    }
    try {
      return await this.waitClosed(timeoutMs)
    } catch (err) {
      this.socket.destroy()
      throw err
    }
  }

  waitClosed(timeoutMs = this.timeoutMs): Promise<WsCloseInfo> {
    return withTimeout(this.closed, timeoutMs, 'the connection to close')
  }

  /** Drops the TCP connection without a closing handshake. */
  destroy(): void {
    this.socket.destroy()
  }

  /** Stops reading from the socket, so the server's send buffer fills up. */
  pauseReading(): void {
    this.socket.pause()
  }

  resumeReading(): void {
    this.socket.resume()
  }

  private onData(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk])
    for (;;) {
      const b = this.buf
      if (b.length < 2) return
      const fin = (b[0]! & 0x80) !== 0
      const opcode = b[0]! & 0x0f
      const masked = (b[1]! & 0x80) !== 0
      let len = b[1]! & 0x7f
      let o = 2
      if (len === 126) {
        if (b.length < 4) return
        len = b.readUInt16BE(2)
        o = 4
      } else if (len === 127) {
        if (b.length < 10) return
        len = Number(b.readBigUInt64BE(2))
        o = 10
      }
      let key: Buffer | null = null
      if (masked) {
        // RFC 6455 §5.1: a server MUST NOT mask frames.
        this.errors.push('server sent a masked frame')
        if (b.length < o + 4) return
        key = b.subarray(o, o + 4)
        o += 4
      }
      if (b.length < o + len) return
      let payload = Buffer.from(b.subarray(o, o + len))
      if (key !== null) for (let i = 0; i < payload.length; i++) payload[i] = payload[i]! ^ key[i & 3]!
      this.buf = b.subarray(o + len)
      this.onFrame(fin, opcode, payload)
      payload = Buffer.alloc(0)
    }
  }

  private onFrame(fin: boolean, opcode: number, payload: Buffer): void {
    switch (opcode) {
      case OP_TEXT:
      case OP_BINARY:
        if (this.fragments.length > 0) this.errors.push('new data frame inside a fragmented message')
        this.fragments = [payload]
        this.fragmentBinary = opcode === OP_BINARY
        if (fin) this.deliver()
        return
      case OP_CONT:
        if (this.fragments.length === 0) this.errors.push('continuation frame without a start')
        this.fragments.push(payload)
        if (fin) this.deliver()
        return
      case OP_PING:
        this.pings.push(payload)
        if (this.autoPong && !this.closeSent) this.socket.write(encodeFrame(OP_PONG, payload))
        return
      case OP_PONG:
        this.pongs.push(payload)
        return
      case OP_CLOSE: {
        const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005
        this.closeFrame = { code, reason: payload.subarray(2).toString('utf8') }
        if (!this.closeSent) {
          // RFC 6455 §5.5.1: echo the close, then the server closes TCP.
          this.closeSent = true
          this.socket.write(encodeFrame(OP_CLOSE, payload.subarray(0, 2)))
        }
        this.socket.end()
        return
      }
      default:
        this.errors.push(`unknown opcode ${opcode}`)
    }
  }

  private deliver(): void {
    const data = this.fragments.length === 1 ? this.fragments[0]! : Buffer.concat(this.fragments)
    const binary = this.fragmentBinary
    this.fragments = []
    const msg: WsMessage = { binary, data, text: data.toString('utf8') }
    const w = this.waiters.shift()
    if (w !== undefined) w(msg)
    else this.queue.push(msg)
  }
}

// ---------------------------------------------------------------------------------------------
// A WsSink for tests: records every callback and (by default) echoes each message back.

export type SinkEvent =
  | { type: 'open'; connId: number; remoteAddress: string; remotePort: number; transport: string }
  | { type: 'message'; connId: number; data: Buffer }
  | { type: 'close'; connId: number }

export class RecordingSink implements WsSink {
  echo = true
  nextId = 1
  readonly conns = new Map<number, WsConnection>()
  readonly events: SinkEvent[] = []
  /** Hook run inside onOpen after recording (e.g. to close from within the callback). */
  onOpenHook: ((conn: WsConnection, connId: number) => void) | null = null

  onOpen(conn: WsConnection): number {
    const connId = this.nextId++
    this.conns.set(connId, conn)
    this.events.push({ type: 'open', connId, remoteAddress: conn.remoteAddress, remotePort: conn.remotePort, transport: conn.transport })
    this.onOpenHook?.(conn, connId)
    return connId
  }

  onMessage(connId: number, data: Buffer): void {
    this.events.push({ type: 'message', connId, data })
    if (this.echo) this.conns.get(connId)?.send(data)
  }

  onClose(connId: number): void {
    this.events.push({ type: 'close', connId })
    this.conns.delete(connId)
  }

  count(type: SinkEvent['type'], connId?: number): number {
    let n = 0
    for (const e of this.events) if (e.type === type && (connId === undefined || e.connId === connId)) n++
    return n
  }

  /** Polls (5 ms) until `cond` holds; rejects after timeoutMs. */
  async waitFor(cond: () => boolean, what: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!cond()) {
      if (Date.now() > deadline) throw new Error(`timeout after ${timeoutMs} ms waiting for ${what}`)
      await new Promise(r => setTimeout(r, 5))
    }
  }
}

/** A small but realistic SIP request, as a WebRTC client would send it. */
export function sipRegister(n = 1, callId = `c${n}@test.invalid`): string {
  return [
    'REGISTER sip:example.com SIP/2.0',
    `Via: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKnashds${n};rport`,
    'Max-Forwards: 70',
    'To: <sip:alice@example.com>',
    `From: <sip:alice@example.com>;tag=${n}abc`,
    `Call-ID: ${callId}`,
    `CSeq: ${n} REGISTER`,
    'Contact: <sip:alice@df7jal23ls0d.invalid;transport=ws>;expires=600',
    'Content-Length: 0',
    '',
    '',
  ].join('\r\n')
}
