#!/usr/bin/env node
// The memory benchmark (issue 17: "RSS < 200 MB with 100,000 registered AORs"): each node is
// started (sipedge with its lmdb store, Kamailio with usrloc in memory), measured at rest, then
// 100,000 phones (AORs, one Contact each) register through its registrar (the harness's own UAs
// on a piscina thread pinned to the other CPU, 256 REGISTERs in flight), and after a settling time
// it is measured again at rest: RSS, PSS, what they are made of (/proc/PID/smaps grouped: anonymous
// memory = V8 heaps + malloc + stacks; the lmdb map; program text; libraries), the V8 heap used
// per sipedge thread (its metrics endpoint), the lmdb files on disk, and the bytes per AOR.
//
//   node benchmarks/harness/memory.mjs                       100,000 AORs; sipedge (workers 2, default), Kamailio
//   node benchmarks/harness/memory.mjs --aors 20000 --targets sipedge:2
//
// Writes benchmarks/results/memory-<date>[-tag].{json,md}. Loopback only, bounded in time.
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs'
import { tmpdir, availableParallelism } from 'node:os'
import { join } from 'node:path'
import { Piscina } from 'piscina'
import { hookExit, killAll, startSipedge, startKamailio, stopNode, kamailioAvailable, kamailioPids, scrape, metricByLabel, metricSum, sampleMem, ROOT } from './procs.mjs'
import { smapsBreakdownAll, filesUnder } from './procfs.mjs'
import { STANDARD_TARGETS, parseTargets, rotate, machine, load, pinSelf } from './common.mjs'

const RSS_TARGET_MB = 200

function parseArgs(argv) {
  const o = { aors: 100000, settle: 60, targets: null, pin: availableParallelism() >= 2, proxyCpus: '0', loadCpus: null, children: 4, shmMb: 512, port: 26260, out: join(ROOT, 'benchmarks', 'results'), tag: null, json: null, repeats: 1 }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const v = () => argv[++i]
    switch (a) {
      case '--': break
      case '--aors': o.aors = Number(v()); break
      case '--settle': o.settle = Number(v()); break
      case '--targets': o.targets = parseTargets(v()); break
      case '--repeats': o.repeats = Number(v()); break
      case '--no-pin': o.pin = false; break
      case '--proxy-cpus': o.proxyCpus = v(); break
      case '--load-cpus': o.loadCpus = v(); break
      case '--children': o.children = Number(v()); break
      case '--shm': o.shmMb = Number(v()); break
      case '--port-base': o.port = Number(v()); break
      case '--out': o.out = v(); break
      case '--tag': o.tag = v(); break
      case '--node-args': o.nodeArgs = v().split(' ').filter(Boolean); break // V8/Node flags for sipedge, e.g. '--single-threaded-gc'
      case '--json': o.json = v(); break
      default: throw new Error(`unknown option ${a} (see docs/performance.md)`)
    }
  }
  if (!(o.aors >= 100 && o.aors <= 1000000)) throw new Error('--aors must be in 100..1,000,000')
  if (!(o.settle >= 1 && o.settle <= 120)) throw new Error('--settle must be in 1..120')
  if (!(o.repeats >= 1 && o.repeats <= 5)) throw new Error('--repeats must be in 1..5')
  if (!(o.port >= 1024 && o.port <= 65000)) throw new Error('--port-base must be in 1024..65000')
  const n = availableParallelism()
  o.loadCpus ??= n >= 2 ? `1-${n - 1}` : '0'
  o.targets ??= STANDARD_TARGETS.map(t => ({ ...t }))
  return o
}

const MB = (kB) => +(kB / 1024).toFixed(1)

/** Everything about the node's memory at one moment. */
async function snapshot(node, storeDir) {
  const pids = node.kind === 'kamailio' ? kamailioPids(node.pid) : [node.pid]
  const mem = sampleMem(pids)
  const groups = smapsBreakdownAll(pids, storeDir !== null ? { 'lmdb map (the location store, file-backed)': storeDir } : {})
  const breakdown = Object.entries(groups).map(([group, g]) => ({ group, addressSpaceMB: MB(g.sizeKB), rssMB: MB(g.rssKB), pssMB: MB(g.pssKB), anonMB: MB(g.anonKB), mappings: g.mappings })).sort((a, b) => b.pssMB - a.pssMB)
  let heap = null, committed = null, aorsStored = null, bindings = null
  if (node.metricsUrl !== null) {
    const txt = await scrape(node.metricsUrl)
    const perThreadMB = name => {
      const h = metricByLabel(txt, name, 'thread')
      return h === null ? null : Object.fromEntries(Object.entries(h).map(([k, v]) => [k, +(v / 1048576).toFixed(1)]))
    }
    heap = perThreadMB('sipedge_thread_heap_used_bytes')
    committed = perThreadMB('sipedge_thread_heap_committed_bytes')
    aorsStored = metricSum(txt, 'sipedge_registrations_aors')
    bindings = metricSum(txt, 'sipedge_registrations_bindings')
  }
  const files = storeDir !== null ? filesUnder(storeDir).map(f => ({ file: f.path.slice(storeDir.length + 1), sizeMB: +(f.bytes / 1048576).toFixed(1), allocatedMB: +(f.allocatedBytes / 1048576).toFixed(1) })) : []
  return { processes: pids.length, ...mem, heapUsedMBByThread: heap, heapUsedMB: heap === null ? null : +Object.values(heap).reduce((a, b) => a + b, 0).toFixed(1), heapCommittedMBByThread: committed, heapCommittedMB: committed === null ? null : +Object.values(committed).reduce((a, b) => a + b, 0).toFixed(1), aorsStored, bindings, breakdown, storeFiles: files }
}

