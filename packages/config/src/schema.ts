// A tiny schema language: every node knows how to validate a YAML node (collecting issues
// with positions, never stopping at the first), what its default is, and how to describe
// itself for docs/configuration.md.
import { isAlias, isMap, isScalar, isSeq, Scalar } from 'yaml'
import type { Document, LineCounter, Node as YNode, YAMLMap } from 'yaml'
import type { ConfigIssueCode, ConfigIssue } from './errors.js'
import { describe, formatDuration, formatSize, parseDuration, parseSize, q, suggest } from './values.js'
import type { Parsed } from './values.js'

export interface Pos { line: number; column: number }

export class Ctx {
  readonly issues: ConfigIssue[] = []
  /** Position of every value parsed, by key path: lets cross-checks point at the right line. */
  readonly positions = new Map<string, Pos>()
  readonly keyPositions = new Map<string, Pos>()
  /** Dispatcher set names used by routes, checked once the whole file is read. */
  readonly refs: Array<{ name: string; path: string }> = []
  constructor(readonly doc: Document | null, readonly lc: LineCounter | null) {}

  pos(node: YNode | null | undefined): Pos {
    const off = node?.range?.[0]
    if (off === undefined || this.lc === null) return { line: 1, column: 1 }
    const p = this.lc.linePos(off)
    return { line: p.line, column: p.col }
  }
  issue(code: ConfigIssueCode, path: string, at: Pos, message: string): void {
    this.issues.push({ path, line: at.line, column: at.column, message, code })
  }
  /** Position of a path recorded during parsing, or of its nearest recorded parent. */
  posOf(path: string): Pos {
    for (let p = path; ; ) {
      const hit = this.positions.get(p)
      if (hit) return hit
      const cut = Math.max(p.lastIndexOf('.'), p.lastIndexOf('['))
      if (cut <= 0) return this.positions.get('') ?? { line: 1, column: 1 }
      p = p.slice(0, cut)
    }
  }
}

export const BAD: unique symbol = Symbol('bad')
export type Bad = typeof BAD
export type Raw = YNode | null // null: present but empty (`key:`)

export const join = (path: string, key: string): string => (path === '' ? key : `${path}.${key}`)

function resolve(node: Raw, ctx: Ctx): Raw {
  if (node !== null && isAlias(node) && ctx.doc) return (node.resolve(ctx.doc) as YNode | undefined) ?? null
  return node
}

export type Kind = 'string' | 'number' | 'boolean' | 'null' | 'map' | 'seq'
export function kindOf(node: Raw): Kind {
  if (node === null) return 'null'
  if (isMap(node)) return 'map'
  if (isSeq(node)) return 'seq'
  if (isScalar(node)) {
    const v = node.value
    if (v === null || v === undefined) return 'null'
    if (typeof v === 'string') return 'string'
    if (typeof v === 'number' || typeof v === 'bigint') return 'number'
    if (typeof v === 'boolean') return 'boolean'
  }
  return 'string'
}
function scalarValue(node: Raw): unknown {
  if (node !== null && isScalar(node)) return typeof node.value === 'bigint' ? Number(node.value) : node.value
  if (node !== null && isMap(node)) return {}
  if (node !== null && isSeq(node)) return []
  return null
}
function got(node: Raw): string {
  const k = kindOf(node)
  if (k === 'map') return 'a mapping'
  if (k === 'seq') return 'a list'
  return describe(scalarValue(node))
}

export interface DocEntry { suffix: string; schema: Schema }

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- heterogeneous schema trees
export abstract class Schema<T = any> {
  description = ''
  hasDefault = false
  defaultValue: unknown = undefined
  defaultDoc: string | undefined
  isRequired = false
  isNullable = false
  post: ((v: T, path: string, ctx: Ctx, node: Raw) => T | Bad) | undefined
  docNote: string | undefined

