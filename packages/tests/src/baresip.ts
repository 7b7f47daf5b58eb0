// baresip (Debian's `baresip-core`, 1.0.0) as a real phone in tests: one process per phone,
// headless, each with its own config directory in a temp dir and its own ports on 127.0.0.1.
//
// - Commands and events go through the `ctrl_tcp` module (netstring-framed JSON:
//   {"command","params","token"} -> {"response":true,"ok","data","token"}; events
//   {"event":true,"type":"REGISTER_OK"|"CALL_ESTABLISHED"|"CALL_CLOSED"|...}).
// - Incoming MESSAGE text is printed on the UI only (no ctrl_tcp event in 1.0): the `cons`
//   module serves the UI output over TCP, which `waitConsole` reads.
// - No audio device: `aubridge` is both player and source (the phone plays back to itself what
//   it receives), PCMU/PCMA by `g711`. `ausine` cannot be used: it only does 48 kHz and 1.0 has
//   no resampler, so starting the call's audio fails.
// - Accounts are added with `uanew` once the control connection is up, so that the test sees
//   the REGISTERING / REGISTER_OK events of the first registration.
// - baresip binds SIP on sip_listen (UDP and TCP) and TLS on the port after it: leave a gap.
// Every wait is bounded; every process started here is stopped by `stop()`.
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { join } from 'node:path'

export const BARESIP = process.env['BARESIP'] ?? '/usr/bin/baresip'
export const BARESIP_MODULES = process.env['BARESIP_MODULES'] ?? '/usr/lib/baresip/modules'
const MODULES = ['g711.so', 'aubridge.so', 'menu.so', 'contact.so', 'ctrl_tcp.so', 'cons.so']

/** Why baresip cannot be used here (binary or a module missing), or null when it can. */
export function baresipMissing(): string | null {
  if (!existsSync(BARESIP)) return `baresip not installed (${BARESIP}; Debian package baresip-core)`
  const gone = MODULES.filter(m => !existsSync(join(BARESIP_MODULES, m)))
  return gone.length > 0 ? `baresip modules missing in ${BARESIP_MODULES}: ${gone.join(', ')}` : null
}

export interface BaresipEvent {
  type: string
  class?: string
  accountaor?: string
  direction?: string
  peeruri?: string
  id?: string
  param?: string
  [k: string]: unknown
}

export interface AccountOptions {
  /** Address of record, e.g. `sip:alice@example.com`. */
  aor: string
  transport?: 'udp' | 'tcp' | 'tls'
  password?: string
  /** Outbound proxy URI (`sip:127.0.0.1:5060`); `;transport=` is added from `transport`. */
  outbound?: string
  /** Registration interval in seconds; 0: do not register. */
  regint?: number
  answermode?: 'auto' | 'manual'
}

/** The accounts line baresip 1.0 understands (the same syntax as its `accounts` file). */
export function accountLine(o: AccountOptions): string {
  const tp = o.transport ?? 'udp'
  const params = tp === 'udp' ? '' : `;transport=${tp}`
  let line = `<${o.aor}${params}>`
  if (o.password !== undefined) line += `;auth_pass=${o.password}`
  if (o.outbound !== undefined) line += `;outbound="${o.outbound}${params}"`
  line += `;answermode=${o.answermode ?? 'auto'};regint=${o.regint ?? 60}`
  return line
}

export interface PhoneOptions {
  name: string
  /** Parent directory; the phone's config dir is dir/name. */
  dir: string
  /** sip_listen port (UDP and TCP); TLS is bound on sipPort + 1. */
  sipPort: number
  ctrlPort: number
  consPort: number
  /** CA bundle the phone trusts for TLS (sip_cafile). */
  caFile?: string
  /** DNS server (host:port) the phone asks instead of the system's. */
  dnsServer?: string
  /** Contacts, `"Name" <sip:...>`; the first is the current one (target of `message`). */
  contacts?: string[]
}

export class BaresipPhone {
  readonly name: string
  readonly dir: string
  readonly events: BaresipEvent[] = []
  readonly proc: ChildProcess
  private ctrl: Socket | null = null
  private cons: Socket | null = null
  private buf = Buffer.alloc(0)
  private out = ''
  private console = ''
  private token = 0
  private readonly pending = new Map<string, (r: { ok: boolean; data: string }) => void>()
  private wakers: Array<() => void> = []

  private constructor(o: PhoneOptions, proc: ChildProcess, dir: string) {
    this.name = o.name
    this.dir = dir
    this.proc = proc
    const keep = (c: Buffer): void => { this.out = (this.out + c.toString('latin1')).slice(-16_000); this.wake() }
    proc.stdout!.on('data', keep)
    proc.stderr!.on('data', keep)
    proc.on('exit', () => this.wake())
  }

