// SVG plot of a harness run, drawn here (no plotting dependency): CPU per 1,000 requests, p99
// (one way) and NOTIFY round-trip p99 against S, one line per target. Each point is the median of
// its repeats, with a bar from the lowest to the highest repeat; hollow points are steps over a
// clean threshold. Latency panels use a log scale (0.1 ms to 1 s spans four decades).

const COLORS = { sipedge: '#1f6feb', 'sipedge-default': '#8250df', kamailio: '#e36209' }
const EXTRA = ['#1a7f37', '#cf222e', '#6e7781', '#bf8700']

export function svg(run) {
  const series = {}
  const seen = new Set()
  for (const x of [...run.summaries, ...Object.values(run.steps).flatMap(s => s.steps)]) {
    const key = `${x.target}@${x.S}`
    if (seen.has(key)) continue // a step reusing the fixed-scale runs
    seen.add(key);
    (series[x.target] ??= []).push(x)
  }
  for (const s of Object.values(series)) s.sort((a, b) => a.S - b.S)
  let extra = 0
  const color = {}
  for (const t of Object.keys(series)) color[t] = COLORS[t] ?? EXTRA[extra++ % EXTRA.length]
  const W = 1380, H = 400, pw = 380, ph = 260, top = 56, lefts = [70, 530, 990]
  const maxS = Math.max(1, ...Object.values(series).flat().map(x => x.S))
  const fig = (x, path) => x.figures[path] ?? { median: null, min: null, max: null }
  const panels = [
    { title: 'CPU ms per 1,000 requests (node under test)', path: 'cpu.msPer1kRequests', log: false, refs: [[95, 'target at S=20: 95']] },
    { title: 'p99 one-way added latency (ms, log)', path: 'latencyMs.p99', log: true, refs: [[50, 'clean: ≤ 50']] },
    { title: 'NOTIFY round trip p99 (ms, log)', path: 'notifyRoundTripMs.p99', log: true, refs: [[2, 'target S=1: < 2'], [10, 'target S=20: < 10']] },
  ]
  let out = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">\n<rect width="100%" height="100%" fill="white"/>\n`
  out += `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">Production mix vs scale S — ${esc(run.date.slice(0, 10))}, ${esc(run.machine.cpu)} (${run.machine.cores} cores), load avg ${run.loadAverage.start[0]}; medians of ${run.options?.repeats ?? 1}, bars min–max</text>\n`
  panels.forEach((p, pi) => {
    const x0 = lefts[pi]
    const vals = [...Object.values(series).flat().flatMap(x => [fig(x, p.path).median, fig(x, p.path).max]), ...p.refs.map(r => r[0])].filter(v => typeof v === 'number' && v > 0)
    const sx = (s) => x0 + (s / maxS) * pw
    let sy, ticks
    if (p.log) {
      const lo = Math.pow(10, Math.floor(Math.log10(Math.max(0.01, Math.min(1, ...vals)))))
      const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(lo * 10, ...vals))))
      sy = (v) => top + ph - (Math.log10(Math.max(lo, v)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo)) * ph
      ticks = []
      for (let t = lo; t <= hi * 1.0001; t *= 10) ticks.push(t)
    } else {
      const maxY = niceMax(Math.max(1e-3, ...vals))
      sy = (v) => top + ph - (v / maxY) * ph
      ticks = Array.from({ length: 6 }, (_, i) => maxY * i / 5)
    }
    out += `<text x="${x0 + pw / 2}" y="${top - 14}" text-anchor="middle" font-size="13">${esc(p.title)}</text>\n`
    out += `<line x1="${x0}" y1="${top + ph}" x2="${x0 + pw}" y2="${top + ph}" stroke="#333"/><line x1="${x0}" y1="${top}" x2="${x0}" y2="${top + ph}" stroke="#333"/>\n`
    for (const v of ticks) {
      const y = sy(v)
      out += `<line x1="${x0}" y1="${y.toFixed(1)}" x2="${x0 + pw}" y2="${y.toFixed(1)}" stroke="#eee"/><text x="${x0 - 6}" y="${(y + 4).toFixed(1)}" text-anchor="end">${+v.toPrecision(3)}</text>\n`
    }
    for (let i = 0; i <= 5; i++) {
      const s = maxS * i / 5
      out += `<text x="${sx(s).toFixed(1)}" y="${top + ph + 16}" text-anchor="middle">${+s.toFixed(1)}</text>\n`
    }
    out += `<text x="${x0 + pw / 2}" y="${top + ph + 34}" text-anchor="middle">S (1 = 210 req/s)</text>\n`
    for (const [v, label] of p.refs) {
      const y = sy(v).toFixed(1)
      out += `<line x1="${x0}" y1="${y}" x2="${x0 + pw}" y2="${y}" stroke="#999" stroke-dasharray="5,4"/><text x="${x0 + pw - 4}" y="${(+y - 4).toFixed(1)}" text-anchor="end" fill="#777" font-size="11">${esc(label)}</text>\n`
    }
    for (const [target, xs] of Object.entries(series)) {
      const c = color[target]
      const pts = xs.filter(x => typeof fig(x, p.path).median === 'number').map(x => ({ x: sx(x.S), y: sy(fig(x, p.path).median), lo: sy(fig(x, p.path).min), hi: sy(fig(x, p.path).max), r: x }))
      if (pts.length > 1) out += `<polyline fill="none" stroke="${c}" stroke-width="2" points="${pts.map(q => `${q.x.toFixed(1)},${q.y.toFixed(1)}`).join(' ')}"/>\n`
      for (const q of pts) {
        if (q.r.repeats > 1 && Math.abs(q.lo - q.hi) > 0.5) out += `<line x1="${q.x.toFixed(1)}" y1="${q.lo.toFixed(1)}" x2="${q.x.toFixed(1)}" y2="${q.hi.toFixed(1)}" stroke="${c}" stroke-width="1.5"/>\n`
        const v = fig(q.r, p.path)
        out += `<circle cx="${q.x.toFixed(1)}" cy="${q.y.toFixed(1)}" r="3.5" fill="${q.r.clean ? c : 'white'}" stroke="${c}"><title>${esc(target)} S=${q.r.S}: ${v.median}${q.r.repeats > 1 ? ` (min ${v.min}, max ${v.max}, ${q.r.repeats} repeats)` : ''}</title></circle>\n`
      }
    }
  })
  let lx = 70
  for (const target of Object.keys(series)) {
    out += `<rect x="${lx}" y="${H - 22}" width="14" height="4" fill="${color[target]}"/><text x="${lx + 20}" y="${H - 16}">${esc(target)}</text>\n`
    lx += 150
  }
  out += `<text x="${lx}" y="${H - 16}">filled dot: clean (median of the repeats); hollow: over a threshold</text>\n</svg>\n`
  return out
}

function niceMax(v) {
  const e = 10 ** Math.floor(Math.log10(v))
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * e) return m * e
  return 10 * e
}

function esc(s) { return String(s).replace(/[<>&"]/g, c => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]) }