  abstract typeDoc(): string
  rangeDoc(): string | undefined { return undefined }
  children(): DocEntry[] { return [] }
  protected abstract parseNode(node: Raw, path: string, ctx: Ctx): T | Bad

  desc(d: string): this { this.description = d; return this }
  note(n: string): this { this.docNote = n; return this }
  /** Default value (in normalised form); `doc` (markdown) overrides how it is shown in the docs. */
  def(v: T | null, doc?: string): this { this.hasDefault = true; this.defaultValue = v; this.defaultDoc = doc; return this }
  required(): this { this.isRequired = true; return this }
  nullable(): this { this.isNullable = true; return this }
  then(fn: (v: T, path: string, ctx: Ctx, node: Raw) => T | Bad): this {
    const prev = this.post
    this.post = prev ? (v, p, c, n) => { const r = prev(v, p, c, n); return r === BAD ? BAD : fn(r, p, c, n) } : fn
    return this
  }

  /** Default in normalised form (deep copy, so callers may mutate before freezing). */
  getDefault(): unknown {
    return structuredClone(this.defaultValue)
  }
  /** Default as markdown: `defaultDoc` verbatim (prose allowed), else the value in backticks. */
  showDefault(): string | undefined {
    if (this.defaultDoc !== undefined) return this.defaultDoc
    if (!this.hasDefault) return undefined
    return '`' + this.formatValue(this.defaultValue) + '`'
  }
  formatValue(v: unknown): string { return v === null ? 'null' : JSON.stringify(v) }

  parse(node0: Raw, path: string, ctx: Ctx): T | Bad {
    const node = resolve(node0, ctx)
    ctx.positions.set(path, ctx.pos(node ?? node0))
    if (kindOf(node) === 'null' && this.isNullable) return null as T
    const v = this.parseNode(node, path, ctx)
    if (v === BAD || this.post === undefined) return v
    return this.post(v, path, ctx, node)
  }

  protected wrongType(node: Raw, path: string, ctx: Ctx): Bad {
    ctx.issue('ERR_CONFIG_TYPE', path, ctx.pos(node), `expected ${this.typeDoc()}${this.isNullable ? ' or null' : ''}, got ${got(node)}`)
    return BAD
  }
}

// ---------------------------------------------------------------- scalars

export class StrS extends Schema<string> {
  enumValues: readonly string[] | undefined
  checkFn: ((v: string) => string | undefined) | undefined
  allowNumber = false
  lower = false
  patternDoc: string | undefined
  constructor(readonly typeName = 'string') { super() }
  oneOf(values: readonly string[]): this { this.enumValues = values; return this }
  check(fn: (v: string) => string | undefined, doc?: string): this { this.checkFn = fn; this.patternDoc = doc; return this }
  /** Accept plain YAML numbers as their source text (`user_prefix: 0049` stays "0049"). */
  numeric(): this { this.allowNumber = true; return this }
  lowerCase(): this { this.lower = true; return this }
  typeDoc(): string { return this.typeName }
  override rangeDoc(): string | undefined {
    if (this.enumValues) return 'one of ' + this.enumValues.map(v => '`' + v + '`').join(', ')
    return this.patternDoc
  }
  override formatValue(v: unknown): string { return v === null ? 'null' : typeof v === 'string' ? v : JSON.stringify(v) }
  protected parseNode(node: Raw, path: string, ctx: Ctx): string | Bad {
    const k = kindOf(node)
    let s: string
    if (k === 'string') s = (node as Scalar).value as string
    else if (k === 'number' && this.allowNumber && node !== null && isScalar(node)) s = node.source ?? String(node.value)
    else if (this.enumValues && (k === 'number' || k === 'boolean')) s = String(scalarValue(node))
    else return this.wrongType(node, path, ctx)
    if (this.lower) s = s.toLowerCase()
    if (this.enumValues) {
      const hit = this.enumValues.find(e => e === s) ?? this.enumValues.find(e => e.toLowerCase() === s.toLowerCase())
      if (hit === undefined) {
        const hint = suggest(s, this.enumValues)
        ctx.issue('ERR_CONFIG_ENUM', path, ctx.pos(node), `expected one of ${this.enumValues.join(', ')}, got ${q(s)}${hint ? ` (did you mean ${q(hint)}?)` : ''}`)
        return BAD
      }
      return hit
    }
    if (this.checkFn) {
      const err = this.checkFn(s)
      if (err !== undefined) { ctx.issue('ERR_CONFIG_FORMAT', path, ctx.pos(node), err); return BAD }
    }
    return s
  }
}

