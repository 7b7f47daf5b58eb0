// Helpers for the cross-package tests: SIP request text, UDP/TCP/TLS/WS clients that collect
// whole responses, throw-away certificates, and child-process helpers. Every wait is bounded.
import { createSocket, type Socket as UdpSocket } from 'node:dgram'
import { connect as netConnect, type Socket } from 'node:net'
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls'
import { execFileSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes, createHash } from 'node:crypto'

let seq = 0
export function uniqueCallId(prefix = 't'): string {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${++seq}@test`
}

export interface RequestOptions {
  method?: string
  uri?: string
  callId?: string | null
  transport?: string
  host?: string
  port?: number
  extraHeaders?: string[]
  body?: string
  contentLength?: number
}

export function sipRequest(o: RequestOptions = {}): string {
  const method = o.method ?? 'OPTIONS'
  const uri = o.uri ?? 'sip:127.0.0.1'
  const host = o.host ?? '127.0.0.1'
  const port = o.port ?? 5999
  const body = o.body ?? ''
  const lines = [
    `${method} ${uri} SIP/2.0`,
    `Via: SIP/2.0/${o.transport ?? 'UDP'} ${host}:${port};branch=z9hG4bK${randomBytes(6).toString('hex')};rport`,
    'Max-Forwards: 70',
    `From: <sip:tester@${host}>;tag=${randomBytes(4).toString('hex')}`,
    `To: <${uri}>`,
  ]
  if (o.callId !== null) lines.push(`Call-ID: ${o.callId ?? uniqueCallId()}`)
  lines.push(`CSeq: 1 ${method}`)
  for (const h of o.extraHeaders ?? []) lines.push(h)
  lines.push(`Content-Length: ${o.contentLength ?? Buffer.byteLength(body)}`)
  return lines.join('\r\n') + '\r\n\r\n' + body
}

export interface SipResponse { status: number; reason: string; callId: string | undefined; raw: string; headers: Map<string, string> }

export function parseResponse(raw: string): SipResponse {
  const end = raw.indexOf('\r\n\r\n')
  const head = end < 0 ? raw : raw.slice(0, end)
  const lines = head.split('\r\n')
  const m = /^SIP\/2\.0 (\d{3}) ?(.*)$/.exec(lines[0] ?? '')
  const headers = new Map<string, string>()
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':')
    if (i > 0) {
      const k = l.slice(0, i).trim().toLowerCase()
      if (!headers.has(k)) headers.set(k, l.slice(i + 1).trim())
    }
  }
  return { status: m ? Number(m[1]) : 0, reason: m ? m[2]! : '', callId: headers.get('call-id') ?? headers.get('i'), raw, headers }
}

/** Splits a byte stream into whole SIP messages (Content-Length framing). */
export class TestFramer {
  buf = Buffer.alloc(0)
  push(chunk: Buffer): string[] {
    this.buf = Buffer.concat([this.buf, chunk])
    const out: string[] = []
    for (;;) {
      while (this.buf.length >= 2 && this.buf[0] === 13 && this.buf[1] === 10) this.buf = this.buf.subarray(2)
      const end = this.buf.indexOf('\r\n\r\n')
      if (end < 0) break
      const head = this.buf.subarray(0, end).toString('latin1')
      const cl = /\r\n(?:content-length|l)\s*:\s*(\d+)/i.exec('\r\n' + head)
      const total = end + 4 + (cl ? Number(cl[1]) : 0)
      if (this.buf.length < total) break
      out.push(this.buf.subarray(0, total).toString('latin1'))
      this.buf = this.buf.subarray(total)
    }
    return out
  }
}

function timeout<T>(ms: number, what: string): Promise<T> {
  return new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms).unref())
}

/** A UDP client that collects responses by Call-ID. */
export class UdpClient {
  readonly sock: UdpSocket
  readonly responses = new Map<string, SipResponse[]>()
  readonly waiters = new Map<string, (r: SipResponse) => void>()
  received = 0
  constructor(family: 4 | 6 = 4) {
    this.sock = createSocket(family === 6 ? 'udp6' : 'udp4')
    this.sock.on('message', m => {
      this.received++
      const r = parseResponse(m.toString('latin1'))
      const id = r.callId ?? ''
      const list = this.responses.get(id) ?? []
      list.push(r)
      this.responses.set(id, list)
      const w = this.waiters.get(id)
      if (w) { this.waiters.delete(id); w(r) }
    })
  }
  async bind(address = '127.0.0.1'): Promise<number> {
    await new Promise<void>(r => this.sock.bind(0, address, () => r()))
    return this.sock.address().port
  }
  send(text: string | Buffer, port: number, host = '127.0.0.1'): void {
    this.sock.send(typeof text === 'string' ? Buffer.from(text, 'latin1') : text, port, host)
  }
  /** Sends and waits for the response with the same Call-ID (retransmitting like a UAC, bounded). */
  async request(text: string, port: number, host = '127.0.0.1', ms = 3000): Promise<SipResponse> {
    const id = parseRequestCallId(text)
    const existing = this.responses.get(id)
    if (existing?.length) return existing[0]!
    const p = new Promise<SipResponse>(r => this.waiters.set(id, r))
    this.send(text, port, host)
    let t = 500
    const retrans = setInterval(() => { this.send(text, port, host); t *= 2 }, t)
    try {
      return await Promise.race([p, timeout<SipResponse>(ms, `UDP response for ${id}`)])
    } finally {
      clearInterval(retrans)
      this.waiters.delete(id)
    }
  }
  close(): void { try { this.sock.close() } catch { /* closed */ } }
}

export function parseRequestCallId(text: string): string {
  const m = /\r\n(?:call-id|i)\s*:\s*([^\r\n]+)/i.exec(text)
  return m ? m[1]!.trim() : ''
}

/** A stream (TCP/TLS) client collecting whole messages. */
export class StreamClient {
  readonly sock: Socket
  readonly framer = new TestFramer()
  readonly messages: SipResponse[] = []
  rawBytes: Buffer[] = []
  closed = false
  #waiters: Array<() => void> = []
  constructor(sock: Socket) {
    this.sock = sock
    sock.on('data', (c: Buffer) => {
      this.rawBytes.push(c)
      for (const m of this.framer.push(c)) this.messages.push(parseResponse(m))
      this.#wake()
    })
    sock.on('close', () => { this.closed = true; this.#wake() })
    sock.on('error', () => { /* seen as close */ })
  }
  #wake(): void { const w = this.#waiters; this.#waiters = []; for (const f of w) f() }
  static async tcp(port: number, host = '127.0.0.1'): Promise<StreamClient> {
    const s = netConnect({ port, host })
    await new Promise<void>((resolve, reject) => { s.once('connect', resolve); s.once('error', reject) })
    return new StreamClient(s)
  }
  static async tls(port: number, opts: ConnectionOptions = {}, host = '127.0.0.1'): Promise<StreamClient> {
    const s = tlsConnect({ port, host, rejectUnauthorized: false, ...opts })
    await new Promise<void>((resolve, reject) => { s.once('secureConnect', resolve); s.once('error', reject) })
    return new StreamClient(s)
  }
  write(data: string | Buffer): void { this.sock.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data) }
  /** Waits until `n` messages have arrived in total (or the connection closed), bounded. */
  async waitFor(n: number, ms = 3000): Promise<SipResponse[]> {
    const deadline = Date.now() + ms
    while (this.messages.length < n && !this.closed) {
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out waiting for ${n} messages (have ${this.messages.length})`)
      await Promise.race([new Promise<void>(r => this.#waiters.push(r)), new Promise<void>(r => setTimeout(r, Math.min(left, 200)).unref())])
    }
    return this.messages
  }
  async waitClosed(ms = 3000): Promise<boolean> {
    const deadline = Date.now() + ms
    while (!this.closed && Date.now() < deadline) await new Promise(r => setTimeout(r, 20))
    return this.closed
  }
  close(): void { this.sock.destroy() }
}

