// Fine-grained /proc readings for the idle and memory benchmarks (Linux).
//   - per thread: CPU time in ns from /proc/PID/task/TID/schedstat (the scheduler's own runtime
//     counter: the 100 Hz utime/stime ticks of /proc/PID/stat are too coarse for a process that
//     should use < 0.1% of a core), and context switches (voluntary: the thread went to sleep,
//     i.e. one wake-up each; involuntary: preempted) from /proc/PID/task/TID/status;
//   - per mapping: RSS / PSS / anonymous bytes from /proc/PID/smaps, grouped into what they are.
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { CLK_TCK } from './procs.mjs'

function statTicks(path) {
  const s = readFileSync(path, 'utf8')
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
  return Number(f[11]) + Number(f[12])
}

/** Every thread of every pid: name, CPU ns (schedstat), ticks (stat), context switches. */
export function sampleThreads(pids) {
  const tasks = {}
  let totalTicks = 0
  for (const pid of pids) {
    try { totalTicks += statTicks(`/proc/${pid}/stat`) } catch { continue }
    let tids = []
    try { tids = readdirSync(`/proc/${pid}/task`) } catch { /* exited */ }
    for (const tid of tids) {
      const base = `/proc/${pid}/task/${tid}`
      try {
        const name = readFileSync(`${base}/comm`, 'utf8').trim() + (tid === String(pids[0]) ? ' (main)' : '')
        let runNs = null
        try { runNs = Number(readFileSync(`${base}/schedstat`, 'utf8').split(' ')[0]) } catch { /* no schedstats */ }
        const st = readFileSync(`${base}/status`, 'utf8')
        tasks[`${pid}/${tid}`] = {
          name, runNs, ticks: statTicks(`${base}/stat`),
          vcs: Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(st)?.[1] ?? 0),
          nvcs: Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(st)?.[1] ?? 0),
        }
      } catch { /* exited */ }
    }
  }
  return { at: performance.now(), totalTicks, tasks }
}

/**
 * CPU between two samples: % of one core from the process ticks (all threads, also those that
 * ended in between) and from schedstat (threads alive at both ends, ns precision), and per
 * thread: CPU ms, % of a core, wake-ups (voluntary switches) and preemptions per second.
 */
export function threadDelta(a, b) {
  const wallS = (b.at - a.at) / 1000
  const threads = []
  let runNs = 0, schedOk = true, wakeups = 0
  for (const [id, t] of Object.entries(b.tasks)) {
    const t0 = a.tasks[id]
    if (t0 === undefined) continue // born inside the window: counted in the ticks total only
    const ns = t.runNs !== null && t0.runNs !== null ? t.runNs - t0.runNs : null
    if (ns === null) schedOk = false
    else runNs += ns
    const ms = ns !== null ? ns / 1e6 : (t.ticks - t0.ticks) * 1000 / CLK_TCK
    wakeups += t.vcs - t0.vcs
    threads.push({ id, name: t.name, cpuMs: +ms.toFixed(3), cpuPct: +(ms / 10 / wallS).toFixed(4), wakeupsPerS: +((t.vcs - t0.vcs) / wallS).toFixed(2), preemptionsPerS: +((t.nvcs - t0.nvcs) / wallS).toFixed(2) })
  }
  threads.sort((x, y) => y.cpuMs - x.cpuMs)
  const tickMs = (b.totalTicks - a.totalTicks) * 1000 / CLK_TCK
  return {
    wallS: +wallS.toFixed(3),
    cpuPct: schedOk ? +(runNs / 1e6 / 10 / wallS).toFixed(4) : +(tickMs / 10 / wallS).toFixed(4),
    cpuPctFrom: schedOk ? 'schedstat (ns)' : `stat ticks (1/${CLK_TCK} s)`,
    cpuPctTicks: +(tickMs / 10 / wallS).toFixed(4),
    wakeupsPerS: +(wakeups / wallS).toFixed(2),
    threads,
  }
}

/**
 * What the resident memory of a process is made of, from /proc/PID/smaps: kB of address space
 * (Size), RSS, PSS and anonymous memory per group. `files` maps a group name to a path prefix (e.g. the lmdb store).
 */
export function smapsBreakdown(pid, files = {}) {
  let text
  try { text = readFileSync(`/proc/${pid}/smaps`, 'utf8') } catch { return null }
  const groups = {}
  let cur = null
  const exe = (() => { try { return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0] } catch { return '' } })()
  for (const line of text.split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \d+\s*(.*)$/.exec(line)
    if (head !== null) {
      const path = head[1].trim()
      let g
      const named = Object.entries(files).find(([, prefix]) => path.startsWith(prefix))
      if (named !== undefined) g = named[0]
      else if (path === '') g = 'anonymous (heaps: V8 / malloc arenas; thread stacks)'
      else if (path === '[heap]') g = 'brk heap (malloc)'
      else if (path.startsWith('[stack')) g = 'main thread stack'
      else if (path.startsWith('[')) g = `kernel (${path})`
      else if (path.startsWith('/SYSV') || path.startsWith('/dev/zero') || path.includes('(deleted)')) g = 'shared memory'
      else if (exe !== '' && (path === exe || path.endsWith('/node') || path.endsWith('/kamailio'))) g = 'program text and data'
      else if (/\.so(\.|$)/.test(path)) g = 'shared libraries'
      else g = 'other files'
      cur = (groups[g] ??= { sizeKB: 0, rssKB: 0, pssKB: 0, anonKB: 0, mappings: 0 })
      cur.mappings++
      continue
    }
    if (cur === null) continue
    const m = /^(Size|Rss|Pss|Anonymous):\s+(\d+) kB/.exec(line)
    if (m === null) continue
    if (m[1] === 'Size') cur.sizeKB += Number(m[2])
    else if (m[1] === 'Rss') cur.rssKB += Number(m[2])
    else if (m[1] === 'Pss') cur.pssKB += Number(m[2])
    else cur.anonKB += Number(m[2])
  }
  return groups
}

/** smapsBreakdown summed over several processes (Kamailio). */
export function smapsBreakdownAll(pids, files = {}) {
  const out = {}
  for (const pid of pids) {
    const g = smapsBreakdown(pid, files)
    if (g === null) continue
    for (const [k, v] of Object.entries(g)) {
      const o = (out[k] ??= { sizeKB: 0, rssKB: 0, pssKB: 0, anonKB: 0, mappings: 0 })
      o.sizeKB += v.sizeKB; o.rssKB += v.rssKB; o.pssKB += v.pssKB; o.anonKB += v.anonKB; o.mappings += v.mappings
    }
  }
  return out
}

/** Size on disk of every file under `dir` (bytes; sparse files count what is allocated too). */
export function filesUnder(dir) {
  const out = []
  const walk = (d) => {
    let names = []
    try { names = readdirSync(d) } catch { return }
    for (const n of names) {
      const p = `${d}/${n}`
      let s
      try { s = statSync(p) } catch { continue }
      if (s.isDirectory()) walk(p)
      else out.push({ path: p, bytes: s.size, allocatedBytes: s.blocks * 512 })
    }
  }
  walk(dir)
  return out
}