export class IntS extends Schema<number> {
  constructor(readonly min: number, readonly max: number) { super() }
  typeDoc(): string { return 'integer' }
  override rangeDoc(): string { return `${this.min} – ${this.max}` }
  protected parseNode(node: Raw, path: string, ctx: Ctx): number | Bad {
    const v = scalarValue(node)
    if (kindOf(node) !== 'number' || !Number.isInteger(v)) {
      if (typeof v === 'number') { ctx.issue('ERR_CONFIG_TYPE', path, ctx.pos(node), `expected a whole number, got ${v}`); return BAD }
      return this.wrongType(node, path, ctx)
    }
    const n = v as number
    if (n < this.min || n > this.max) {
      ctx.issue('ERR_CONFIG_RANGE', path, ctx.pos(node), `expected an integer from ${this.min} to ${this.max}, got ${n}`)
      return BAD
    }
    return n
  }
}

export class BoolS extends Schema<boolean> {
  typeDoc(): string { return 'boolean' }
  protected parseNode(node: Raw, path: string, ctx: Ctx): boolean | Bad {
    if (kindOf(node) !== 'boolean') return this.wrongType(node, path, ctx)
    return scalarValue(node) as boolean
  }
}

/** A number written with a unit (a duration, a size), within [min, max]. */
abstract class UnitS extends Schema<number> {
  constructor(readonly min: number, readonly max: number) { super() }
  protected abstract parseUnit(v: unknown): Parsed<number>
  protected abstract format(v: number): string
  protected abstract rangeText(): string
  override rangeDoc(): string { return `${this.format(this.min)} – ${this.format(this.max)}` }
  override formatValue(v: unknown): string { return typeof v === 'number' ? this.format(v) : String(v) }
  protected parseNode(node: Raw, path: string, ctx: Ctx): number | Bad {
    const k = kindOf(node)
    if (k !== 'string' && k !== 'number') return this.wrongType(node, path, ctx)
    const r = this.parseUnit(scalarValue(node))
    if (!r.ok) { ctx.issue('ERR_CONFIG_FORMAT', path, ctx.pos(node), r.error); return BAD }
    if (r.value < this.min || r.value > this.max) {
      ctx.issue('ERR_CONFIG_RANGE', path, ctx.pos(node), `expected ${this.rangeText()}, got ${q(scalarValue(node))}`)
      return BAD
    }
    return r.value
  }
}

export class DurS extends UnitS {
  typeDoc(): string { return 'duration' }
  protected parseUnit(v: unknown): Parsed<number> { return parseDuration(v) }
  protected format(v: number): string { return formatDuration(v) }
  protected rangeText(): string { return `a duration from ${formatDuration(this.min)} to ${formatDuration(this.max)}` }
}

export class SizeS extends UnitS {
  typeDoc(): string { return 'size' }
  protected parseUnit(v: unknown): Parsed<number> { return parseSize(v) }
  protected format(v: number): string { return formatSize(v) }
  protected rangeText(): string { return `a size from ${formatSize(this.min)} to ${formatSize(this.max)} (${this.min}-${this.max} bytes)` }
}

