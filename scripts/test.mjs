#!/usr/bin/env node
// Runs the whole test suite with node-tap and closes with one plain summary line,
// "N passed, N failed", counted from tap's own final totals (assertions and subtests).
//
// Two phases: package unit tests in parallel (two jobs, one per core), then the cross-package
// tests in packages/tests one file at a time: each starts sipedge with worker threads plus sipp
// peers, and two of those side by side on two cores starve each other's timers (T1 retransmits
// that a real network would not see). Extra arguments are handed to tap as one run
// (e.g. a single test file).
//
// The cross-package files get 10 minutes each instead of .taprc's 2: on a loaded 2-core host a
// healthy file took 99-114 s (starting node, sipp and workers gets slow, not wrong). Every wait
// inside them is bounded on its own, so a hung file still fails, naming the wait that hung.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const tapBin = fileURLToPath(new URL('../node_modules/tap/dist/esm/run.mjs', import.meta.url))
const args = process.argv.slice(2)

const phases = args.some(a => !a.startsWith('-'))
  ? [args]
  : [
      [...args, 'packages/!(tests)/test/**/*.test.ts', 'workers/test/**/*.test.ts'],
      ['--timeout=600', ...args, '--jobs=1', 'packages/tests/test/**/*.test.ts'],
    ]

function runTap(tapArgs) {
  return new Promise(resolve => {
    const child = spawn(process.execPath, [tapBin, '--reporter=tap', ...tapArgs], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, FORCE_COLOR: '0' },
    })
    let tail = ''
    child.stdout.on('data', chunk => {
      process.stdout.write(chunk)
      tail = (tail + chunk.toString('utf8')).slice(-4096)
    })
    child.on('close', (code, signal) => {
      // tap ends its stream with "# { total: N, pass: N, fail: N, skip: N, todo: N }"
      const m = /#\s*\{\s*(total:[^}]*)\}/.exec(tail)
      const totals = { total: 0, pass: 0, fail: 0, skip: 0, todo: 0 }
      if (m) for (const part of m[1].split(',')) {
        const [k, v] = part.split(':').map(s => s.trim())
        if (k in totals) totals[k] = Number(v)
      }
      // a crash or timeout of the runner itself counts as a failure
      if ((code !== 0 || signal) && totals.fail === 0) totals.fail = 1
      resolve({ totals, ok: code === 0 && !signal })
    })
  })
}

let passed = 0
let failed = 0
let skipped = 0
let ok = true
for (const phase of phases) {
  const r = await runTap(phase)
  passed += r.totals.pass
  failed += r.totals.fail
  skipped += r.totals.skip + r.totals.todo
  ok &&= r.ok
}
console.log(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`)
process.exit(ok && failed === 0 && passed > 0 ? 0 : 1)
