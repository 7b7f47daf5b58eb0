// docs/metrics.md names exactly the metrics the registry defines, with their types.
import { readFileSync } from 'node:fs'
import t from 'tap'
import { createMetricsRegistry } from '../dist/index.js'

const doc = readFileSync(new URL('../../../docs/metrics.md', import.meta.url), 'utf8')

t.test('docs/metrics.md lists every metric, and no other', async t => {
  const rows = [...doc.matchAll(/^\| `(sipedge_[a-z0-9_]+)` \| (counter|gauge|histogram) \|/gm)].map(m => [m[1]!, m[2]!] as const)
  const documented = new Map(rows)
  t.equal(documented.size, rows.length, 'no metric documented twice')
  const defined = new Map(createMetricsRegistry().describe().map(d => [d.name, d.type]))
  t.same([...documented.keys()].filter(n => !defined.has(n)), [], 'documented but not defined')
  t.same([...defined.keys()].filter(n => !documented.has(n)), [], 'defined but not documented')
  for (const [name, type] of defined) t.equal(documented.get(name), type, `${name} type`)
})

t.test('alert rules and the dashboard use only defined metrics', async t => {
  const defs = createMetricsRegistry().describe()
  const names = new Set(defs.flatMap(d => (d.type === 'histogram' ? [d.name, `${d.name}_bucket`, `${d.name}_sum`, `${d.name}_count`] : [d.name])))
  const files = ['deploy/prometheus/sipedge-alerts.yml', 'deploy/grafana/sipedge-dashboard.json', 'docs/metrics.md', 'docs/operations-observability.md']
  for (const f of files) {
    const text = readFileSync(new URL(`../../../${f}`, import.meta.url), 'utf8')
    if (f.endsWith('.json')) t.doesNotThrow(() => JSON.parse(text), `${f} is JSON`)
    const used = new Set([...text.matchAll(/\bsipedge_[a-z0-9_]+/g)].map(m => m[0]))
    t.ok(used.size > 0, `${f} uses metrics`)
    t.same([...used].filter(n => !names.has(n)), [], `${f}: unknown metric names`)
  }
})
