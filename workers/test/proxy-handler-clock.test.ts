// The product's handler tells the transaction layer what its clock is: on the context's
// performance.timeOrigin + performance.now() the timers sleep until due (no 1 Hz wake-up on an
// idle node, issue 17); a context whose clock jumps (nowJumps, the fuzz harness) keeps the 1 s
// catch-up.
import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseConfig, deepFreeze } from '@sipedge/config'
import { proxyHandlerUrl, type CreateHandler } from '@sipedge/workers'

const log = { debug() {}, info() {}, warn() {}, error() {} }

async function handlerLayerSleep(t: Tap.Test, nowJumps: boolean | undefined): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'sipedge-clock-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const config = deepFreeze(parseConfig(`workers: 1\nlisten: [udp:127.0.0.1:5060]\nstore: "lmdb:${dir}/store"\n`))
  const { createHandler } = await import(proxyHandlerUrl.href) as { createHandler: CreateHandler }
  const h = await createHandler({
    workerIndex: 0, config, inProcess: true, log, send: () => true,
    now: () => performance.timeOrigin + performance.now(),
    ...(nowJumps !== undefined ? { nowJumps } : {}),
  })
  t.teardown(async () => { await h.close?.() })
  return (h as unknown as { proxy: { layer: { maxSleepMs: number } } }).proxy.layer.maxSleepMs
}
declare namespace Tap { type Test = typeof t }

t.test('the handler context\'s monotonic clock: timers sleep until due (60 s cap)', async t => {
  t.equal(await handlerLayerSleep(t, undefined), 60_000)
})

t.test('nowJumps: the 1 s catch-up stays', async t => {
  t.equal(await handlerLayerSleep(t, true), 1_000)
})
