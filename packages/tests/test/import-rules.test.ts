// The import direction of every package (ARCHITECTURE.md "Layout", CONVENTIONS.md "Rooms and
// doors"; issue 11): sip <- transaction <- proxy (core) <- modules <- workers; frame and ring are
// shared by the primary and the workers and never import SIP routing; the core never imports a
// module; a module reaches another only through that one's door (src/<b>/index.ts).
//
// Reads every workspace package's sources (src/**/*.ts; benchmarks: its .mjs files) - static
// imports, `export ... from`, `import type`, side-effect imports, dynamic `import('x')`,
// `require('x')` and `new URL('./x.js', import.meta.url)` entry points - and package.json
// dependencies, and checks them against MATRIX below. Also: relative imports stay inside their
// package; other packages are reached only through their door (`@sipedge/x` or a subpath the
// package exports, such as `@sipedge/workers/worker`); no import cycle between the files of a
// package (type-only imports included). Pure file reading: no sockets, no build needed.
import t from 'tap'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))

// ------------------------------------------------------------------------------------ the matrix

interface Rule {
  /** workspace packages its sources may import (short names: 'sip' = @sipedge/sip); '*' = any */
  allow: readonly string[] | '*'
  /** with allow '*': the ones it still may not import */
  deny?: readonly string[]
  /** allowed only as `import type` / `export type` (no runtime edge) */
  typeOnly?: readonly string[]
  /** third-party packages it may not import */
  denyThirdParty?: readonly string[]
}

const MATRIX: Record<string, Rule> = {
  sip: { allow: [] },
  frame: { allow: [] },
  ring: { allow: ['frame'] },
  config: { allow: [] },
  log: { allow: [] },
  metrics: { allow: [] },
  store: { allow: ['config'] },
  transaction: { allow: ['sip'] },
  // the core: never a store backend, never a module, never the primary's I/O side
  proxy: { allow: ['sip', 'transaction', 'config'] },
  // modules use the store's types and key codecs (dialogId, bindingKey); the worker host opens the
  // stores and hands them in: no module calls openStores (checked below)
  modules: { allow: ['proxy', 'sip', 'transaction', 'config', 'store'] },
  // the primary's I/O: no SIP routing, no state
  transport: { allow: ['sip', 'ring', 'frame'], denyThirdParty: ['lmdb', 'ioredis'] },
  workers: { allow: '*', deny: ['cli', 'tests', 'benchmarks', 'test-utils'] },
  cli: { allow: '*', deny: ['tests', 'benchmarks', 'test-utils'] },
  // test helpers (redis-server for the store tests): used by tests only, imports nothing of ours
  'test-utils': { allow: [] },
  tests: { allow: '*' },
  benchmarks: { allow: '*' },
}

/**
 * Violations tolerated for now: each one found is reported, not failed; one that no longer occurs
 * fails ("stale"), so this list can only shrink. Empty since the core/modules refactor.
 */
const KNOWN_VIOLATIONS: readonly string[] = []

// ------------------------------------------------------------------------------- reading sources

/**
 * `text` with comments blanked and every string literal replaced by its number in `strings`
 * (`'#3'`), so neither commented-out code nor text inside a string reads as an import.
 * Line breaks are kept, so offsets still give line numbers.
 */
export function lex(text: string): { code: string; strings: string[] } {
  let code = ''
  const strings: string[] = []
  let i = 0
  const n = text.length
  while (i < n) {
    const c = text[i]!
    const d = text[i + 1]
    if (c === '/' && d === '/') {
      while (i < n && text[i] !== '\n') i++
    } else if (c === '/' && d === '*') {
      const e = text.indexOf('*/', i + 2)
      const end = e < 0 ? n : e + 2
      code += text.slice(i, end).replace(/[^\n]/g, ' ')
      i = end
    } else if (c === '/' && regexMayStart(code)) {
      // a regular expression literal: skip it whole (its quotes are no strings)
      let j = i + 1
      let cls = false
      while (j < n && text[j] !== '\n' && (cls || text[j] !== '/')) {
        if (text[j] === '\\') j++
        else if (text[j] === '[') cls = true
        else if (text[j] === ']') cls = false
        j++
      }
      code += ' '.repeat(j + 1 - i)
      i = j + 1
    } else if (c === '"' || c === "'" || c === '`') {
      let j = i + 1
      while (j < n && text[j] !== c) {
        if (text[j] === '\\') j++
        else if (c !== '`' && text[j] === '\n') break
        j++
      }
      const body = text.slice(i + 1, j)
      code += c + '#' + strings.length + c + body.replace(/[^\n]/g, '')
      strings.push(body)
      i = j + 1
    } else {
      code += c
      i++
    }
  }
  return { code, strings }
}

