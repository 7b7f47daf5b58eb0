// benchmarks/perf-split.mjs (docs/benchmarks.md): reads `perf script -F tid,ip,sym,dso` output,
// with or without a time column, and splits the busiest thread's samples by what runs at the
// leaf and the other threads' by what they do. A synthetic excerpt with the frame shapes perf
// prints for node (JIT frames from --perf-basic-prof's map, builtins, kernel, add-ons).
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const script = fileURLToPath(new URL('../../../benchmarks/perf-split.mjs', import.meta.url))
const { parsePerfScript, category, helperCategory } = await import(script) as {
  parsePerfScript(text: string): Array<{ tid: string; frames: Array<{ sym: string; dso: string }> }>
  category(frames: Array<{ sym: string; dso: string }>): string
  helperCategory(frames: Array<{ sym: string; dso: string }>): string
}

const sample = (tid: string, frames: string[], time = ''): string =>
  `${tid}${time}\n${frames.map((f, i) => `\t    ${(0x1000 + i).toString(16)} ${f}`).join('\n')}\n\n`
const PERF = [
  sample('100', ['pvm_irq_enable ([kernel.kallsyms])', 'udp_sendmsg ([kernel.kallsyms])', '__libc_sendmsg (/usr/lib/x86_64-linux-gnu/libc.so.6)', 'node::UDPWrap::Send (/usr/bin/node)']),
  sample('100', ['JS:*parseInner file:///x/sip/dist/message.js:771:20 (/tmp/perf-100.map)', 'Builtins_JSEntry (/usr/bin/node)']),
  sample('100', ['Builtins_LoadIC (/usr/bin/node)', 'JS:*respond file:///x/server.js:1:1 (/tmp/perf-100.map)']),
  sample('100', ['mdb_page_search_root (/x/node_modules/lmdb/prebuilds/node.abi115.glibc.node)']),
  sample('100', ['v8::internal::Scavenger::ScavengeObject (/usr/bin/node)', 'v8::internal::Heap::Scavenge (/usr/bin/node)']),
  sample('100', ['do_epoll_wait ([kernel.kallsyms])', 'epoll_pwait (/usr/lib/x86_64-linux-gnu/libc.so.6)']),
  sample('101', ['v8::internal::compiler::GraphReducer::ReduceTop (/usr/bin/node)', 'v8::internal::compiler::PipelineImpl::OptimizeGraph (/usr/bin/node)']),
  sample('102', ['ext4_sync_file ([kernel.kallsyms])', 'fdatasync (/usr/lib/x86_64-linux-gnu/libc.so.6)', 'mdb_env_sync0 (/x/node.abi115.glibc.node)']),
].join('')

t.test('parses samples, with and without a time column', async t => {
  const s = parsePerfScript(PERF)
  t.equal(s.length, 8)
  t.same(s.map(x => x.tid), ['100', '100', '100', '100', '100', '100', '101', '102'])
  t.same(s[0]!.frames[0], { sym: 'pvm_irq_enable', dso: '[kernel.kallsyms]' })
  const timed = parsePerfScript(sample('  7', ['JS:*f file:///x.js:1:1 (/tmp/perf-7.map)'], ' 46603.123456:'))
  t.same(timed.map(x => [x.tid, x.frames.length]), [['7', 1]])
})

t.test('categories', async t => {
  const s = parsePerfScript(PERF)
  t.same(s.slice(0, 6).map(x => category(x.frames)), [
    'kernel: sendmsg (UDP out, loopback delivery to the peer)',
    'JavaScript (JIT code)',
    'V8 builtins and IC handlers',
    'native add-ons (LMDB)',
    'GC',
    'kernel: epoll_wait',
  ])
  t.same(s.slice(6).map(x => helperCategory(x.frames)), ['compile (TurboFan)', 'LMDB flush (fdatasync)'])
})

t.test('the command: the busiest thread first, a Markdown report', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'perf-split-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'perf.txt'), PERF)
  const r = spawnSync(process.execPath, [script, join(dir, 'perf.txt'), '--md', join(dir, 'out.md')], { encoding: 'utf8' })
  t.equal(r.status, 0, r.stderr)
  const md = readFileSync(join(dir, 'out.md'), 'utf8')
  t.match(md, /8 samples; handling thread 100: 6 \(75\.0%\), other threads: 2\./)
  t.match(md, /\| kernel: sendmsg \(UDP out, loopback delivery to the peer\) \| 1 \| 16\.7% \|/)
  t.match(md, /\| compile \(TurboFan\) \| 1 \| 50\.0% \|/)
  const bad = spawnSync(process.execPath, [script], { encoding: 'utf8' })
  t.not(bad.status, 0, 'no input file: a usage error')
  t.match(bad.stderr, /usage: perf-split\.mjs/)
})