  /** Writes the config dir and starts the phone; resolves once its control port answers. */
  static async start(o: PhoneOptions): Promise<BaresipPhone> {
    const dir = join(o.dir, o.name)
    mkdirSync(dir, { recursive: true })
    const lines = [
      'poll_method epoll',
      `sip_listen 127.0.0.1:${o.sipPort}`,
      ...(o.caFile !== undefined ? [`sip_cafile ${o.caFile}`] : []),
      // Contact and SDP addresses: loopback, never the host's external interface.
      'net_interface 127.0.0.1',
      ...(o.dnsServer !== undefined ? [`dns_server ${o.dnsServer}`] : []),
      'call_local_timeout 60',
      'call_max_calls 4',
      `audio_player aubridge,${o.name}`,
      `audio_source aubridge,${o.name}`,
      `audio_alert aubridge,${o.name}`,
      'audio_level no',
      'rtp_stats no',
      `module_path ${BARESIP_MODULES}`,
      'module g711.so',
      'module aubridge.so',
      'module_app menu.so',
      'module_app contact.so',
      'module_app ctrl_tcp.so',
      'module cons.so',
      `ctrl_tcp_listen 127.0.0.1:${o.ctrlPort}`,
      `cons_listen 127.0.0.1:${o.consPort}`,
      // menu: no redial, no status line timer noise beyond what it prints anyway
      'redial_attempts 0',
    ]
    writeFileSync(join(dir, 'config'), lines.join('\n') + '\n')
    writeFileSync(join(dir, 'accounts'), '')
    writeFileSync(join(dir, 'contacts'), (o.contacts ?? []).join('\n') + '\n')
    const first = o.contacts?.[0] !== undefined ? /<([^>]+)>/.exec(o.contacts[0])?.[1] : undefined
    if (first !== undefined) writeFileSync(join(dir, 'current_contact'), first)
    const proc = spawn(BARESIP, ['-f', dir], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
    // a test process that dies must not leave phones holding their ports
    const orphan = (): void => { if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL') }
    process.once('exit', orphan)
    proc.once('exit', () => process.off('exit', orphan))
    const p = new BaresipPhone(o, proc, dir)
    try {
      p.ctrl = await p.connectWhenUp(o.ctrlPort, 'ctrl_tcp')
      p.ctrl.on('data', (c: Buffer) => p.onCtrl(c))
      p.cons = await p.connectWhenUp(o.consPort, 'cons')
      p.cons.on('data', (c: Buffer) => { p.console += c.toString('utf8'); p.wake() })
    } catch (err) {
      await p.stop()
      throw err
    }
    return p
  }

  private async connectWhenUp(port: number, what: string, ms = 8_000): Promise<Socket> {
    const deadline = Date.now() + ms
    for (;;) {
      if (this.exited) throw new Error(`${this.name}: baresip exited (${this.proc.exitCode ?? this.proc.signalCode}) before ${what} was up:\n${this.output()}`)
      const s = connect(port, '127.0.0.1')
      const ok = await new Promise<boolean>(resolve => {
        s.once('connect', () => resolve(true))
        s.once('error', () => resolve(false))
      })
      if (ok) {
        s.on('error', () => { /* seen as close */ })
        s.on('close', () => this.wake())
        return s
      }
      s.destroy()
      if (Date.now() > deadline) throw new Error(`${this.name}: ${what} on 127.0.0.1:${port} not up within ${ms} ms:\n${this.output()}`)
      await new Promise(r => setTimeout(r, 50))
    }
  }

  get exited(): boolean { return this.proc.exitCode !== null || this.proc.signalCode !== null }

  private wake(): void { const w = this.wakers; this.wakers = []; for (const f of w) f() }

  /** Netstrings: `len:payload,`. */
  private onCtrl(c: Buffer): void {
    this.buf = Buffer.concat([this.buf, c])
    for (;;) {
      const colon = this.buf.indexOf(0x3a)
      if (colon < 0) return
      const n = Number(this.buf.subarray(0, colon).toString('latin1'))
      if (!Number.isInteger(n) || this.buf.length < colon + 1 + n + 1) return
      const text = this.buf.subarray(colon + 1, colon + 1 + n).toString('utf8')
      this.buf = this.buf.subarray(colon + 1 + n + 1)
      let m: Record<string, unknown>
      try { m = JSON.parse(text) as Record<string, unknown> } catch { continue }
      if (m['response'] === true) {
        const tok = String(m['token'] ?? '')
        const f = this.pending.get(tok)
        this.pending.delete(tok)
        f?.({ ok: m['ok'] === true, data: String(m['data'] ?? '') })
      } else if (m['event'] === true) {
        this.events.push(m as BaresipEvent)
      }
      this.wake()
    }
  }

  /** Runs a menu command (long form, without the slash); bounded. */
  async command(cmd: string, params = '', ms = 5_000): Promise<{ ok: boolean; data: string }> {
    if (this.ctrl === null) throw new Error(`${this.name}: no control connection`)
    const token = `${this.name}-${++this.token}`
    const json = JSON.stringify({ command: cmd, params, token })
    let answer: { ok: boolean; data: string } | undefined
    this.pending.set(token, r => { answer = r })
    this.ctrl.write(`${Buffer.byteLength(json)}:${json},`)
    return this.until(() => answer, ms, `answer to ${cmd} ${params}`)
  }

  /** Waits (bounded) until `check` returns something other than undefined, re-checking on every event/output. */
  async until<T>(check: () => T | undefined, ms: number, what: string): Promise<T> {
    const deadline = Date.now() + ms
    for (;;) {
      const v = check()
      if (v !== undefined) return v
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`${this.name}: timed out after ${ms} ms waiting for ${what}\nevents: ${this.events.map(e => e.type + (e.param !== undefined ? `(${e.param})` : '')).join(', ')}\noutput tail:\n${this.output().slice(-3000)}`)
      if (this.exited) throw new Error(`${this.name}: baresip exited while waiting for ${what}:\n${this.output().slice(-3000)}`)
      await new Promise<void>(r => {
        const t = setTimeout(r, Math.min(left, 250))
        this.wakers.push(() => { clearTimeout(t); r() })
      })
    }
  }

  /** Index to pass as `since` so that only later events match. */
  mark(): number { return this.events.length }

  /** The first event from `since` on with this type (and matching `pred`), waiting for it (bounded). */
  waitEvent(type: string, o: { since?: number; ms?: number; pred?: (e: BaresipEvent) => boolean } = {}): Promise<BaresipEvent> {
    const since = o.since ?? 0
    return this.until(() => {
      for (let i = since; i < this.events.length; i++) {
        const e = this.events[i]!
        if (e.type === type && (o.pred === undefined || o.pred(e))) return e
      }
      return undefined
    }, o.ms ?? 10_000, `event ${type}`)
  }

  /** Fails fast if a REGISTER_FAIL comes first. */
  async waitRegistered(aor: string, o: { since?: number; ms?: number } = {}): Promise<BaresipEvent> {
    const since = o.since ?? 0
    const e = await this.until(() => {
      for (let i = since; i < this.events.length; i++) {
        const x = this.events[i]!
        if (x.accountaor === aor && (x.type === 'REGISTER_OK' || x.type === 'REGISTER_FAIL')) return x
      }
      return undefined
    }, o.ms ?? 10_000, `registration of ${aor}`)
    if (e.type !== 'REGISTER_OK') throw new Error(`${this.name}: ${aor} registration failed: ${e.param ?? ''}\n${this.output().slice(-2000)}`)
    return e
  }

  /** UI output (cons) matching `re`, waiting for it (bounded). */
  waitConsole(re: RegExp, ms = 10_000): Promise<string> {
    return this.until(() => re.exec(this.console)?.[0], ms, `console output ${re}`)
  }

  /** Adds an account (`uanew`); it registers at once unless regint=0. */
  async addAccount(o: AccountOptions): Promise<void> {
    const r = await this.command('uanew', accountLine(o))
    if (!r.ok) throw new Error(`${this.name}: uanew failed: ${r.data}`)
  }

  dial(uri: string): Promise<{ ok: boolean; data: string }> { return this.command('dial', uri) }
  hangup(): Promise<{ ok: boolean; data: string }> { return this.command('hangup') }
  /** MESSAGE to the current contact. */
  message(text: string): Promise<{ ok: boolean; data: string }> { return this.command('message', text) }

  output(): string { return this.out.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '').replace(/\[\d+:\d\d:\d\d\] audio=\S+ \(bit\/s\)\s*/g, '') }

  /** SIGTERM (baresip unregisters), bounded; SIGKILL after `ms`. */
  async stop(ms = 3_000): Promise<void> {
    this.ctrl?.destroy()
    this.cons?.destroy()
    if (this.exited) return
    const exited = new Promise<void>(r => this.proc.once('exit', () => r()))
    this.proc.kill('SIGTERM')
    const t = setTimeout(() => { if (!this.exited) this.proc.kill('SIGKILL') }, ms)
    await exited
    clearTimeout(t)
  }
}