/** `false` (off) or a value of the inner schema; normalises `false` to null. */
export class OffOr<T> extends Schema<T | null> {
  constructor(readonly inner: Schema<T>) { super() }
  typeDoc(): string { return `${this.inner.typeDoc()} or false` }
  override rangeDoc(): string | undefined { return this.inner.rangeDoc() }
  override children(): DocEntry[] { return this.inner.children() }
  override formatValue(v: unknown): string { return v === null ? 'false' : this.inner.formatValue(v) }
  protected parseNode(node: Raw, path: string, ctx: Ctx): T | null | Bad {
    if (kindOf(node) === 'boolean' && scalarValue(node) === false) return null
    return this.inner.parse(node, path, ctx)
  }
}

// ---------------------------------------------------------------- collections

export class ListS<T> extends Schema<T[]> {
  oneOrMany = false
  minItems = 0
  uniqueItems = false
  constructor(readonly item: Schema<T>) { super() }
  single(): this { this.oneOrMany = true; return this }
  min(n: number): this { this.minItems = n; return this }
  unique(): this { this.uniqueItems = true; return this }
  typeDoc(): string {
    const it = this.item.typeDoc()
    return this.oneOrMany ? `${it} or list of ${it}` : `list of ${it}`
  }
  override rangeDoc(): string | undefined { return this.item.children().length ? undefined : this.item.rangeDoc() }
  override children(): DocEntry[] { return this.item.children().length ? [{ suffix: '[]', schema: this.item }] : [] }
  override formatValue(v: unknown): string {
    if (!Array.isArray(v)) return super.formatValue(v)
    if (this.item.children().length) return JSON.stringify(v)
    return '[' + v.map(x => this.item.formatValue(x)).join(', ') + ']'
  }
  protected parseNode(node: Raw, path: string, ctx: Ctx): T[] | Bad {
    if (node === null || !isSeq(node)) {
      if (this.oneOrMany && kindOf(node) !== 'null') {
        const v = this.item.parse(node, path, ctx)
        return v === BAD ? BAD : [v]
      }
      return this.wrongType(node, path, ctx)
    }
    const out: T[] = []
    let bad = false
    node.items.forEach((it, i) => {
      const v = this.item.parse(it as YNode | null, `${path}[${i}]`, ctx)
      if (v === BAD) bad = true
      else out.push(v)
    })
    if (out.length < this.minItems && !bad) {
      ctx.issue('ERR_CONFIG_RANGE', path, ctx.pos(node), `expected at least ${this.minItems} item${this.minItems === 1 ? '' : 's'}, got ${out.length}`)
      return BAD
    }
    if (this.uniqueItems && !bad) {
      const seen = new Set<string>()
      for (let i = 0; i < out.length; i++) {
        const key = JSON.stringify(out[i])
        if (seen.has(key)) {
          ctx.issue('ERR_CONFIG_CONFLICT', `${path}[${i}]`, ctx.pos(node.items[i] as YNode), `duplicate entry ${this.item.formatValue(out[i])}`)
          bad = true
        }
        seen.add(key)
      }
    }
    return bad ? BAD : out
  }
}

export interface Renamed { key: string; use: string; note?: string }