/** A `/` after these (or at the start, or after `return`/`typeof`) begins a regex literal, not a division. */
function regexMayStart(before: string): boolean {
  const m = /(\S*)\s*$/.exec(before.slice(-40))
  const last = m?.[1] ?? ''
  if (last === '') return true
  if (/(^|[^\w$])(return|typeof|case|of|in|void|yield|await)$/.test(last)) return true
  return '(,=:[!&|?{};+-*%<>~^'.includes(last[last.length - 1]!)
}

export interface ImportRef { spec: string; typeOnly: boolean; line: number }

const STR = `(['"\`])#(\\d+)`
const RE_FROM = new RegExp(`\\b(import|export)\\s+(type\\s+)?((?:[\\w$]+\\s*,\\s*)?(?:\\{[^}]*\\}|\\*\\s*(?:as\\s+[\\w$]+)?|[\\w$]+))\\s*from\\s*${STR}\\4`, 'g')
const RE_SIDE = new RegExp(`\\bimport\\s*${STR}\\1`, 'g')
const RE_DYNAMIC = new RegExp(`\\b(typeof\\s+)?(?:import|require)\\s*\\(\\s*${STR}\\2\\s*\\)`, 'g')
const RE_URL = new RegExp(`\\bnew\\s+URL\\(\\s*${STR}\\1\\s*,\\s*import\\.meta\\.url\\s*\\)`, 'g')

/** Every module a source file refers to. `import { type A }` is not type-only (verbatimModuleSyntax keeps it). */
export function importsOf(source: string): ImportRef[] {
  const { code, strings } = lex(source)
  const starts = [0]
  for (let i = 0; i < code.length; i++) if (code.charCodeAt(i) === 10) starts.push(i + 1)
  const lineAt = (k: number): number => { let l = 0; while (l + 1 < starts.length && starts[l + 1]! <= k) l++; return l + 1 }
  const out: ImportRef[] = []
  const add = (n: string, typeOnly: boolean, at: number): void => { out.push({ spec: strings[Number(n)]!, typeOnly, line: lineAt(at) }) }
  for (const m of code.matchAll(RE_FROM)) add(m[5]!, m[2] !== undefined, m.index)
  for (const m of code.matchAll(RE_SIDE)) add(m[2]!, false, m.index)
  for (const m of code.matchAll(RE_DYNAMIC)) add(m[3]!, m[1] !== undefined, m.index)
  // worker and handler entry files loaded by URL are modules of the package too
  for (const m of code.matchAll(RE_URL)) if (/^\.{1,2}\/.*\.js$/.test(strings[Number(m[2])]!)) add(m[2]!, false, m.index)
  return out
}

interface Pkg { short: string; name: string; dir: string; json: Record<string, unknown>; files: string[] }

function listFiles(dir: string, exts: RegExp, skip: Set<string>): string[] {
  const out: string[] = []
  if (!fs.existsSync(dir)) return out
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) { if (!skip.has(e.name)) out.push(...listFiles(p, exts, skip)) } else if (exts.test(e.name) && !e.name.endsWith('.d.ts')) out.push(p)
  }
  return out.sort()
}

