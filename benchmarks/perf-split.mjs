#!/usr/bin/env node
// Where a process's CPU goes, kernel included: reads `perf script` output of a `perf record -g`
// of sipedge (run with `--perf-basic-prof` for JavaScript names) and splits the samples by
// thread, then the handling thread's samples by what runs at the leaf (JIT code, V8 builtins and
// inline-cache handlers, V8/Node native code, GC, compiler, kernel by syscall, LMDB, libc).
// The `--cpu-prof` profiles of flame.mjs see only JavaScript; this sees the rest: sendmsg,
// epoll, V8's helper threads.
//
//   perf record -F 999 -g -p PID -o perf.data -- sleep 20
//   perf script -i perf.data -F tid,ip,sym,dso > perf.txt
//   node benchmarks/perf-split.mjs perf.txt [--thread TID] [--top N] [--md OUT.md]
//
// Default thread: the one with the most samples (the primary, or with `workers: N` a worker).
import { readFileSync, writeFileSync } from 'node:fs'

function parseArgs(argv) {
  const o = { file: null, thread: null, top: 12, md: null }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--thread') o.thread = argv[++i]
    else if (a === '--top') o.top = Number(argv[++i])
    else if (a === '--md') o.md = argv[++i]
    else if (o.file === null) o.file = a
    else throw new Error(`unknown argument ${a}`)
  }
  if (o.file === null) throw new Error('usage: perf-split.mjs PERF_SCRIPT_OUTPUT [--thread TID] [--top N] [--md OUT.md]')
  return o
}

/** Samples as { tid, frames: [{ sym, dso }] } (leaf first), from `perf script -F tid,ip,sym,dso`. */
export function parsePerfScript(text) {
  const samples = []
  let cur = null
  for (const line of text.split('\n')) {
    if (line.trim().length === 0) continue
    // a frame: "\t  ADDR SYM (DSO)"; anything else starts a sample: "TID [TIME:]"
    const m = /^\s+[0-9a-f]+ (.*) \((.*)\)$/.exec(line)
    if (m !== null && cur !== null) { cur.frames.push({ sym: m[1], dso: m[2] }); continue }
    cur = { tid: line.trim().split(/\s+/)[0], frames: [] }
    samples.push(cur)
  }
  return samples
}

/** The category of one sample of the handling thread. */
export function category(frames) {
  if (frames.length === 0) return 'unknown'
  const leaf = frames[0]
  const stack = frames.map(f => f.sym).join(' ')
  if (leaf.dso.includes('kallsyms')) {
    if (stack.includes('sendmsg')) return 'kernel: sendmsg (UDP out, loopback delivery to the peer)'
    if (/recvmsg|recvmmsg|recvfrom/.test(stack)) return 'kernel: recvmsg'
    if (stack.includes('epoll')) return 'kernel: epoll_wait'
    if (/pwrite|write/.test(stack)) return 'kernel: write (LMDB pages, log)'
    if (/page_fault|exc_page/.test(stack)) return 'kernel: page faults'
    return 'kernel: other'
  }
  if (/Scaveng|MarkCompact|IncrementalMarking|Heap::|Sweep|Evacuat|cppgc/.test(stack)) return 'GC'
  if (/compiler::|Compil|Baseline.*Generate|Maglev/.test(stack)) return 'V8 compiler'
  if (leaf.dso.endsWith('.map') || leaf.dso.includes('perf-')) return 'JavaScript (JIT code)'
  if (leaf.sym.startsWith('Builtins_')) return 'V8 builtins and IC handlers'
  if (leaf.dso.includes('lmdb') || leaf.sym.startsWith('mdb_') || leaf.dso.includes('.node')) return 'native add-ons (LMDB)'
  if (leaf.dso.includes('libc')) return leaf.sym.startsWith('epoll') ? 'libc: epoll' : 'libc: malloc, memmove, other'
  return 'V8 and Node native (runtime calls, API callbacks, libuv)'
}

/** What a helper thread (no JavaScript) does: compile, GC, LMDB flush, or other. */
export function helperCategory(frames) {
  const stack = frames.map(f => f.sym).join(' ')
  if (/compiler::|Compil/.test(stack)) return 'compile (TurboFan)'
  if (/Mark|Scaveng|Sweep|Heap|Evacuat|cppgc/.test(stack)) return 'GC'
  if (/sync|mdb_|ext4|jbd2/.test(stack)) return 'LMDB flush (fdatasync)'
  if (/write/.test(stack)) return 'log writes'
  return 'other'
}

function table(counter, total, head) {
  const rows = [...counter.entries()].sort((a, b) => b[1] - a[1])
  const out = [`| ${head} | samples | share |`, '| --- | ---: | ---: |']
  for (const [k, v] of rows) out.push(`| ${k} | ${v} | ${(100 * v / total).toFixed(1)}% |`)
  return out.join('\n')
}

function main() {
  const o = parseArgs(process.argv.slice(2))
  const samples = parsePerfScript(readFileSync(o.file, 'utf8'))
  const byTid = new Map()
  for (const s of samples) byTid.set(s.tid, (byTid.get(s.tid) ?? 0) + 1)
  const main = o.thread ?? [...byTid.entries()].sort((a, b) => b[1] - a[1])[0]?.[0]
  if (main === undefined) throw new Error('no samples')
  const cats = new Map()
  const helpers = new Map()
  let n = 0
  let h = 0
  for (const s of samples) {
    if (s.tid === main) { n++; const c = category(s.frames); cats.set(c, (cats.get(c) ?? 0) + 1) }
    else { h++; const c = helperCategory(s.frames); helpers.set(c, (helpers.get(c) ?? 0) + 1) }
  }
  const md = [
    `# CPU split from perf (${o.file})`, '',
    `${samples.length} samples; handling thread ${main}: ${n} (${(100 * n / samples.length).toFixed(1)}%), other threads: ${h}.`, '',
    `## Handling thread ${main}`, '', table(cats, n, 'what runs at the leaf'), '',
    '## Other threads (V8 platform workers, libuv pool, log thread)', '', h > 0 ? table(helpers, h, 'what they do') : '(none)', '',
  ].join('\n')
  if (o.md !== null) writeFileSync(o.md, md)
  process.stdout.write(md)
}

if (import.meta.url === `file://${process.argv[1]}`) main()
