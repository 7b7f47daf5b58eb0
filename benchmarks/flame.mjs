#!/usr/bin/env node
// Folds V8 CPU profiles (.cpuprofile: `node --cpu-prof`, the inspector, the harness's --profile)
// into flame graphs drawn as SVG, with no tool to download. Also writes the folded stacks
// ("frame;frame;frame <µs>" per line, the format of Brendan Gregg's flamegraph.pl and speedscope)
// next to each SVG, for other viewers.
//
//   node benchmarks/flame.mjs FILE.cpuprofile [...] [--out DIR] [--title T] [--keep-idle] [--min-width PX]
//   node benchmarks/flame.mjs --dir DIR          every .cpuprofile in DIR
//   ... --stages [--requests N]                  also print CPU per budget stage (µs per request)
//
// Output: <out>/<name>.svg and <out>/<name>.folded (default out: benchmarks/results/). Root at the
// bottom, callers below callees, width = CPU time sampled; hover a frame for its time and share.
// "(idle)" samples (the thread waiting) are left out unless --keep-idle; their time is in the
// title. Colours: sipedge code blue, node_modules green, Node internals orange, V8 / native
// yellow, GC and "(program)" grey.
import { readFileSync, writeFileSync, readdirSync, mkdirSync } from 'node:fs'
import { join, basename, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')

/** The .cpuprofile -> Map(folded stack -> µs), plus the idle and total µs. */
export function foldProfile(profile, { keepIdle = false } = {}) {
  const byId = new Map()
  for (const n of profile.nodes) byId.set(n.id, n)
  const parent = new Map()
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id)
  const stackOf = new Map()
  const frame = (n) => {
    const cf = n.callFrame
    const fn = cf.functionName || '(anonymous)'
    if (!cf.url) return fn
    const file = cf.url.replace(/^file:\/\//, '')
    const repo = /\/((?:packages|workers|benchmarks)\/.*)$/.exec(file)
    const short = file.includes('/node_modules/') ? `node_modules/${file.slice(file.lastIndexOf('/node_modules/') + 14)}` : file.startsWith('node:') ? file : repo !== null ? repo[1] : file.split('/').slice(-3).join('/')
    return `${fn} ${short}:${cf.lineNumber + 1}`
  }
  const stack = (id) => {
    let s = stackOf.get(id)
    if (s !== undefined) return s
    const parts = []
    for (let cur = id, guard = 0; cur !== undefined && guard < 10000; cur = parent.get(cur), guard++) {
      const n = byId.get(cur)
      if (n.callFrame.functionName === '(root)') break
      parts.push(frame(n).replace(/;/g, ','))
    }
    s = parts.reverse().join(';')
    stackOf.set(id, s)
    return s
  }
  const folded = new Map()
  const samples = profile.samples ?? [], deltas = profile.timeDeltas ?? []
  let total = 0, idle = 0
  for (let i = 0; i < samples.length; i++) {
    // The time of sample i runs until the next sample (as Chrome DevTools counts it).
    const us = Math.max(0, i + 1 < deltas.length ? deltas[i + 1] : (profile.endTime - profile.startTime) / Math.max(1, samples.length))
    const s = stack(samples[i])
    total += us
    if (s === '(idle)') { idle += us; if (!keepIdle) continue }
    folded.set(s, (folded.get(s) ?? 0) + us)
  }
  return { folded, totalUs: total, idleUs: idle }
}

export function foldedText(folded) {
  return [...folded].sort((a, b) => (a[0] < b[0] ? -1 : 1)).map(([s, us]) => `${s} ${Math.round(us)}`).join('\n') + '\n'
}

// ------------------------------------------------------------------------------ stages
// The per-message budget's stages (docs/performance.md), recognised in a profile by the file of
// the innermost frame that belongs to one: a sample's time goes to the stage of its deepest frame
// that matches a rule (so a Buffer builtin called by the parser counts as parsing, node:dgram
// called by the transport as I/O). Samples with no matching frame are "other".
export const STAGES = [
  ['Call-ID hash', /packages\/sip\/dist\/callid\.js/],
  ['edit / build (splice Via, Route, Record-Route, Max-Forwards; build responses)', /packages\/sip\/dist\/(editor|build)\.js/],
  ['parse (start line, header index, the headers a decision needs)', /packages\/sip\/dist\//],
  ['ring (push, drain, notify, wait)', /packages\/ring\/dist\//],
  ['transaction + timers', /packages\/transaction\/dist\//],
  ['store (lmdb)', /packages\/store\/dist\/|node_modules\/(lmdb|msgpackr|ordered-binary)/],
  ['route (core, modules, worker glue)', /packages\/(proxy|modules|frame)\/dist\/|workers\/dist\//],
  ['metrics, logging', /packages\/(metrics|log)\/dist\/|node_modules\/(pino|prom-client|sonic-boom|thread-stream)/],
  ['receive / send (sockets, primary I/O glue)', /node:dgram|node:internal\/dgram|node:net|node:internal\/stream_base|packages\/transport\/dist\//],
  ['GC', /^\(garbage collector\)/],
  ['(program): V8 and native code outside JS frames', /^\(program\)/],
]

/** Folded stacks -> ms per stage (and per request when `requests` is given). */
export function stageTable(folded, { requests = null } = {}) {
  const ms = new Map(STAGES.map(([name]) => [name, 0]))
  ms.set('other (Node internals: event loop, timers, promises)', 0)
  let total = 0
  for (const [stack, us] of folded) {
    const frames = stack.split(';')
    let stage = 'other (Node internals: event loop, timers, promises)'
    outer: for (let i = frames.length - 1; i >= 0; i--) {
      for (const [name, re] of STAGES) if (re.test(frames[i])) { stage = name; break outer }
    }
    ms.set(stage, ms.get(stage) + us / 1000)
    total += us / 1000
  }
  return [...ms].filter(([, v]) => v > 0).sort((a, b) => b[1] - a[1]).map(([stage, v]) => ({
    stage, ms: +v.toFixed(2), share: +(v / Math.max(1e-9, total)).toFixed(4), usPerRequest: requests ? +(v * 1000 / requests).toFixed(2) : null,
  }))
}

function category(name) {
  if (name.startsWith('(garbage collector)') || name.startsWith('(program)')) return [0, 0, 70]
  if (name.includes('node_modules/')) return [120, 45, 55]
  if (name.includes(' node:')) return [28, 80, 60]
  if (/ (packages|workers)\//.test(name)) return [212, 70, 62]
  if (name.includes(' benchmarks/')) return [170, 50, 55]
  if (!name.includes(' ')) return [50, 85, 58] // no script: V8 builtins, native
  return [280, 35, 65]
}

function esc(s) { return String(s).replace(/[<>&"]/g, c => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]) }

function hash(s) { let h = 2166136261; for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619); return (h >>> 0) / 4294967296 }

/** Folded stacks -> an SVG flame graph (root at the bottom). */
export function flameSvg(folded, { title = 'CPU profile', subtitle = '', width = 1400, minWidth = 0.3 } = {}) {
  const root = { name: 'all', value: 0, children: new Map() }
  for (const [s, us] of folded) {
    root.value += us
    let n = root
    for (const part of s.split(';')) {
      let c = n.children.get(part)
      if (c === undefined) { c = { name: part, value: 0, children: new Map() }; n.children.set(part, c) }
      c.value += us
      n = c
    }
  }
  const rows = []
  const lay = (n, x, depth) => {
    const w = root.value > 0 ? n.value / root.value * (width - 20) : 0
    if (w < minWidth) return
    rows.push({ n, x, w, depth })
    let cx = x
    for (const c of [...n.children.values()].sort((a, b) => (a.name < b.name ? -1 : 1))) { lay(c, cx, depth + 1); cx += root.value > 0 ? c.value / root.value * (width - 20) : 0 }
  }
  lay(root, 10, 0)
  const fh = 17, maxDepth = Math.max(0, ...rows.map(r => r.depth))
  const H = (maxDepth + 1) * fh + 70
  let out = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${H}" viewBox="0 0 ${width} ${H}" font-family="Verdana, sans-serif" font-size="11">\n<rect width="100%" height="100%" fill="#fdfdfd"/>\n`
  out += `<text x="${width / 2}" y="20" text-anchor="middle" font-size="15">${esc(title)}</text>\n<text x="${width / 2}" y="38" text-anchor="middle" fill="#555">${esc(subtitle)}</text>\n`
  for (const r of rows) {
    const y = H - 20 - (r.depth + 1) * fh
    const [hu, sa, li] = r.depth === 0 ? [0, 0, 80] : category(r.n.name)
    const j = hash(r.n.name)
    const fill = `hsl(${(hu + j * 16 - 8).toFixed(0)},${sa}%,${(li + j * 10 - 5).toFixed(0)}%)`
    const ms = r.n.value / 1000
    out += `<g><title>${esc(r.n.name)} — ${ms.toFixed(1)} ms, ${(r.n.value / root.value * 100).toFixed(2)}%</title><rect x="${r.x.toFixed(2)}" y="${y}" width="${Math.max(0.1, r.w - 0.5).toFixed(2)}" height="${fh - 1}" fill="${fill}" rx="1"/>`
    const chars = Math.floor((r.w - 6) / 6.6)
    if (chars >= 3) out += `<text x="${(r.x + 3).toFixed(2)}" y="${y + 12}">${esc(r.n.name.length > chars ? r.n.name.slice(0, chars - 2) + '..' : r.n.name)}</text>`
    out += '</g>\n'
  }
  out += '</svg>\n'
  return out
}

/**
 * Every .cpuprofile in `dir` -> <outDir>/<base>-<thread>.svg and .folded, and the stage table of
 * each thread and of all together (µs per request when `requests` is given).
 */
export async function flameProfiles(dir, outDir, base, opts = {}) {
  mkdirSync(outDir, { recursive: true })
  const files = [], threads = []
  const all = new Map()
  for (const f of readdirSync(dir).filter(x => x.endsWith('.cpuprofile')).sort()) {
    const thread = basename(f, '.cpuprofile').replace(/^\d+-/, '')
    const { written, folded } = writeFlame(join(dir, f), outDir, `${base}-${thread}`, opts)
    files.push(...written)
    let ms = 0
    for (const [k, us] of folded) { all.set(k, (all.get(k) ?? 0) + us); ms += us / 1000 }
    threads.push({ thread, ms: +ms.toFixed(1), stages: stageTable(folded, opts) })
  }
  return { files, threads, stages: stageTable(all, opts) }
}

export function writeFlame(file, outDir, name, { keepIdle = false, title, minWidth } = {}) {
  const profile = JSON.parse(readFileSync(file, 'utf8'))
  const { folded, totalUs, idleUs } = foldProfile(profile, { keepIdle })
  let busy = 0
  for (const us of folded.values()) busy += us
  const wallS = (profile.endTime - profile.startTime) / 1e6
  const subtitle = `${basename(file)}: ${wallS.toFixed(1)} s profiled, ${(busy / 1000).toFixed(0)} ms of CPU sampled (${(busy / 1e4 / Math.max(1e-9, wallS)).toFixed(1)}% of a core)${keepIdle ? '' : `, idle ${(idleUs / 1000).toFixed(0)} ms left out`}; total ${(totalUs / 1000).toFixed(0)} ms`
  mkdirSync(outDir, { recursive: true })
  const svgFile = join(outDir, `${name}.svg`), foldFile = join(outDir, `${name}.folded`)
  writeFileSync(svgFile, flameSvg(folded, { title: title ?? name, subtitle, minWidth }))
  writeFileSync(foldFile, foldedText(folded))
  return { written: [svgFile, foldFile], folded }
}

// ------------------------------------------------------------------------------ command line
if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const args = process.argv.slice(2)
  const inputs = []
  let out = join(ROOT, 'benchmarks', 'results'), title, keepIdle = false, minWidth, dir = null, stages = false, requests = null
  for (let i = 0; i < args.length; i++) {
    const a = args[i]
    if (a === '--') continue
    else if (a === '--out') out = args[++i]
    else if (a === '--title') title = args[++i]
    else if (a === '--keep-idle') keepIdle = true
    else if (a === '--min-width') minWidth = Number(args[++i])
    else if (a === '--dir') dir = args[++i]
    else if (a === '--stages') stages = true
    else if (a === '--requests') { stages = true; requests = Number(args[++i]) }
    else if (a === '--help' || a === '-h') { process.stdout.write(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('\n').slice(1, 15).map(l => l.replace(/^\/\/ ?/, '')).join('\n') + '\n'); process.exit(0) }
    else if (a.startsWith('--')) { process.stderr.write(`flame: unknown option ${a}\n`); process.exit(2) }
    else inputs.push(a)
  }
  if (dir !== null) for (const f of readdirSync(dir).filter(x => x.endsWith('.cpuprofile')).sort()) inputs.push(join(dir, f))
  if (inputs.length === 0) { process.stderr.write('flame: no .cpuprofile given (see --help)\n'); process.exit(2) }
  for (const f of inputs) {
    const { written, folded } = writeFlame(f, out, basename(f, '.cpuprofile'), { keepIdle, title, minWidth })
    for (const w of written) process.stdout.write(`wrote ${w}\n`)
    if (stages) {
      process.stdout.write(`\n${basename(f)}: CPU by stage${requests ? ` (${requests} requests)` : ''}\n`)
      for (const r of stageTable(folded, { requests })) process.stdout.write(`  ${r.ms.toFixed(1).padStart(9)} ms ${(r.share * 100).toFixed(1).padStart(5)}%${r.usPerRequest !== null ? ` ${r.usPerRequest.toFixed(2).padStart(8)} µs/request` : ''}  ${r.stage}\n`)
    }
  }
}