/** A minimal RFC 6455 client (text frames, masking, subprotocol `sip`) over TCP or TLS. */
export class WsClient {
  readonly sock: Socket
  readonly messages: SipResponse[] = []
  readonly protocol: string
  closed = false
  /** Ping frames received (RFC 6455 §5.5.2). */
  pings = 0
  /** Answer pings with pongs (as browsers do); false: a silent peer. */
  answerPings = true
  #buf = Buffer.alloc(0)
  constructor(sock: Socket, protocol: string, rest: Buffer) {
    this.sock = sock
    this.protocol = protocol
    sock.on('data', (c: Buffer) => this.#onData(c))
    sock.on('close', () => { this.closed = true })
    sock.on('error', () => { /* seen as close */ })
    if (rest.length > 0) this.#onData(rest)
  }
  static async connect(port: number, secure: boolean, host = '127.0.0.1', path = '/'): Promise<WsClient> {
    const s: Socket = secure ? tlsConnect({ port, host, rejectUnauthorized: false }) : netConnect({ port, host })
    await new Promise<void>((resolve, reject) => { s.once(secure ? 'secureConnect' : 'connect', resolve); s.once('error', reject) })
    const key = randomBytes(16).toString('base64')
    s.write(`GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: sip\r\n\r\n`)
    let buf = Buffer.alloc(0)
    const head = await Promise.race([
      new Promise<string>((resolve, reject) => {
        const onData = (c: Buffer): void => {
          buf = Buffer.concat([buf, c])
          const end = buf.indexOf('\r\n\r\n')
          if (end >= 0) { s.off('data', onData); resolve(buf.subarray(0, end).toString('latin1')); buf = buf.subarray(end + 4) }
        }
        s.on('data', onData)
        s.once('close', () => reject(new Error('closed during WebSocket handshake')))
      }),
      timeout<string>(3000, 'WebSocket handshake'),
    ])
    if (!/^HTTP\/1\.1 101/.test(head)) throw new Error(`WebSocket upgrade refused: ${head.split('\r\n')[0]}`)
    const accept = createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64')
    if (!head.includes(accept)) throw new Error('bad Sec-WebSocket-Accept')
    const proto = /\r\nsec-websocket-protocol:\s*([^\r\n]+)/i.exec(head)?.[1]?.trim() ?? ''
    return new WsClient(s, proto, buf)
  }
  #onData(c: Buffer): void {
    this.#buf = Buffer.concat([this.#buf, c])
    for (;;) {
      const b = this.#buf
      if (b.length < 2) return
      const op = b[0]! & 0x0f
      let len = b[1]! & 0x7f
      let off = 2
      if (len === 126) { if (b.length < 4) return; len = b.readUInt16BE(2); off = 4 }
      else if (len === 127) { if (b.length < 10) return; len = Number(b.readBigUInt64BE(2)); off = 10 }
      if (b.length < off + len) return
      const payload = b.subarray(off, off + len)
      this.#buf = b.subarray(off + len)
      if (op === 1 || op === 2) this.messages.push(parseResponse(payload.toString('latin1')))
      else if (op === 8) { this.closed = true; this.sock.end() }
      else if (op === 9) {
        this.pings++
        if (this.answerPings) this.#frame(0x8a, Buffer.from(payload))
      }
    }
  }
  send(text: string): void {
    this.#frame(0x81, Buffer.from(text, 'latin1'))
  }
  /** One masked frame (client to server, RFC 6455 §5.3); `first` is FIN + opcode. */
  #frame(first: number, data: Buffer): void {
    const mask = randomBytes(4)
    const len = data.length
    const head = len < 126 ? Buffer.from([first, 0x80 | len]) : Buffer.from([first, 0x80 | 126, len >> 8, len & 255])
    const masked = Buffer.alloc(len)
    for (let i = 0; i < len; i++) masked[i] = data[i]! ^ mask[i & 3]!
    if (!this.sock.destroyed) this.sock.write(Buffer.concat([head, mask, masked]))
  }
  async waitFor(n: number, ms = 3000): Promise<SipResponse[]> {
    const deadline = Date.now() + ms
    while (this.messages.length < n && !this.closed && Date.now() < deadline) await new Promise(r => setTimeout(r, 10))
    if (this.messages.length < n) throw new Error(`timed out waiting for ${n} WS messages (have ${this.messages.length})`)
    return this.messages
  }
  close(): void { this.sock.destroy() }
}

