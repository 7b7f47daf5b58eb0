// Direction rule (CONVENTIONS.md "Rooms and doors"): the primary side never imports proxy logic,
// transactions, stores or the worker package; it reaches frame, sip and ring only through their
// doors.
import t from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const src = fileURLToPath(new URL('../src/', import.meta.url))
const allowed = new Set(['@sipedge/frame', '@sipedge/sip', '@sipedge/ring', 'msgpackr', 'uWebSockets.js'])

const files = (readdirSync(src, { recursive: true }) as string[]).filter(f => f.endsWith('.ts'))
t.ok(files.some(f => f.startsWith('listeners')), 'files in sub-folders are checked too')
for (const f of files) {
  t.test(f, async t => {
    const text = readFileSync(src + f, 'utf8')
    for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'";=(]*?\bfrom\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)) {
      const spec = (m[1] ?? m[2])!
      if (spec.startsWith('.') || spec.startsWith('node:')) continue
      t.ok(allowed.has(spec), `${f} imports ${spec}`)
    }
  })
}
