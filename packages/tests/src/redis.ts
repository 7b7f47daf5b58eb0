// A private redis-server for the cross-package tests (logic of packages/store/test/fixtures/
// redis-server.ts): a free port in 19400-19499, no persistence, 127.0.0.1 only, killed at teardown.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { connect, createServer } from 'node:net'

export interface RedisServer {
  port: number
  url(db?: number): string
  /** SIGKILL, as an outage would. */
  kill(): Promise<void>
  /** Starts again on the same port. */
  restart(): Promise<void>
  stop(): Promise<void>
}

interface Teardown {
  teardown(fn: () => unknown): void
}

const FIRST = 19400
const LAST = 19499

export function redisInstalled(): boolean {
  const r = spawnSync('redis-server', ['--version'], { stdio: 'ignore' })
  return !r.error && r.status === 0
}

function portFree(port: number): Promise<boolean> {
  return new Promise(resolve => {
    const srv = createServer()
    srv.once('error', () => resolve(false))
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)))
  })
}

function ping(port: number): Promise<boolean> {
  return new Promise(resolve => {
    const s = connect(port, '127.0.0.1')
    let buf = ''
    const done = (ok: boolean) => {
      s.destroy()
      resolve(ok)
    }
    s.setTimeout(500, () => done(false))
    s.on('error', () => done(false))
    s.on('connect', () => s.write('PING\r\n'))
    s.on('data', d => {
      buf += d.toString()
      if (buf.includes('\r\n')) done(buf.startsWith('+PONG'))
    })
  })
}

function spawnRedis(port: number): ChildProcess {
  const child = spawn('redis-server', ['--port', String(port), '--save', '', '--appendonly', 'no', '--bind', '127.0.0.1'], {
    stdio: 'ignore',
  })
  child.on('error', () => undefined)
  return child
}

async function waitPong(port: number, child: ChildProcess): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null || child.signalCode !== null) return false
    if (await ping(port)) return true
    await new Promise(r => setTimeout(r, 50))
  }
  return false
}

function killChild(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise(resolve => {
    child.once('exit', () => resolve())
    child.kill('SIGKILL')
  })
}

export async function startRedis(t: Teardown): Promise<RedisServer> {
  if (!redisInstalled()) {
    throw new Error('redis-server is not installed (or not on PATH): install it (apt-get install redis-server) to run the Redis store tests')
  }
  const span = LAST - FIRST + 1
  let offset = Math.floor(Math.random() * span)
  let child: ChildProcess | undefined
  let port = 0
  for (let tries = 0; tries < span && port === 0; tries++, offset++) {
    const p = FIRST + (offset % span)
    if (!(await portFree(p))) continue
    const c = spawnRedis(p)
    if (await waitPong(p, c)) {
      child = c
      port = p
    } else {
      await killChild(c)
    }
  }
  if (port === 0) throw new Error(`could not start redis-server on a free port in ${FIRST}-${LAST}`)
  const server: RedisServer = {
    port,
    url: (db = 0) => `redis://127.0.0.1:${port}/${db}`,
    kill: () => killChild(child),
    async restart() {
      await killChild(child)
      for (let i = 0; i < 50; i++) {
        const c = spawnRedis(port)
        if (await waitPong(port, c)) {
          child = c
          return
        }
        await killChild(c)
        await new Promise(r => setTimeout(r, 100))
      }
      throw new Error(`could not restart redis-server on port ${port}`)
    },
    stop: () => killChild(child),
  }
  t.teardown(() => server.stop())
  return server
}