/** A temp dir removed by the returned cleanup. */
export function tempDir(prefix = 'sipedge-test-'): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) }
}

/** A self-signed P-256 certificate for `cn` (also as DNS SAN), written to dir/name.{crt,key}. */
export function makeCert(dir: string, name: string, cn: string): { cert: string; key: string } {
  const cert = join(dir, `${name}.crt`)
  const key = join(dir, `${name}.key`)
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-subj', `/CN=${cn}`, '-addext', `subjectAltName=DNS:${cn}`, '-days', '1', '-keyout', key, '-out', cert], { stdio: 'ignore' })
  return { cert, key }
}

/** Waits for a line on a child's stdout/stderr matching `re`; returns it. */
export function waitForOutput(child: ChildProcess, re: RegExp, ms = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let acc = ''
    const t = setTimeout(() => { cleanup(); reject(new Error(`timed out waiting for ${re} in output:\n${acc}`)) }, ms)
    const onData = (c: Buffer): void => {
      acc += c.toString()
      const lines = acc.split('\n')
      for (const l of lines) if (re.test(l)) { cleanup(); resolve(l); return }
    }
    const onExit = (code: number | null): void => { cleanup(); reject(new Error(`process exited (${code}) before ${re}:\n${acc}`)) }
    const cleanup = (): void => {
      clearTimeout(t)
      child.stdout?.off('data', onData)
      child.stderr?.off('data', onData)
      child.off('exit', onExit)
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', onData)
    child.once('exit', onExit)
  })
}

export function waitForExit(child: ChildProcess, ms = 10_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode })
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`process ${child.pid} did not exit within ${ms} ms`)), ms)
    child.once('exit', (code, signal) => { clearTimeout(t); resolve({ code, signal }) })
  })
}

/** Kills a child (and, when it leads a process group, the group) if it is still running. */
export function killHard(child: ChildProcess, group = false): void {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return
  try { if (group) process.kill(-child.pid, 'SIGKILL'); else child.kill('SIGKILL') } catch { /* gone */ }
}

export async function sleep(ms: number): Promise<void> { await new Promise(r => setTimeout(r, ms)) }

/**
 * `todo` option of a regression test that waits for a fix in the proxy core (issue #16):
 * "needs core fix: <reason>". With SIPEDGE_CORE_TODO=off the test runs as a normal one, to see
 * which of them a core change has fixed (then remove the todo).
 */
export function coreTodo(reason: string): string | false {
  return process.env['SIPEDGE_CORE_TODO'] === 'off' ? false : `needs core fix: ${reason}`
}
