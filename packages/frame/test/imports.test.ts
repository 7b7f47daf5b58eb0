// @sipedge/frame is shared by the primary and the workers: it imports no package at all (no
// runtime dependency, nothing about SIP), only its own files.
import t from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const src = fileURLToPath(new URL('../src/', import.meta.url))
const files = readdirSync(src).filter(f => f.endsWith('.ts'))
t.ok(files.length >= 4, 'sources found')
for (const f of files) {
  const text = readFileSync(src + f, 'utf8')
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\b[^'";=(]*?\bfrom\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)) {
    const spec = (m[1] ?? m[2])!
    t.ok(spec.startsWith('./'), `${f} imports ${spec}`)
  }
}
const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { dependencies?: Record<string, string> }
t.same(pkg.dependencies ?? {}, {}, 'no runtime dependencies')