async function measure(o, pool, target, repeat) {
  const dir = mkdtempSync(join(tmpdir(), `sipedge-mem-${target.label}-`))
  const storeDir = target.kind === 'sipedge' ? join(dir, 'store') : null
  const runId = Math.random().toString(36).slice(2, 8)
  let node
  try {
    const cpusArg = o.pin ? o.proxyCpus : null
    const backends = [{ index: 0, ip: '127.0.2.1', port: o.port + 10 }] // the dispatcher needs a set; nothing is sent to it
    node = target.kind === 'sipedge'
      ? await startSipedge({ dir, runId, port: o.port, metricsPort: o.port + 30, workers: target.workers, domain: 'edge.test', backends, cpus: cpusArg, store: `lmdb:${storeDir}`, nodeArgs: o.nodeArgs })
      : await startKamailio({ dir, port: o.port, children: o.children, domain: 'edge.test', backends, cpus: cpusArg, shmMb: o.shmMb })
    await new Promise(r => setTimeout(r, 5000))
    const before = await snapshot(node, storeDir)
    const t0 = Date.now()
    const pre = await pool.run({
      phase: 'prereg', k: 0, W: 1, runId, domain: 'edge.test', proxy: { host: '127.0.0.1', port: o.port },
      phoneSock: { ip: '127.0.1.1', port: o.port + 20 }, backends: [], backendCount: 1,
      phones: { total: o.aors, expires: 3600, refreshS: 1800 }, rates: { answered: 0, cancelled: 0, notify: 0 }, times: { winStart: 0, winEnd: 0, drainEnd: 0 },
      deadline: Date.now() + 600000, preregWindow: 256, captureMax: 0,
    })
    const registerS = (Date.now() - t0) / 1000
    await new Promise(r => setTimeout(r, o.settle * 1000))
    const after = await snapshot(node, storeDir)
    const done = pre.prereg.done, ok = pre.prereg.codes['200'] ?? 0
    return {
      target: target.label, kind: target.kind, workers: target.kind === 'sipedge' ? target.workers ?? 'default' : undefined, repeat,
      aors: o.aors, registered: { answered: done, ok200: ok, codes: pre.prereg.codes, retransmissions: pre.prereg.retrans, seconds: +registerS.toFixed(1), perS: Math.round(done / Math.max(0.001, registerS)) },
      before, after,
      perAorBytes: { rss: Math.round((after.rssMB - before.rssMB) * 1048576 / Math.max(1, ok)), pss: Math.round((after.pssMB - before.pssMB) * 1048576 / Math.max(1, ok)) },
      met: target.kind === 'sipedge' ? after.rssMB < RSS_TARGET_MB : undefined,
    }
  } finally {
    if (node !== undefined) await stopNode(node)
    rmSync(dir, { recursive: true, force: true })
  }
}

