// The package's door and direction (docs/contracts.md): src imports only @sipedge/sip, node:
// built-ins and its own relative modules; nothing reaches into another package's internals.
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const src = fileURLToPath(new URL('../src/', import.meta.url))

t.test('imports point one way: sip <- transaction', async t => {
  const files = fs.readdirSync(src).filter(f => f.endsWith('.ts'))
  t.ok(files.length > 5)
  for (const f of files) {
    const text = fs.readFileSync(path.join(src, f), 'utf8')
    for (const m of text.matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]/gm)) {
      const spec = m[1]!
      const ok = spec === '@sipedge/sip' || spec.startsWith('node:') || /^\.\/[\w-]+\.js$/.test(spec)
      t.ok(ok, `${f}: ${spec}`)
    }
  }
})
