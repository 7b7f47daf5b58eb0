// What the harness's benchmarks (mix, idle, memory) share: the targets and the machine record.
import { cpus, availableParallelism, totalmem, release, loadavg, hostname } from 'node:os'
import { execFileSync } from 'node:child_process'

// The standard comparison (issue 17): what a quad-core config would run less one (workers: 2),
// the product's default (the CPUs it may use less one: 0 when pinned to one CPU), and Kamailio
// with benchmarks/kamailio/kamailio.cfg, all in the same run.
export const STANDARD_TARGETS = [
  { label: 'sipedge', kind: 'sipedge', workers: 2 },
  { label: 'sipedge-default', kind: 'sipedge', workers: null },
  { label: 'kamailio', kind: 'kamailio' },
]

/** `sipedge:2,sipedge:default,kamailio` -> targets; the first sipedge is labelled `sipedge`. */
export function parseTargets(s) {
  const out = []
  for (const item of s.split(',').filter(Boolean)) {
    const [kind, w] = item.split(':')
    if (kind === 'kamailio') { out.push({ label: 'kamailio', kind }); continue }
    if (kind !== 'sipedge') throw new Error(`--targets: unknown target ${item} (sipedge[:N|:default], kamailio)`)
    const workers = w === undefined || w === 'default' ? null : Number(w)
    if (workers !== null && !(Number.isInteger(workers) && workers >= 0 && workers <= 16)) throw new Error(`--targets: bad worker count in ${item}`)
    const first = !out.some(t => t.kind === 'sipedge')
    out.push({ label: first ? 'sipedge' : workers === null ? 'sipedge-default' : `sipedge-w${workers}`, kind, workers })
  }
  if (new Set(out.map(t => t.label)).size !== out.length) throw new Error('--targets: a target is named twice')
  return out
}

/** Interleaving: repeat k runs the targets in an order rotated by k, so drift hits each alike. */
export const rotate = (xs, k) => xs.map((_, i) => xs[(i + k) % xs.length])

export function kamailioVersion() {
  try { return execFileSync('kamailio', ['-v']).toString().split('\n')[0].trim() } catch { return null }
}

// Counted when this module loads, before the harness pins itself to the load CPUs.
const CORES = availableParallelism()

export function machine(withKamailio) {
  return { host: hostname(), cpu: cpus()[0]?.model ?? 'unknown', cores: CORES, memGiB: +(totalmem() / 2 ** 30).toFixed(1), kernel: release(), node: process.version, kamailio: withKamailio ? kamailioVersion() : null }
}

export const load = () => loadavg().map(x => +x.toFixed(2))

/** Pins this process (all its threads so far; threads made later inherit it) to `cpus`. */
export function pinSelf(cpusList) {
  try { execFileSync('taskset', ['-a', '-p', '-c', cpusList, String(process.pid)], { stdio: 'ignore' }); return true } catch { return false }
}