function markdown(run) {
  const L = [`# Memory with ${run.options.aors.toLocaleString('en')} registered AORs — ${run.date.slice(0, 10)}`, '']
  L.push('Generated by `benchmarks/harness/memory.mjs` (docs/performance.md). Every AOR registered through the node\'s registrar (one Contact each, Expires 3600); the node measured at rest before and after (settling ' + `${run.options.settleS} s).`, '')
  const m = run.machine
  L.push(`- Machine: ${m.cpu}, ${m.cores} cores, ${m.memGiB} GiB, Linux ${m.kernel}, Node ${m.node}${m.kamailio ? `, ${m.kamailio}` : ''}; load average ${run.loadAverage.start.join(' ')} → ${run.loadAverage.end.join(' ')}`)
  L.push(`- sipedge: store lmdb (default options); Kamailio: usrloc db_mode 0 (in shared memory, -m ${run.options.shmMb} MB), ${run.options.children} children`, '')
  L.push('| node | AORs stored | RSS before → after MB | PSS before → after MB | anon / file RSS after MB | V8 heap used after MB (per thread) | V8 heap committed after MB (per thread) | bytes per AOR (PSS) | target RSS < 200 MB |', '| --- | ---: | ---: | ---: | ---: | --- | --- | ---: | --- |')
  for (const r of run.results) {
    const a = r.after, b = r.before
    const perThread = (total, by) => by === null || by === undefined ? 'n/a' : `${total} (${Object.entries(by).map(([k, v]) => `${k} ${v}`).join(', ')})`
    const heap = perThread(a.heapUsedMB, a.heapUsedMBByThread)
    const committed = perThread(a.heapCommittedMB, a.heapCommittedMBByThread)
    L.push(`| ${r.target}${r.workers !== undefined ? ` (workers ${r.workers})` : ''} | ${a.aorsStored ?? `${r.registered.ok200} answered 200`} | ${b.rssMB} → **${a.rssMB}** | ${b.pssMB} → **${a.pssMB}** | ${a.rssAnonMB} / ${a.rssFileMB} | ${heap} | ${committed} | ${r.perAorBytes.pss} | ${r.met === undefined ? '' : r.met ? 'met' : `missed by ${(a.rssMB - RSS_TARGET_MB).toFixed(1)} MB`} |`)
  }
  L.push('')
  for (const r of run.results) {
    L.push(`## ${r.target}: what the memory is (after, /proc/PID/smaps${r.after.processes > 1 ? `, summed over ${r.after.processes} processes` : ''})`, '')
    L.push('| group | address space MB | RSS MB | PSS MB | of which anonymous MB | mappings |', '| --- | ---: | ---: | ---: | ---: | ---: |')
    for (const g of r.after.breakdown) L.push(`| ${g.group} | ${g.addressSpaceMB} | ${g.rssMB} | ${g.pssMB} | ${g.anonMB} | ${g.mappings} |`)
    if (r.after.storeFiles.length > 0) L.push('', `lmdb files on disk: ${r.after.storeFiles.map(f => `${f.file} ${f.sizeMB} MB (allocated ${f.allocatedMB} MB)`).join(', ')}.`)
    L.push('', `Registration: ${r.registered.answered} answered (${JSON.stringify(r.registered.codes)}) in ${r.registered.seconds} s (${r.registered.perS}/s), ${r.registered.retransmissions} retransmissions.`, '')
  }
  L.push('How to read: RSS counts every resident page once per process (Kamailio: its shared memory is counted in every process that touched it, so its RSS sum overstates; PSS shares each page among the processes mapping it). "anonymous" is memory with no file behind it: for sipedge the V8 heaps of the primary and every worker (the heap used and the heap committed per thread are given; the rest up to the anonymous RSS is memory outside the V8 heap: Buffer and ArrayBuffer contents, V8\'s own malloc (compiler zones), malloc arenas of lmdb and libuv, and thread stacks). The lmdb map is the store\'s file mapped into memory: its resident pages are page cache shared with the file system, evictable under pressure, and counted in RSS. The address space of the lmdb map is the map size reserved, not memory used.', '')
  return L.join('\n')
}

async function main() {
  const o = parseArgs(process.argv.slice(2))
  hookExit()
  if (o.pin && !pinSelf(o.loadCpus)) o.pin = false
  let targets = o.targets
  if (targets.some(t => t.kind === 'kamailio') && !kamailioAvailable()) {
    process.stderr.write('memory: kamailio not installed; Kamailio side skipped\n')
    targets = targets.filter(t => t.kind !== 'kamailio')
  }
  const pool = new Piscina({ filename: new URL('./ua.mjs', import.meta.url).href, minThreads: 1, maxThreads: 1, concurrentTasksPerWorker: 1, idleTimeout: 60000 })
  const started = new Date()
  const run = {
    date: started.toISOString(), machine: machine(targets.some(t => t.kind === 'kamailio')), loadAverage: { start: load() },
    options: { aors: o.aors, settleS: o.settle, repeats: o.repeats, pin: o.pin, proxyCpus: o.proxyCpus, loadCpus: o.loadCpus, children: o.children, shmMb: o.shmMb, nodeArgs: o.nodeArgs ?? [], targets },
    results: [],
  }
  try {
    for (let rep = 1; rep <= o.repeats; rep++) {
      for (const t of rotate(targets, rep - 1)) {
        process.stderr.write(`[${t.label}] memory #${rep}: registering ${o.aors} AORs\n`)
        const r = await measure(o, pool, t, rep)
        run.results.push(r)
        process.stderr.write(`[${t.label}] memory #${rep}: ${r.registered.ok200}/${o.aors} registered in ${r.registered.seconds} s; RSS ${r.before.rssMB} -> ${r.after.rssMB} MB, PSS ${r.before.pssMB} -> ${r.after.pssMB} MB, heap ${r.after.heapUsedMB ?? 'n/a'} MB, ${r.perAorBytes.pss} B/AOR (PSS)\n`)
      }
    }
  } finally { await pool.destroy(); killAll() }
  run.loadAverage.end = load()
  run.durationS = Math.round((Date.now() - started.getTime()) / 1000)
  mkdirSync(o.out, { recursive: true })
  const base = join(o.out, `memory-${run.date.slice(0, 10)}${o.tag ? `-${o.tag}` : ''}`)
  writeFileSync(`${base}.json`, JSON.stringify(run, null, 2) + '\n')
  writeFileSync(`${base}.md`, markdown(run))
  if (o.json !== null) writeFileSync(o.json, JSON.stringify(run, null, 2))
  process.stderr.write(`wrote ${base}.json\nwrote ${base}.md\n`)
}

main().catch(err => { process.stderr.write(`memory: ${err?.stack ?? err}\n`); killAll(); process.exit(1) })
