'use strict'
// CPU profile of exactly the measurement window, in every thread of the sipedge process.
// Preloaded by the harness (`mix.mjs --profile` puts `--require prof.cjs` in NODE_OPTIONS, which
// Node applies to worker threads too, even those started with their own execArgv). The harness creates <SIPEDGE_PROF_DIR>/start when the window opens and
// <SIPEDGE_PROF_DIR>/stop when it closes; each thread polls for them (every 200 ms, an unref'd
// timer, for at most 30 min), profiles its own isolate through an inspector session, and writes
// <dir>/<pid>-<main|threadN>.cpuprofile. `node benchmarks/flame.mjs` turns those into SVGs.
// Unlike `--cpu-prof`, neither start-up nor pre-registration nor shutdown lands in the profile.
const dir = process.env.SIPEDGE_PROF_DIR
if (dir) {
  const { existsSync, writeFileSync } = require('node:fs')
  const { join } = require('node:path')
  const inspector = require('node:inspector')
  const wt = require('node:worker_threads')
  // sipedge's workers carry workerIndex in their workerData; other threads (the log thread) do not
  const idx = wt.isMainThread ? undefined : wt.workerData?.workerIndex
  const name = wt.isMainThread ? 'main' : typeof idx === 'number' ? `worker${idx}` : `thread${wt.threadId}`
  const intervalUs = Number(process.env.SIPEDGE_PROF_INTERVAL_US) || 500
  const deadline = Date.now() + 30 * 60 * 1000
  let session = null
  let state = 0 // 0 waiting, 1 profiling, 2 done
  const timer = setInterval(() => {
    if (Date.now() > deadline) { clearInterval(timer); return }
    if (state === 0 && existsSync(join(dir, 'start'))) {
      session = new inspector.Session()
      session.connect()
      session.post('Profiler.enable')
      session.post('Profiler.setSamplingInterval', { interval: intervalUs })
      session.post('Profiler.start')
      state = 1
    } else if (state === 1 && existsSync(join(dir, 'stop'))) {
      state = 2
      clearInterval(timer)
      session.post('Profiler.stop', (err, res) => {
        if (!err) writeFileSync(join(dir, `${process.pid}-${name}.cpuprofile`), JSON.stringify(res.profile))
        session.disconnect()
      })
    }
  }, 200)
  timer.unref()
}
