// sipp as a test peer: spawn with bounded call count and time, stats dumped to a temp dir,
// parsed after exit. Every process started here is killed by `stop()` / the teardown.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync, rmSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseConfig, type FrozenConfig } from '@sipedge/config'
import { Engine, createLogger } from '@sipedge/transport'
import { workerEntryUrl } from '@sipedge/workers'
import { waitBound } from './index.js'

export const SIPP = process.env['SIPP'] ?? '/usr/bin/sipp'

/** Directory of the scenario files shipped with this package (packages/tests/sipp). */
export const SCENARIO_DIR = fileURLToPath(new URL('../sipp/', import.meta.url))

export function scenario(name: string): string {
  return join(SCENARIO_DIR, name)
}

export interface SippOptions {
  /** Scenario file (absolute, or a name inside packages/tests/sipp). */
  scenario: string
  /** host:port to send to (UAC); omitted for a UAS. */
  remote?: string
  localIp: string
  localPort: number
  /** u1 (UDP, one socket), t1 (TCP, one connection), tn (TCP, one connection per call). */
  transport?: 'u1' | 'un' | 't1' | 'tn'
  /** -m: stop after this many calls (bounded). */
  calls?: number
  /** -r: calls per second (UAC). */
  rate?: number
  /** -l: simultaneous calls. */
  limit?: number
  /** -timeout in seconds (hard bound; default 30). */
  timeoutS?: number
  /** -s: service (user part of the Request-URI). */
  service?: string
  /** [domain] of the scenarios' Request-URI (default: remote). */
  domain?: string
  /** Extra arguments (-key, -set, ...). */
  extra?: string[]
}

export interface SippResult {
  code: number | null
  signal: NodeJS.Signals | null
  successful: number
  failed: number
  /** Tail of stderr/stdout and the error log, for assertion messages. */
  log: string
  /**
   * Every "Aborting call on unexpected message ..." of sipp's error log, one line each, read from
   * the whole log (the `log` tail can lose them behind a run of "Dead call" lines).
   */
  aborts: string[]
  dir: string
}

export class Sipp {
  readonly proc: ChildProcess
  readonly dir: string
  readonly done: Promise<SippResult>
  readonly opts: SippOptions
  private out = ''

  constructor(o: SippOptions) {
    this.opts = o
    this.dir = mkdtempSync(join(tmpdir(), 'sipedge-sipp-'))
    const sf = o.scenario.includes('/') ? o.scenario : scenario(o.scenario)
    const args = [
      ...(o.remote !== undefined ? [o.remote] : []),
      '-sf', sf,
      '-i', o.localIp, '-p', String(o.localPort),
      '-t', o.transport ?? 'u1',
      '-m', String(o.calls ?? 1),
      '-timeout', `${o.timeoutS ?? 30}s`, '-timeout_error',
      '-nostdin',
      '-trace_err', '-error_file', join(this.dir, 'errors.log'),
      '-trace_stat', '-stf', join(this.dir, 'stat.csv'), '-fd', '1',
      '-max_socket', '64',
      // UDP retransmission budget: sipp gives up after 5 (INVITE) / 7 (others) retransmissions,
      // about 6 s at T1 = 100 ms: a loaded host stalls a peer that long (a backend aborted calls
      // whose ACK was late, then the BYE timed out at the UAC). 10 retransmissions, capped at
      // T2 = 4 s, wait about 22 s, within Timer B/F (64*T1 = 32 s at the RFC's T1 = 500 ms).
      '-max_invite_retrans', '10', '-max_non_invite_retrans', '10',
      ...(o.rate !== undefined ? ['-r', String(o.rate)] : []),
      ...(o.limit !== undefined ? ['-l', String(o.limit)] : []),
      ...(o.service !== undefined ? ['-s', o.service] : []),
      '-key', 'domain', o.domain ?? o.remote ?? o.localIp,
      ...(o.extra ?? []),
    ]
    this.proc = spawn(SIPP, args, { cwd: this.dir, stdio: ['ignore', 'pipe', 'pipe'] })
    const keep = (c: Buffer): void => { this.out = (this.out + c.toString('utf8')).slice(-8000) }
    this.proc.stdout!.on('data', keep)
    this.proc.stderr!.on('data', keep)
    const hardMs = ((o.timeoutS ?? 30) + 10) * 1000
    this.done = new Promise<SippResult>(resolve => {
      const t = setTimeout(() => this.proc.kill('SIGKILL'), hardMs)
      this.proc.on('exit', (code, signal) => {
        clearTimeout(t)
        resolve(this.result(code, signal))
      })
    })
  }