export class ObjS<T extends object = Record<string, unknown>> extends Schema<T> {
  renamed: Renamed[] = []
  finishFn: ((o: Record<string, unknown>, path: string, ctx: Ctx) => void) | undefined
  constructor(readonly fields: Record<string, Schema>) { super(); this.hasDefault = true }
  typeDoc(): string { return 'mapping' }
  override children(): DocEntry[] { return Object.entries(this.fields).map(([k, s]) => ({ suffix: '.' + k, schema: s })) }
  rename(list: Renamed[]): this { this.renamed = list; return this }
  /** Cross-field checks and derived defaults; sees the normalised fields, reports by path. */
  finish(fn: (o: Record<string, unknown>, path: string, ctx: Ctx) => void): this { this.finishFn = fn; return this }
  override getDefault(): unknown {
    if (this.defaultValue !== undefined) return structuredClone(this.defaultValue)
    const o: Record<string, unknown> = {}
    for (const [k, s] of Object.entries(this.fields)) o[k] = s.getDefault()
    this.finishFn?.(o, '', new Ctx(null, null))
    return o
  }
  override showDefault(): string | undefined { return this.defaultDoc ?? (this.defaultValue === null ? '`null`' : undefined) }
  protected parseNode(node: Raw, path: string, ctx: Ctx): T | Bad {
    const k = kindOf(node)
    if (k !== 'map' && k !== 'null') return this.wrongType(node, path, ctx)
    const out: Record<string, unknown> = {}
    const seen = new Set<string>()
    const given = new Map<string, unknown>()
    let bad = false
    const keys = Object.keys(this.fields)
    for (const pair of k === 'map' ? (node as YAMLMap).items : []) {
      const keyNode = pair.key as YNode | null
      const key = keyNode !== null && isScalar(keyNode) ? String(keyNode.value) : null
      const kp = ctx.pos(keyNode)
      if (key === null) { ctx.issue('ERR_CONFIG_TYPE', path, kp, 'expected a plain key'); bad = true; continue }
      const field = this.fields[key]
      const childPath = join(path, key)
      ctx.keyPositions.set(childPath, kp)
      if (field === undefined) {
        bad = true
        const ren = this.renamed.find(r => r.key === key)
        if (ren) {
          ctx.issue('ERR_CONFIG_RENAMED_KEY', childPath, kp, `key '${key}' was renamed: use '${ren.use}'${ren.note ? ` (${ren.note})` : ''}`)
        } else {
          const hint = suggest(key, keys)
          ctx.issue('ERR_CONFIG_UNKNOWN_KEY', childPath, kp, `unknown key '${key}'${hint ? ` (did you mean '${hint}'?)` : ` (expected one of: ${keys.join(', ')})`}`)
        }
        continue
      }
      seen.add(key)
      const v = field.parse(pair.value as YNode | null, childPath, ctx)
      if (v === BAD) bad = true
      else given.set(key, v)
    }
    // schema order, not file order: every normalised object of one kind has the same shape
    for (const [key, field] of Object.entries(this.fields)) {
      if (given.has(key)) { out[key] = given.get(key); continue }
      if (seen.has(key)) continue
      if (field.isRequired) {
        ctx.issue('ERR_CONFIG_REQUIRED', join(path, key), ctx.pos(node), `missing required key '${key}' (${field.typeDoc()})`)
        bad = true
      } else out[key] = field.getDefault()
    }
    if (bad) return BAD
    if (this.finishFn) {
      const before = ctx.issues.length
      this.finishFn(out, path, ctx)
      if (ctx.issues.length > before) return BAD
    }
    return out as T
  }
}

/** A mapping of user-chosen names (dispatcher sets, auth domains ...) to values of one schema. */
export class MapS<T> extends Schema<Record<string, T>> {
  keyCheck: ((k: string) => string | undefined) | undefined
  constructor(readonly value: Schema<T>, readonly keyName = 'name') { super(); this.hasDefault = true; this.defaultValue = {} }
  keys(fn: (k: string) => string | undefined): this { this.keyCheck = fn; return this }
  typeDoc(): string { return `mapping of ${this.keyName} to ${this.value.typeDoc()}` }
  override rangeDoc(): string | undefined { return this.value.children().length ? undefined : this.value.rangeDoc() }
  override children(): DocEntry[] { return this.value.children().length ? [{ suffix: `.<${this.keyName}>`, schema: this.value }] : [] }
  protected parseNode(node: Raw, path: string, ctx: Ctx): Record<string, T> | Bad {
    const k = kindOf(node)
    if (k !== 'map' && k !== 'null') return this.wrongType(node, path, ctx)
    const out: Record<string, T> = Object.create(null) as Record<string, T>
    let bad = false
    for (const pair of k === 'map' ? (node as YAMLMap).items : []) {
      const keyNode = pair.key as YNode | null
      const key = keyNode !== null && isScalar(keyNode) && keyNode.value !== null ? String(keyNode.value) : null
      if (key === null) { ctx.issue('ERR_CONFIG_TYPE', path, ctx.pos(keyNode ?? node), `expected a ${this.keyName} as key`); bad = true; continue }
      const childPath = join(path, key)
      ctx.keyPositions.set(childPath, ctx.pos(keyNode))
      const err = this.keyCheck?.(key)
      if (err !== undefined) { ctx.issue('ERR_CONFIG_FORMAT', childPath, ctx.pos(keyNode), err); bad = true; continue }
      const v = this.value.parse(pair.value as YNode | null, childPath, ctx)
      if (v === BAD) bad = true
      else out[key] = v
    }
    return bad ? BAD : { ...out }
  }
}

