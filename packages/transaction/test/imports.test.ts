// The package's door and direction (docs/contracts.md): src imports only @sipedge/sip, node:
// built-ins and its own relative modules; nothing reaches into another package's internals.
// And inside the package the modules form no import circle, type-only imports included: the
// machines reach the layer through the TransactionHost interface (host.ts), never layer.ts.
import t from 'tap'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const src = fileURLToPath(new URL('../src/', import.meta.url))

function sources(): Map<string, string> {
  const files = new Map<string, string>()
  for (const f of fs.readdirSync(src).filter(f => f.endsWith('.ts'))) files.set(f, fs.readFileSync(path.join(src, f), 'utf8'))
  return files
}

/** Comments out of the way, so that an import in a comment counts for nothing. */
function stripComments(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '')
}

/**
 * Every module specifier a file names: `import ... from`, `import type ... from`, `export ...
 * from`, `export type ... from`, side-effect `import '...'`, and `import('...')` (a dynamic
 * import or an inline type import).
 */
function specifiers(text: string): string[] {
  const code = stripComments(text)
  const out: string[] = []
  for (const m of code.matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]/gm)) out.push(m[1]!)
  for (const m of code.matchAll(/^\s*import\s+['"]([^'"]+)['"]/gm)) out.push(m[1]!)
  for (const m of code.matchAll(/\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g)) out.push(m[1]!)
  return out
}

/** The package's own modules each file imports, by file name (`./x.js` -> `x.ts`). */
function graph(files: Map<string, string>): Map<string, string[]> {
  const g = new Map<string, string[]>()
  for (const [f, text] of files) {
    const deps: string[] = []
    for (const spec of specifiers(text)) {
      const m = /^\.\/([\w-]+)\.js$/.exec(spec)
      if (m !== null) deps.push(m[1]! + '.ts')
    }
    g.set(f, deps)
  }
  return g
}

/** One import circle as a path (first file repeated at the end), or null when there is none. */
function findCycle(g: Map<string, string[]>): string[] | null {
  const state = new Map<string, 1 | 2>() // 1: on the current path, 2: done
  const stack: string[] = []
  const visit = (f: string): string[] | null => {
    state.set(f, 1)
    stack.push(f)
    for (const d of g.get(f) ?? []) {
      const s = state.get(d)
      if (s === 1) return [...stack.slice(stack.indexOf(d)), d]
      if (s === undefined) {
        const c = visit(d)
        if (c !== null) return c
      }
    }
    stack.pop()
    state.set(f, 2)
    return null
  }
  for (const f of [...g.keys()].sort()) {
    if (state.get(f) === undefined) {
      const c = visit(f)
      if (c !== null) return c
    }
  }
  return null
}

t.test('imports point one way: sip <- transaction', async t => {
  const files = sources()
  t.ok(files.size > 5)
  for (const [f, text] of files) {
    for (const spec of specifiers(text)) {
      const ok = spec === '@sipedge/sip' || spec.startsWith('node:') || /^\.\/[\w-]+\.js$/.test(spec)
      t.ok(ok, `${f}: ${spec}`)
    }
  }
})

t.test('no import circle inside the package, type-only imports included', async t => {
  const g = graph(sources())
  for (const [f, deps] of g) {
    for (const d of deps) t.ok(g.has(d), `${f} imports ${d}, which exists`)
  }
  const cycle = findCycle(g)
  t.equal(cycle, null, cycle === null ? 'no circle' : `import circle: ${cycle.join(' -> ')}`)
})

t.test('the machines never import the layer: only the door does', async t => {
  const g = graph(sources())
  const importers = [...g].filter(([, deps]) => deps.includes('layer.ts')).map(([f]) => f)
  t.same(importers, ['index.ts'])
  for (const m of ['ict.ts', 'nict.ts', 'ist.ts', 'nist.ts']) t.ok(g.has(m), `one file per RFC machine: ${m}`)
})

t.test('the circle check sees type-only, re-export and inline type imports', async t => {
  const cases: Array<[string, Record<string, string>]> = [
    ['import type', { 'a.ts': "import type { B } from './b.js'\n", 'b.ts': "import { A } from './a.js'\n" }],
    ['multi-line import type', { 'a.ts': "import type {\n  B,\n  C,\n} from './b.js'\n", 'b.ts': "import type { A } from './a.js'\n" }],
    ['export type from', { 'a.ts': "export type { B } from './b.js'\n", 'b.ts': "import type { A } from './a.js'\n" }],
    ['inline import() type', { 'a.ts': "let x: import('./b.js').B\n", 'b.ts': "import type { A } from './a.js'\n" }],
    ['three files', { 'a.ts': "import type { B } from './b.js'\n", 'b.ts': "import { C } from './c.js'\n", 'c.ts': "export { A } from './a.js'\n" }],
  ]
  for (const [name, files] of cases) {
    t.ok(findCycle(graph(new Map(Object.entries(files)))), name)
  }
  const clean = { 'a.ts': "import type { B } from './b.js'\n// import { A } from './a.js'\n", 'b.ts': "/* import type { A } from './a.js' */\nexport type B = 1\n" }
  t.equal(findCycle(graph(new Map(Object.entries(clean)))), null, 'imports inside comments do not count')
})
