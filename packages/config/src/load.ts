import { readFileSync } from 'node:fs'
import { LineCounter, parseDocument } from 'yaml'
import type { Node as YNode } from 'yaml'
import { ConfigError } from './errors.js'
import type { ConfigIssue } from './errors.js'
import { BAD, Ctx } from './schema.js'
import { configSchema, unknownSet } from './sections.js'
import type { Config } from './types.js'
import { checkResources, type ResourceCheckOptions } from './resources.js'

export interface LoadOptions {
  /**
   * Also check what the file names outside itself (users files, certificates, the log file's
   * directory, LMDB directories): what startup would trip over. Off for plain text parsing.
   */
  resources?: ResourceCheckOptions | boolean
}

export function deepFreeze<T>(o: T): T {
  if (o !== null && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o)
    for (const v of Object.values(o)) deepFreeze(v)
  }
  return o
}

/** Parse, validate and normalise YAML text. Throws ConfigError (ERR_CONFIG_YAML or ERR_CONFIG_INVALID). */
export function parseConfig(text: string, filename = '<config>', opts: LoadOptions = {}): Config {
  const lc = new LineCounter()
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: true, uniqueKeys: true, strict: true })
  if (doc.errors.length > 0) {
    const issues: ConfigIssue[] = doc.errors.map(e => ({
      path: '',
      line: e.linePos?.[0].line ?? 1,
      column: e.linePos?.[0].col ?? 1,
      message: 'YAML: ' + e.message.replace(/ at line \d+, column \d+:[\s\S]*$/, '').trim(),
      code: 'ERR_CONFIG_YAML',
    }))
    throw new ConfigError('ERR_CONFIG_YAML', filename, issues)
  }
  const ctx = new Ctx(doc, lc)
  const value = configSchema.parse((doc.contents as YNode | null) ?? null, '', ctx)
  checkReferences(ctx)
  if (value !== BAD && ctx.issues.length === 0 && opts.resources !== undefined && opts.resources !== false)
    checkResources(value as unknown as Config, ctx, opts.resources === true ? {} : opts.resources)
  if (value === BAD || ctx.issues.length > 0) {
    const issues = [...ctx.issues].sort((a, b) => a.line - b.line || a.column - b.column)
    throw new ConfigError('ERR_CONFIG_INVALID', filename, issues)
  }
  return deepFreeze(value as unknown as Config)
}

/** Routes name dispatcher sets; set names are known from the keys even if a set itself is invalid. */
function checkReferences(ctx: Ctx): void {
  if (ctx.issues.some(i => i.code === 'ERR_CONFIG_TYPE' && (i.path === '' || i.path === 'dispatcher' || i.path === 'dispatcher.sets'))) return
  const names: string[] = []
  for (const k of ctx.keyPositions.keys()) {
    const m = /^dispatcher\.sets\.([^.[]+)$/.exec(k)
    if (m) names.push(m[1]!)
  }
  for (const r of ctx.refs) if (!names.includes(r.name)) ctx.issue('ERR_CONFIG_REFERENCE', r.path, ctx.posOf(r.path), unknownSet(r.name, names))
}

export function loadConfigFile(path: string, opts: LoadOptions = {}): Config {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (e) {
    const err = e as NodeJS.ErrnoException
    throw new ConfigError('ERR_CONFIG_READ', path, [], `cannot read configuration file ${path}: ${err.code ?? ''} ${err.message}`.replace(/\s+/g, ' '))
  }
  return parseConfig(text, path, opts)
}

export type CheckResult = { ok: true; config: Config } | { ok: false; error: ConfigError }

/** For `sipedge check-config` and reloads: never throws on a bad file. */
export function checkConfigFile(path: string, opts: LoadOptions = {}): CheckResult {
  try {
    return { ok: true, config: loadConfigFile(path, opts) }
  } catch (e) {
    if (e instanceof ConfigError) return { ok: false, error: e }
    throw e
  }
}

/** The fully defaulted configuration (what an empty file gives), frozen. */
export function defaultConfig(): Config {
  return deepFreeze(configSchema.getDefault() as Config)
}
