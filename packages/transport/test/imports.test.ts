// Direction rule (CONVENTIONS.md "Rooms and doors"): the primary side never imports proxy logic,
// transactions, stores or the worker package; it reaches sip and ring only through their doors.
import t from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const src = fileURLToPath(new URL('../src/', import.meta.url))
const allowed = new Set(['@sipedge/sip', '@sipedge/ring', 'msgpackr', 'uWebSockets.js'])

for (const f of readdirSync(src).filter(f => f.endsWith('.ts'))) {
  t.test(f, async t => {
    const text = readFileSync(src + f, 'utf8')
    for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)[^'"\n]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)) {
      const spec = (m[1] ?? m[2])!
      if (spec.startsWith('.') || spec.startsWith('node:')) continue
      t.ok(allowed.has(spec), `${f} imports ${spec}`)
    }
  })
}