/** The workspace packages, from pnpm-workspace.yaml (`packages/*`, `workers`, `benchmarks`). */
function workspacePackages(): Pkg[] {
  const yaml = fs.readFileSync(path.join(ROOT, 'pnpm-workspace.yaml'), 'utf8')
  const block = /^packages:\n((?:\s+-.*\n)+)/m.exec(yaml)
  const globs = (block?.[1] ?? '').split('\n').map(l => l.replace(/^\s*-\s*/, '').replace(/['"]/g, '').trim()).filter(Boolean)
  const dirs: string[] = []
  for (const g of globs) {
    if (g.endsWith('/*')) {
      const base = path.join(ROOT, g.slice(0, -2))
      for (const e of fs.readdirSync(base, { withFileTypes: true })) if (e.isDirectory()) dirs.push(path.join(base, e.name))
    } else {
      dirs.push(path.join(ROOT, g))
    }
  }
  const pkgs: Pkg[] = []
  for (const dir of dirs) {
    const pj = path.join(dir, 'package.json')
    if (!fs.existsSync(pj)) continue
    const json = JSON.parse(fs.readFileSync(pj, 'utf8')) as Record<string, unknown>
    const name = String(json.name)
    const short = name.startsWith('@sipedge/') ? name.slice('@sipedge/'.length) : name
    const src = path.join(dir, 'src')
    const files = fs.existsSync(src)
      ? listFiles(src, /\.ts$/, new Set())
      : listFiles(dir, /\.(mjs|js|ts)$/, new Set(['node_modules', 'dist', 'results', 'test']))
    pkgs.push({ short, name, dir, json, files })
  }
  return pkgs
}

// ----------------------------------------------------------------------------------- the checks

const rel = (p: string): string => path.relative(ROOT, p).split(path.sep).join('/')

function allowedInternal(rule: Rule, target: string, typeOnly: boolean): boolean {
  if (rule.allow === '*') return !(rule.deny ?? []).includes(target)
  if (rule.allow.includes(target)) return true
  return typeOnly && (rule.typeOnly ?? []).includes(target)
}

/** The .ts file a relative import names (`./x.js` -> x.ts, a folder -> its index.ts), or undefined. */
function resolveRelative(from: string, spec: string): string | undefined {
  const base = path.resolve(path.dirname(from), spec)
  for (const c of [base.replace(/\.js$/, '.ts'), base.replace(/\.mjs$/, '.mts'), base, base + '.ts', path.join(base, 'index.ts')]) {
    if (fs.existsSync(c) && fs.statSync(c).isFile()) return c
  }
  return undefined
}

/** Entries of a package.json "exports" map other packages may name: '.', './worker', ... */
function exportKeys(json: Record<string, unknown>): Set<string> {
  const ex = json.exports
  if (ex === undefined || typeof ex === 'string') return new Set(['.'])
  return new Set(Object.keys(ex as Record<string, unknown>).filter(k => k.startsWith('.')))
}

/**
 * Hook for the module declarations (ARCHITECTURE.md: each module exports one declaration with
 * its dependencies): the names listed in `requires: [...]` in modules/src/<name>/index.ts, or
 * undefined while that module has no such declaration (then only the door rule applies).
 */
export function declaredModuleRequires(modulesSrc: string, name: string): string[] | undefined {
  const f = path.join(modulesSrc, name, 'index.ts')
  if (!fs.existsSync(f)) return undefined
  const { code, strings } = lex(fs.readFileSync(f, 'utf8'))
  const m = /\brequires\s*:\s*\[([^\]]*)\]/.exec(code)
  if (m === null) return undefined
  return [...m[1]!.matchAll(/['"`]#(\d+)['"`]/g)].map(x => strings[Number(x[1])]!)
}

/**
 * The import cycles among `edges` (file -> files): one per strongly connected component, as its
 * files (sorted) and one concrete path through them, smallest file -> ... -> smallest file.
 */
export function findCycles(edges: Map<string, Set<string>>): Array<{ files: string[]; path: string[] }> {
  let index = 0
  const idx = new Map<string, number>()
  const low = new Map<string, number>()
  const stack: string[] = []
  const on = new Set<string>()
  const sccs: string[][] = []
  const strong = (v: string): void => {
    idx.set(v, index); low.set(v, index); index++
    stack.push(v); on.add(v)
    for (const w of edges.get(v) ?? []) {
      if (!idx.has(w)) { strong(w); low.set(v, Math.min(low.get(v)!, low.get(w)!)) } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!))
    }
    if (low.get(v) === idx.get(v)) {
      const c: string[] = []
      let w: string
      do { w = stack.pop()!; on.delete(w); c.push(w) } while (w !== v)
      if (c.length > 1 || edges.get(v)?.has(v) === true) sccs.push(c.sort())
    }
  }
  for (const v of [...edges.keys()].sort()) if (!idx.has(v)) strong(v)
  return sccs.map(files => {
    // breadth-first from the smallest file back to itself, inside the component
    const inC = new Set(files)
    const start = files[0]!
    const prev = new Map<string, string>()
    const queue = [start]
    for (let q = 0; q < queue.length; q++) {
      const v = queue[q]!
      for (const w of [...(edges.get(v) ?? [])].sort()) {
        if (!inC.has(w)) continue
        if (w === start) {
          const p = [start]
          for (let x: string | undefined = v; x !== undefined && x !== start; x = prev.get(x)) p.splice(1, 0, x)
          return { files, path: [...p, start] }
        }
        if (!prev.has(w)) { prev.set(w, v); queue.push(w) }
      }
    }
    return { files, path: [start, start] }
  })
}

interface Finding { key: string; where: string }

function checkPackage(p: Pkg, byName: Map<string, Pkg>): Finding[] {
  const rule = MATRIX[p.short]!
  const out: Finding[] = []
  const edges = new Map<string, Set<string>>()
  const modulesSrc = p.short === 'modules' ? path.join(p.dir, 'src') : undefined
  const declared = new Set(['dependencies', 'peerDependencies', 'optionalDependencies', 'devDependencies']
    .flatMap(k => Object.keys((p.json[k] ?? {}) as Record<string, string>)))
  for (const f of p.files) {
    edges.set(f, new Set())
    for (const ref of importsOf(fs.readFileSync(f, 'utf8'))) {
      const where = `${rel(f)}:${ref.line}`
      const spec = ref.spec
      if (spec.startsWith('.')) {
        const target = path.resolve(path.dirname(f), spec)
        if (!(target + path.sep).startsWith(p.dir + path.sep)) {
          out.push({ key: `${p.name}: relative import leaves the package (${spec})`, where })
          continue
        }
        const file = resolveRelative(f, spec)
        if (file === undefined || !p.files.includes(file)) continue // a data file, a folder of scenarios
        edges.get(f)!.add(file)
        if (modulesSrc !== undefined) out.push(...checkModuleFolders(modulesSrc, f, file, where))
        continue
      }
      if (spec.startsWith('node:')) continue
      const scoped = /^(@[^/]+\/[^/]+|[^@/][^/]*)(\/.*)?$/.exec(spec)
      if (scoped === null) continue
      const pkgName = scoped[1]!
      const sub = scoped[2]
      const target = byName.get(pkgName)
      if (pkgName.startsWith('@sipedge/')) {
        const short = pkgName.slice('@sipedge/'.length)
        if (target === undefined && !(short in MATRIX)) {
          out.push({ key: `${p.name} imports unknown workspace package ${pkgName}`, where })
          continue
        }
        if (sub !== undefined && (target === undefined || !exportKeys(target.json).has('.' + sub))) {
          out.push({ key: `${p.name} reaches past the door of ${pkgName} (${spec})`, where })
        }
        if (short !== p.short && !declared.has(pkgName)) out.push({ key: `${p.name} imports ${pkgName} without declaring it in package.json`, where })
        if (short !== p.short && !allowedInternal(rule, short, ref.typeOnly)) {
          const how = (rule.typeOnly ?? []).includes(short) ? ' (only `import type` is allowed)' : ''
          out.push({ key: `${p.name} imports ${pkgName}${how}`, where })
        }
        continue
      }
      if ((rule.denyThirdParty ?? []).includes(pkgName)) out.push({ key: `${p.name} imports ${pkgName}`, where })
    }
  }
  const short = (x: string): string => path.relative(p.dir, x).split(path.sep).join('/')
  for (const c of findCycles(edges)) {
    out.push({ key: `${p.name}: import cycle among ${c.files.map(short).join(', ')}`, where: c.path.map(short).join(' -> ') })
  }
  // package.json: what it may depend on at run time; devDependencies may add test helpers
  for (const field of ['dependencies', 'peerDependencies', 'optionalDependencies', 'devDependencies']) {
    const deps = (p.json[field] ?? {}) as Record<string, string>
    for (const dep of Object.keys(deps)) {
      if (!dep.startsWith('@sipedge/')) {
        if (field !== 'devDependencies' && (rule.denyThirdParty ?? []).includes(dep)) out.push({ key: `${p.name} package.json depends on ${dep}`, where: rel(path.join(p.dir, 'package.json')) })
        continue
      }
      const short = dep.slice('@sipedge/'.length)
      const ok = allowedInternal(rule, short, field === 'devDependencies') || (field === 'devDependencies' && short === 'test-utils')
      if (!ok) out.push({ key: `${p.name} package.json ${field} has ${dep}`, where: rel(path.join(p.dir, 'package.json')) })
    }
  }
  return out
}

/** modules/src/<a>/... may reach modules/src/<b>/ only through src/<b>/index.ts, and only if <a> declares <b>. */
function checkModuleFolders(src: string, from: string, to: string, where: string): Finding[] {
  const a = path.relative(src, from).split(path.sep)
  const b = path.relative(src, to).split(path.sep)
  if (a.length < 2 || b.length < 2 || a[0] === b[0]) return [] // a file at src/ root, or inside one module
  const out: Finding[] = []
  if (b.length !== 2 || b[1] !== 'index.ts') out.push({ key: `@sipedge/modules: module ${a[0]} reaches past the door of module ${b[0]} (${b.join('/')})`, where })
  const declared = declaredModuleRequires(src, a[0]!)
  if (declared !== undefined && !declared.includes(b[0]!)) out.push({ key: `@sipedge/modules: module ${a[0]} imports module ${b[0]} without declaring it in requires`, where })
  return out
}

// ------------------------------------------------------------------------------------- the test

const packages = workspacePackages()
const byShort = new Map(packages.map(p => [p.short, p]))
const byName = new Map(packages.map(p => [p.name, p]))

t.test('every workspace package is in the matrix', async t => {
  for (const p of packages) t.ok(p.short in MATRIX, `${p.name} (${rel(p.dir)}) has a rule in MATRIX`)
  for (const short of Object.keys(MATRIX)) if (!byShort.has(short)) t.comment(`@sipedge/${short} does not exist yet: skipped`)
  t.ok(packages.length >= 10, 'found the workspace packages')
})

t.test('import direction, doors and cycles', async t => {
  const found = new Map<string, string[]>()
  for (const p of packages) {
    if (!(p.short in MATRIX)) continue
    t.ok(p.files.length > 0, `${p.name}: has sources to check`)
    for (const f of checkPackage(p, byName)) {
      const w = found.get(f.key) ?? []
      w.push(f.where)
      found.set(f.key, w)
    }
  }
  for (const [key, where] of [...found].sort()) {
    if (KNOWN_VIOLATIONS.includes(key)) t.comment(`known (removed by the core/modules refactor): ${key} at ${where.join(', ')}`)
    else t.fail(`${key} at ${where.join(', ')}`)
  }
  for (const key of KNOWN_VIOLATIONS) t.ok(found.has(key), `known violation still occurs (else remove it from KNOWN_VIOLATIONS): ${key}`)
})

// The scanner itself, on the shapes it must see (a missed shape would let a violation through).
t.test('the scanner finds every import form', async t => {
  const src = [
    "import a from '@sipedge/a'",
    "import { b1,\n  b2 } from '@sipedge/b'",
    "import type { C } from '@sipedge/c'",
    "import { type D } from '@sipedge/d'",
    "import * as e from '@sipedge/e'",
    "export * from './f.js'",
    "export type { G } from './g.js'",
    "import 'side-effect'",
    "const h = await import('@sipedge/h')",
    "type I = typeof import('@sipedge/i')",
    "const j = require('lmdb')",
    "new Worker(new URL('./k.js', import.meta.url))",
    "// import x from '@sipedge/commented'",
    "/* import y from '@sipedge/block' */",
    "const s = 'import z from \"@sipedge/in-a-string\"'",
    "const re = /['\"`]/g; const q = a / b / c",
    "export { l } from '@sipedge/l'",
  ].join('\n')
  t.same(importsOf(src).map(r => [r.spec, r.typeOnly]).sort(), [
    ['./f.js', false], ['./g.js', true], ['./k.js', false], ['@sipedge/a', false], ['@sipedge/b', false], ['@sipedge/c', true],
    ['@sipedge/d', false], ['@sipedge/e', false], ['@sipedge/h', false], ['@sipedge/i', true], ['@sipedge/l', false], ['lmdb', false], ['side-effect', false],
  ].sort())
})

t.test('cycles are found and reported as a path', async t => {
  const g = new Map<string, Set<string>>([['a', new Set(['b'])], ['b', new Set(['c'])], ['c', new Set(['a', 'd', 'b'])], ['d', new Set()], ['e', new Set(['e'])]])
  t.same(findCycles(g).map(c => c.files.join(',') + ': ' + c.path.join(' -> ')).sort(), ['a,b,c: a -> b -> c -> a', 'e: e -> e'])
  t.same(findCycles(new Map([['a', new Set(['b'])], ['b', new Set<string>()]])), [])
})

// Every rule on a made-up workspace, so a rule that stopped firing is noticed.
t.test('each rule fires on a made-up workspace', async t => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sipedge-import-rules-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  const write = (f: string, text: string): string => {
    const p = path.join(dir, f)
    fs.mkdirSync(path.dirname(p), { recursive: true })
    fs.writeFileSync(p, text)
    return p
  }
  const pkg = (short: string, files: string[], json: Record<string, unknown> = {}): Pkg =>
    ({ short, name: '@sipedge/' + short, dir: path.join(dir, short), json: { name: '@sipedge/' + short, ...json }, files })
  const transport = pkg('transport', [
    write('transport/src/a.ts', [
      "import { Proxy } from '@sipedge/proxy'", "import type { Store } from '@sipedge/store'", "import { open } from 'lmdb'",
      "import { x } from '../../sip/src/x.js'", "import { y } from '@sipedge/sip/dist/index.js'", "import { w } from '@sipedge/workers/worker'",
      "import { b } from './b.js'",
    ].join('\n')),
    write('transport/src/b.ts', "import type { A } from './a.js'\nimport { parseMessage } from '@sipedge/sip'"),
  ], { dependencies: { '@sipedge/proxy': 'workspace:*', ioredis: 'catalog:' }, devDependencies: { '@sipedge/test-utils': 'workspace:*' } })
  const modules = pkg('modules', [
    write('modules/src/index.ts', "export { registrar } from './registrar/index.js'\nexport { auth } from './auth/index.js'"),
    write('modules/src/registrar/index.ts', "import { check } from '../auth/digest.js'\nimport { dlg } from '../dialog/index.js'\n" +
      "import { auth } from '../auth/index.js'\nimport type { Store } from '@sipedge/store'\nexport const registrar = { name: 'registrar', requires: ['auth'] }"),
    write('modules/src/auth/index.ts', "import { store } from '@sipedge/store'\nexport const auth = { name: 'auth', requires: [] }"),
    write('modules/src/auth/digest.ts', 'export const check = 1'),
    write('modules/src/dialog/index.ts', 'export const dlg = 1'),
  ])
  const byName = new Map([transport, modules, pkg('workers', [], { exports: { '.': './dist/index.js', './worker': './dist/worker.js' } })].map(p => [p.name, p]))
  const keys = (p: Pkg): string[] => [...new Set(checkPackage(p, byName).map(f => f.key))].sort()
  t.same(keys(transport), [
    '@sipedge/transport imports @sipedge/proxy',
    '@sipedge/transport imports @sipedge/store',
    '@sipedge/transport imports @sipedge/store without declaring it in package.json',
    '@sipedge/transport imports @sipedge/sip without declaring it in package.json',
    '@sipedge/transport imports @sipedge/workers without declaring it in package.json',
    '@sipedge/transport imports @sipedge/workers',
    '@sipedge/transport imports lmdb',
    '@sipedge/transport package.json dependencies has @sipedge/proxy',
    '@sipedge/transport package.json depends on ioredis',
    '@sipedge/transport reaches past the door of @sipedge/sip (@sipedge/sip/dist/index.js)',
    '@sipedge/transport: import cycle among src/a.ts, src/b.ts',
    '@sipedge/transport: relative import leaves the package (../../sip/src/x.js)',
  ].sort())
  t.same(keys(modules), [
    '@sipedge/modules imports @sipedge/store without declaring it in package.json',
    '@sipedge/modules: module registrar imports module dialog without declaring it in requires',
    '@sipedge/modules: module registrar reaches past the door of module auth (auth/digest.ts)',
  ].sort())
  t.same(declaredModuleRequires(path.join(dir, 'modules/src'), 'registrar'), ['auth'])
  t.equal(declaredModuleRequires(path.join(dir, 'modules/src'), 'dialog'), undefined, 'no declaration yet: only the door rule')
})

t.test('modules never open a store themselves: the host does (docs/proxy.md "Modules")', async t => {
  const { readdirSync, readFileSync, statSync } = await import('node:fs')
  const root = new URL('../../modules/src/', import.meta.url)
  const walk = (dir: URL): string[] => readdirSync(dir).flatMap(f => {
    const u = new URL(f, dir)
    return statSync(u).isDirectory() ? walk(new URL(f + '/', dir)) : f.endsWith('.ts') ? [u.pathname] : []
  })
  const files = walk(root)
  t.ok(files.length > 0)
  for (const f of files) t.notMatch(readFileSync(f, 'utf8'), /\bopenStores\s*\(/, f)
})
