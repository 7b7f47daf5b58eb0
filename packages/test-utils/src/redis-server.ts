// A private redis-server for one test: 127.0.0.1 only, a port of its own from a range, its own
// temporary directory (--dir, so nothing is written next to the tests), no persistence. Readiness
// is the server's own "Ready to accept connections" log line (an event, not a sleep) confirmed by
// one PING; every wait has a deadline. Killed, and its directory removed, at the test's teardown.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface RedisServer {
  readonly port: number
  /** The server's working directory (removed by stop()). */
  readonly dir: string
  url(db?: number): string
  /** SIGKILL, as an outage would; it stays down until restart(). */
  kill(): Promise<void>
  /** Starts again on the same port and directory (after kill(), or while running: kills first). */
  restart(): Promise<void>
  /** Kills the server and removes its directory. Idempotent; also run at teardown. */
  stop(): Promise<void>
}

export interface RedisOptions {
  /** Inclusive port range to pick from, tried from a random point (default 16380-16480). */
  ports?: readonly [number, number]
  /** Bound on each wait for readiness, ms (default 5000). */
  readyTimeoutMs?: number
}

/** What startRedis needs of a test: node-tap's `t` fits. */
export interface Teardown {
  teardown(fn: () => unknown): void
}

export const DEFAULT_REDIS_PORTS: readonly [number, number] = [16380, 16480]
/** At most this many ports are tried before giving up (a busy port makes redis exit at once). */
const MAX_PORT_TRIES = 20
const RESTART_TRIES = 20
const RE_READY = /Ready to accept connections/

export function redisInstalled(): boolean {
  const r = spawnSync('redis-server', ['--version'], { stdio: 'ignore' })
  return !r.error && r.status === 0
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null
}

/** Starts redis-server on `port`; resolves with the child once it is ready, or null if it exited (port taken) or timed out. */
function launch(port: number, dir: string, timeoutMs: number): Promise<ChildProcess | null> {
  const child = spawn('redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--logfile', '',
  ], { stdio: ['ignore', 'pipe', 'ignore'] })
  return new Promise(resolve => {
    let tail = ''
    const done = (ok: boolean): void => {
      clearTimeout(timer)
      child.stdout!.off('data', onData)
      child.off('exit', onExit)
      child.off('error', onExit)
      // keep reading the log, unread, so a chatty server never blocks on a full pipe
      child.stdout!.resume()
      if (ok) { resolve(child); return }
      killChild(child).catch(() => undefined).then(() => resolve(null), () => resolve(null))
    }
    const onData = (c: Buffer): void => {
      tail = (tail + c.toString('latin1')).slice(-512)
      if (RE_READY.test(tail)) done(true)
    }
    const onExit = (): void => done(false)
    const timer = setTimeout(() => done(false), timeoutMs)
    child.stdout!.on('data', onData)
    child.once('exit', onExit)
    child.once('error', onExit)
  })
}

/** One PING on a fresh connection: +PONG within `timeoutMs`? */
function ping(port: number, timeoutMs: number): Promise<boolean> {
  return new Promise(resolve => {
    const s = connect(port, '127.0.0.1')
    let buf = ''
    const done = (ok: boolean): void => {
      s.destroy()
      resolve(ok)
    }
    s.setTimeout(timeoutMs, () => done(false))
    s.on('error', () => done(false))
    s.on('connect', () => s.write('PING\r\n'))
    s.on('data', d => {
      buf += d.toString('latin1')
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG'))
    })
  })
}

/** SIGKILL and wait for the exit event (bounded: a process killed with SIGKILL exits at once). */
function killChild(child: ChildProcess | null): Promise<void> {
  if (child === null || exited(child) || child.pid === undefined) return Promise.resolve()
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`redis-server pid ${child.pid} did not exit after SIGKILL`)), 5000)
    child.once('exit', () => { clearTimeout(timer); resolve() })
    child.kill('SIGKILL')
  })
}

async function startOn(port: number, dir: string, timeoutMs: number): Promise<ChildProcess | null> {
  const child = await launch(port, dir, timeoutMs)
  if (child === null) return null
  if (await ping(port, Math.min(timeoutMs, 1000))) return child
  await killChild(child)
  return null
}

export async function startRedis(t: Teardown, opts: RedisOptions = {}): Promise<RedisServer> {
  if (!redisInstalled()) {
    throw new Error('redis-server is not installed (or not on PATH): install it (apt-get install redis-server) to run the Redis tests')
  }
  const [first, last] = opts.ports ?? DEFAULT_REDIS_PORTS
  const timeoutMs = opts.readyTimeoutMs ?? 5000
  const dir = mkdtempSync(join(tmpdir(), 'sipedge-redis-'))
  const span = last - first + 1
  let child: ChildProcess | null = null
  let port = 0
  const offset = Math.floor(Math.random() * span)
  for (let k = 0; k < Math.min(span, MAX_PORT_TRIES) && child === null; k++) {
    port = first + ((offset + k) % span)
    child = await startOn(port, dir, timeoutMs)
  }
  if (child === null) {
    rmSync(dir, { recursive: true, force: true })
    throw new Error(`could not start redis-server on a free port in ${first}-${last}`)
  }
  let stopped = false
  const server: RedisServer = {
    port,
    dir,
    url: (db = 0) => `redis://127.0.0.1:${port}/${db}`,
    kill: () => killChild(child),
    async restart() {
      await killChild(child)
      child = null
      // the port may be briefly held by whoever grabbed it meanwhile: a bounded number of tries
      for (let i = 0; i < RESTART_TRIES && child === null; i++) {
        child = await startOn(port, dir, timeoutMs)
        if (child === null) await new Promise(r => setTimeout(r, 100))
      }
      if (child === null) throw new Error(`could not restart redis-server on port ${port}`)
    },
    async stop() {
      if (stopped) return
      stopped = true
      await killChild(child)
      rmSync(dir, { recursive: true, force: true })
    },
  }
  t.teardown(() => server.stop())
  return server
}