  private result(code: number | null, signal: NodeJS.Signals | null): SippResult {
    const stats = parseStats(join(this.dir, 'stat.csv'))
    let errors = ''
    const aborts: string[] = []
    try {
      for (const f of readdirSync(this.dir)) {
        if (!f.includes('error')) continue
        const text = readFileSync(join(this.dir, f), 'utf8')
        for (const m of text.matchAll(/Aborting call on unexpected message for Call-Id '([^']*)': while expecting '([^']*)' \(index (\d+)\), received '([^\r\n]*)/g))
          aborts.push(`${m[1]}: expecting ${m[2]} (index ${m[3]}), received ${m[4]}`)
        // the head (the first error, usually the cause) and the tail
        errors += text.length > 4000 ? `${text.slice(0, 2000)}\n[...]\n${text.slice(-2000)}` : text
      }
    } catch { /* no error log */ }
    return { code, signal, successful: stats.successful, failed: stats.failed, log: (this.out.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '') + '\n' + errors).slice(-6000), aborts, dir: this.dir }
  }

  /**
   * Resolves once this sipp has bound its local port (UDP) or listens on it (TCP): a UAS must be
   * there before the first request is routed to it, however long a loaded host takes to start it.
   */
  async ready(ms = 20_000): Promise<void> {
    const proto = (this.opts.transport ?? 'u1').startsWith('t') ? 'tcp' : 'udp'
    try {
      await waitBound(this.opts.localIp, this.opts.localPort, proto, { child: this.proc, ms })
    } catch (err) {
      throw new Error(`sipp ${this.opts.scenario}: ${(err as Error).message}\n${this.out.slice(-2000)}`)
    }
  }

  /** Stops the process (SIGTERM, then SIGKILL) and waits for it. */
  async stop(): Promise<SippResult> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGTERM')
      const t = setTimeout(() => this.proc.kill('SIGKILL'), 2000)
      const r = await this.done
      clearTimeout(t)
      return r
    }
    return this.done
  }

  cleanup(): void {
    try { rmSync(this.dir, { recursive: true, force: true }) } catch { /* gone */ }
  }
}

/** Final SuccessfulCall(C) / FailedCall(C) from a sipp -trace_stat CSV (last row). */
export function parseStats(file: string): { successful: number; failed: number } {
  if (!existsSync(file)) return { successful: 0, failed: 0 }
  const lines = readFileSync(file, 'utf8').split('\n').filter(l => l.trim() !== '')
  if (lines.length < 2) return { successful: 0, failed: 0 }
  const head = lines[0]!.split(';')
  const last = lines[lines.length - 1]!.split(';')
  const col = (name: string): number => {
    const i = head.indexOf(name)
    return i < 0 ? 0 : Number(last[i]) || 0
  }
  return { successful: col('SuccessfulCall(C)'), failed: col('FailedCall(C)') }
}

/** Starts sipp; the caller registers `stop` + `cleanup` in teardown. */
export function startSipp(o: SippOptions): Sipp {
  return new Sipp(o)
}

// ------------------------------------------------------------------------------ proxy under test


/** URL of the proxy handler module (workers/dist/proxy-handler.js). */
export const proxyHandlerUrl: URL = new URL('./proxy-handler.js', workerEntryUrl)

/**
 * Starts an Engine with the proxy handler and the configuration given as YAML, the way the cli
 * does (socketId i = config.listen[i]). The caller stops it in teardown.
 */
export async function startProxy(yaml: string): Promise<{ engine: Engine; config: FrozenConfig }> {
  const config = parseConfig(yaml) as FrozenConfig
  const engine = new Engine({
    listeners: config.listen.map(l => ({ transport: l.proto, address: l.address, port: l.port })),
    workers: config.workers,
    workerUrl: workerEntryUrl,
    handlerUrl: proxyHandlerUrl,
    config,
    logger: createLogger({ level: process.env['SIPEDGE_TEST_LOG'] === '1' ? 'debug' : 'silent' }),
    shutdownTimeoutMs: 2000,
    // tests ask the workers (engine.query) while sipp keeps them busy on a loaded host
    queryTimeoutMs: 10_000,
  })
  await engine.start()
  return { engine, config }
}

// ------------------------------------------------------------------------------ one flow

export interface FlowOptions {
  /** UAS scenario (null: no UAS, e.g. the proxy answers itself). */
  uas: string | null
  uac: string
  proxy: string
  uasIp?: string
  uasPort: number
  uacPort: number
  transport: 'u1' | 't1' | 'tn'
  uasTransport?: 'u1' | 't1'
  calls: number
  rate?: number
  service?: string
  domain?: string
  timeoutS?: number
  /** How long to let the UAS finish by itself after the UAC ended (default 15000 ms; it usually exits at once). */
  uasWaitMs?: number
}

export interface FlowResult { uac: SippResult; uas: SippResult | null }

/** Runs a UAS (if any) and a UAC against the proxy; both bounded; both stopped before returning. */
export async function runFlow(o: FlowOptions): Promise<FlowResult> {
  const uas = o.uas === null ? null : startSipp({
    scenario: o.uas, localIp: o.uasIp ?? '127.0.0.2', localPort: o.uasPort, transport: o.uasTransport ?? o.transport,
    calls: o.calls, timeoutS: (o.timeoutS ?? 30) + 5,
  })
  try {
    if (uas !== null) await uas.ready() // the first INVITE must find it listening
    const uac = startSipp({
      scenario: o.uac, remote: o.proxy, localIp: '127.0.0.1', localPort: o.uacPort, transport: o.transport,
      calls: o.calls, rate: o.rate ?? 20, timeoutS: o.timeoutS ?? 30, service: o.service ?? 'alice', domain: o.domain ?? o.proxy,
    })
    let uacRes: SippResult
    try { uacRes = await uac.done } finally { await uac.stop(); uac.cleanup() }
    let uasRes: SippResult | null = null
    if (uas !== null) {
      // The UAS ends by itself after -m calls (its last pause); bounded, then stopped.
      // Its last call ends after the scenario's final pause; a loaded host can take seconds.
      let timer: NodeJS.Timeout | undefined
      const t = new Promise<null>(r => { timer = setTimeout(() => r(null), o.uasWaitMs ?? 15_000) })
      uasRes = (await Promise.race([uas.done, t])) ?? await uas.stop()
      clearTimeout(timer)
    }
    return { uac: uacRes, uas: uasRes }
  } finally {
    if (uas !== null) { await uas.stop(); uas.cleanup() }
  }
}
