// The redis-server helper: ready when it says so, answers PING, kill/restart for outage tests,
// a taken port is skipped, stop() removes the directory. Ports 16490-16499 (127.0.0.1).
import t from 'tap'
import fs from 'node:fs'
import { connect, createServer, type Server } from 'node:net'
import { startRedis, redisInstalled } from '@sipedge/test-utils'

const RANGE = [16490, 16499] as const

function ping(port: number): Promise<string> {
  return new Promise(resolve => {
    const s = connect(port, '127.0.0.1')
    let buf = ''
    s.setTimeout(1000, () => { s.destroy(); resolve('timeout') })
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'))
    s.on('connect', () => s.write('PING\r\n'))
    s.on('data', d => { buf += d.toString(); if (buf.includes('\r\n')) { s.destroy(); resolve(buf.trim()) } })
  })
}

t.test('start, kill, restart, stop', { skip: redisInstalled() ? false : 'redis-server not installed' }, async t => {
  const r = await startRedis(t, { ports: RANGE })
  t.ok(r.port >= RANGE[0] && r.port <= RANGE[1], 'a port of the range')
  t.equal(r.url(2), `redis://127.0.0.1:${r.port}/2`)
  t.ok(fs.statSync(r.dir).isDirectory(), 'its own directory')
  t.equal(await ping(r.port), '+PONG')
  await r.kill()
  t.equal(await ping(r.port), 'ECONNREFUSED', 'down after kill()')
  await r.restart()
  t.equal(await ping(r.port), '+PONG', 'up again on the same port')
  await r.stop()
  t.equal(await ping(r.port), 'ECONNREFUSED', 'down after stop()')
  t.notOk(fs.existsSync(r.dir), 'directory removed')
  await r.stop() // idempotent
})

t.test('a taken port is skipped', { skip: redisInstalled() ? false : 'redis-server not installed' }, async t => {
  // hold every port of a two-port range but one
  const held: Server = createServer()
  await new Promise<void>(resolve => held.listen(16498, '127.0.0.1', resolve))
  t.teardown(() => held.close())
  const r = await startRedis(t, { ports: [16498, 16499] })
  t.equal(r.port, 16499)
  t.equal(await ping(r.port), '+PONG')
})

t.test('no free port: a clear error, bounded', { skip: redisInstalled() ? false : 'redis-server not installed' }, async t => {
  const held: Server = createServer()
  await new Promise<void>(resolve => held.listen(16497, '127.0.0.1', resolve))
  t.teardown(() => held.close())
  await t.rejects(startRedis(t, { ports: [16497, 16497] }), /could not start redis-server on a free port in 16497-16497/)
})
