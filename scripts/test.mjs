#!/usr/bin/env node
// Runs the whole test suite with node-tap and closes with one plain summary line,
// "N passed, N failed", counted from tap's own final totals (assertions and subtests).
// Extra arguments are handed to tap (e.g. a single test file).
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const tapBin = fileURLToPath(new URL('../node_modules/tap/dist/esm/run.mjs', import.meta.url))
const args = process.argv.slice(2)
const files = args.some(a => !a.startsWith('-')) ? [] : ['packages/*/test/**/*.test.ts', 'workers/test/**/*.test.ts']
const child = spawn(process.execPath, [tapBin, '--reporter=tap', ...args, ...files], {
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
  const m = /#\s*\{\s*([^}]*)\}\s*\n(?:#[^\n]*\n)*\s*$/.exec(tail) ?? /#\s*\{\s*(total:[^}]*)\}/.exec(tail)
  const totals = { total: 0, pass: 0, fail: 0, skip: 0, todo: 0 }
  if (m) for (const part of m[1].split(',')) {
    const [k, v] = part.split(':').map(s => s.trim())
    if (k in totals) totals[k] = Number(v)
  }
  let failed = totals.fail
  if ((code !== 0 || signal) && failed === 0) failed = 1 // a crash or timeout counts as a failure
  const skipped = totals.skip + totals.todo
  console.log(`\n${totals.pass} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`)
  process.exit(code === 0 && failed === 0 && totals.pass > 0 ? 0 : 1)
})