/** Different shapes by YAML kind: e.g. a listen spec as "udp:1.2.3.4:5060" or as a mapping. */
export class AltS<T> extends Schema<T> {
  constructor(readonly alts: Partial<Record<Kind, Schema<T>>>, readonly typeName?: string) { super() }
  typeDoc(): string {
    return this.typeName ?? [...new Set(Object.values(this.alts).map(s => s!.typeDoc()))].join(' or ')
  }
  override rangeDoc(): string | undefined {
    const r = Object.values(this.alts).map(s => s!.rangeDoc()).filter(Boolean)
    return r.length ? r.join('; ') : undefined
  }
  override children(): DocEntry[] { return Object.values(this.alts).flatMap(s => s!.children()) }
  protected parseNode(node: Raw, path: string, ctx: Ctx): T | Bad {
    const s = this.alts[kindOf(node)]
    if (!s) return this.wrongType(node, path, ctx)
    return s.parse(node, path, ctx)
  }
}

// ---------------------------------------------------------------- constructors

export const str = (typeName?: string): StrS => new StrS(typeName)
export const oneOf = (values: readonly string[]): StrS => new StrS('string').oneOf(values)
export const int = (min: number, max: number): IntS => new IntS(min, max)
export const bool = (): BoolS => new BoolS()
export const duration = (min: number, max: number): DurS => new DurS(min, max)
export const size = (min: number, max: number): SizeS => new SizeS(min, max)
export const list = <T>(item: Schema<T>): ListS<T> => new ListS(item)
export const obj = (fields: Record<string, Schema>): ObjS => new ObjS(fields)
export const mapOf = <T>(value: Schema<T>, keyName?: string): MapS<T> => new MapS(value, keyName)
export const alt = <T>(alts: Partial<Record<Kind, Schema<T>>>, typeName?: string): AltS<T> => new AltS(alts, typeName)
export const offOr = <T>(inner: Schema<T>): OffOr<T> => new OffOr(inner)
export { parseDuration, parseSize }

/** Parse with `inner`, then turn the value into another shape (string listen spec -> ListenSpec). */
export class Xform<I, O> extends Schema<O> {
  constructor(readonly inner: Schema<I>, readonly fn: (v: I, path: string, ctx: Ctx, node: Raw) => O | Bad) { super() }
  typeDoc(): string { return this.inner.typeDoc() }
  override rangeDoc(): string | undefined { return this.inner.rangeDoc() }
  override children(): DocEntry[] { return this.inner.children() }
  protected parseNode(node: Raw, path: string, ctx: Ctx): O | Bad {
    const v = this.inner.parse(node, path, ctx)
    return v === BAD ? BAD : this.fn(v, path, ctx, node)
  }
}
export const xform = <I, O>(inner: Schema<I>, fn: (v: I, path: string, ctx: Ctx, node: Raw) => O | Bad): Xform<I, O> => new Xform(inner, fn)
