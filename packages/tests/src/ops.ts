// Helpers for the operations tests (metrics, admin API, logs): the `sipedge` command as a child
// process with a configuration written to a temp dir, an HTTP client for its metrics/admin
// listener, and sipp stats beyond success/failure. Every wait is bounded.
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { waitForOutput, waitForExit, killHard } from './index.js'

const root = fileURLToPath(new URL('../../../', import.meta.url))
export const SIPEDGE_MAIN = join(root, 'packages/cli/dist/main.js')

export interface SipedgeProcess {
  readonly child: ChildProcess
  readonly file: string
  /** Everything the process wrote to stdout and stderr so far. */
  output(): string
  /** SIGTERM, then wait for the exit (SIGKILL after `ms`). */
  stop(ms?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

/**
 * Writes `yaml` to dir/name and starts `sipedge --config` on it; resolves on the "ready" line
 * (in its output, or in `logFile` when the configuration logs to a file).
 */
export async function startSipedge(dir: string, name: string, yaml: string, o: { env?: NodeJS.ProcessEnv; logFile?: string; cwd?: string } = {}): Promise<SipedgeProcess> {
  const env = o.env ?? {}
  const file = join(dir, name)
  writeFileSync(file, yaml)
  // cwd: where relative paths of the configuration (e.g. `lmdb:./var/location`) land
  const child = spawn(process.execPath, [SIPEDGE_MAIN, '--config', file], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], ...(o.cwd !== undefined ? { cwd: o.cwd } : {}) })
  // a test process that dies (uncaught error) must not leave the node holding its ports
  const orphan = (): void => killHard(child)
  process.once('exit', orphan)
  child.once('exit', () => process.off('exit', orphan))
  let out = ''
  child.stdout!.on('data', d => { out += d })
  child.stderr!.on('data', d => { out += d })
  try {
    if (o.logFile === undefined) await waitForOutput(child, /"msg":"ready"/, 45_000)
    else await waitForFileLine(o.logFile, /"msg":"ready"/, child, 45_000)
  } catch (err) {
    killHard(child)
    throw new Error(`${(err as Error).message}\n${out}`)
  }
  return {
    child,
    file,
    output: () => out,
    async stop(ms = 15_000) {
      if (child.exitCode !== null || child.signalCode !== null) return { code: child.exitCode, signal: child.signalCode }
      child.kill('SIGTERM')
      try {
        return await waitForExit(child, ms)
      } catch (err) {
        killHard(child)
        throw err
      }
    },
  }
}

/** Polls `file` until a line matches `re` (bounded; fails early if `child` exits). */
export async function waitForFileLine(file: string, re: RegExp, child: ChildProcess, ms = 10_000): Promise<string> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`process exited (${child.exitCode}) before ${re} in ${file}`)
    if (existsSync(file)) {
      const line = readFileSync(file, 'utf8').split('\n').find(l => re.test(l))
      if (line !== undefined) return line
    }
    await sleepMs(50)
  }
  throw new Error(`timed out waiting for ${re} in ${file}`)
}

export interface HttpAnswer { status: number; headers: Headers; text: string; json: unknown }

/** One HTTP request (Node's fetch), bounded by `ms`. */
export async function http(method: string, url: string, o: { token?: string; body?: unknown; ms?: number } = {}): Promise<HttpAnswer> {
  const headers: Record<string, string> = {}
  if (o.token !== undefined) headers['authorization'] = `Bearer ${o.token}`
  let body: string | undefined
  // the admin API takes state-changing requests only with a JSON body type (415 otherwise)
  if (method !== 'GET' && method !== 'HEAD') headers['content-type'] = 'application/json'
  if (o.body !== undefined) body = JSON.stringify(o.body)
  const res = await fetch(url, { method, headers, ...(body !== undefined ? { body } : {}), signal: AbortSignal.timeout(o.ms ?? 5_000) })
  const text = await res.text()
  let json: unknown = undefined
  if ((res.headers.get('content-type') ?? '').includes('json')) {
    try { json = JSON.parse(text) } catch { /* left undefined */ }
  }
  return { status: res.status, headers: res.headers, text, json }
}

/** Value of one sample in parsed exposition (0 when absent). */
export function sampleValue(families: Map<string, { samples: Array<{ name: string; labels: Record<string, string>; value: number }> }>, family: string, name: string, labels: Record<string, string> = {}): number {
  const f = families.get(family)
  if (f === undefined) return 0
  let v = 0
  for (const s of f.samples) {
    if (s.name !== name) continue
    if (Object.entries(labels).every(([k, x]) => s.labels[k] === x)) v += s.value
  }
  return v
}

/** Columns of the last row of a sipp -trace_stat CSV (cumulative counters end in "(C)"). */
export function sippStats(dir: string): Record<string, number> {
  const file = join(dir, 'stat.csv')
  if (!existsSync(file)) return {}
  const lines = readFileSync(file, 'utf8').split('\n').filter(l => l.trim() !== '')
  if (lines.length < 2) return {}
  const head = lines[0]!.split(';')
  const last = lines[lines.length - 1]!.split(';')
  const out: Record<string, number> = {}
  head.forEach((h, i) => { const n = Number(last[i]); if (h !== '' && Number.isFinite(n)) out[h] = n })
  return out
}

/**
 * Per-message counts of a sipp run started with `-trace_counts` (the last row of
 * <scenario>_<pid>_counts.csv in its directory): `count(dir, 'INVITE', 'Sent')` adds the column
 * `<n>_INVITE_Sent` of every step. kind: Sent, Recv, Retrans (retransmissions sent, or received
 * again), Timeout, Unexp.
 */
export function sippCounts(dir: string): (message: string, kind: string) => number {
  const f = readdirSync(dir).find(n => n.endsWith('_counts.csv'))
  if (f === undefined) return () => 0
  const lines = readFileSync(join(dir, f), 'utf8').split('\n').filter(l => l.includes(';'))
  if (lines.length < 2) return () => 0
  const head = lines[0]!.split(';')
  const last = lines[lines.length - 1]!.split(';')
  return (message, kind) => {
    let n = 0
    head.forEach((h, i) => {
      const m = /^\d+_(.+)_([A-Za-z]+)$/.exec(h)
      if (m !== null && m[1] === message && m[2] === kind) n += Number(last[i]) || 0
    })
    return n
  }
}

export function sleepMs(ms: number): Promise<void> {
  return new Promise(r => setTimeout(r, ms))
}
