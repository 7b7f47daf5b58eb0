// What the configuration names outside itself: users files, certificates, the log file's
// directory, LMDB store directories. Startup fails when one of them is missing or unusable, so
// `sipedge check-config` (and a reload, which checks before it applies) must find the same
// problems first, with the line of the key that names the file (issue #16, defect 6).
//
// Read-only: nothing here creates, opens for writing or binds anything. What can only be known
// by doing it (a port already taken, a Redis server down) is left to startup.
import { accessSync, constants, readFileSync, statSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { createSecureContext } from 'node:tls'
import type { Ctx } from './schema.js'
import { parseStoreUrl } from './values.js'
import type { Config } from './types.js'

export interface ResourceCheckOptions {
  /**
   * Validates a users file's contents the way the auth module loads it (format, HA1 lengths);
   * throws with an operator-facing message. Injected by the caller (the `sipedge` command) so
   * that this package keeps importing no other sipedge package. Without it only existence and
   * readability are checked.
   */
  usersFile?: (path: string, realm: string) => void
}

/** `users_file: store:` (or `store`) reads credentials from the store, not from a file. */
function isStoreSource(usersFile: string): boolean {
  return usersFile === 'store' || usersFile === 'store:'
}

function errText(e: unknown): string {
  const err = e as NodeJS.ErrnoException
  return err.code !== undefined ? `${err.code}: ${err.message.replace(/^[A-Z]+: /, '')}` : String(err?.message ?? e)
}

/** A readable regular file, or why not. */
function readableFile(path: string): string | undefined {
  try {
    const st = statSync(path)
    if (!st.isFile()) return `${path} is not a regular file`
    accessSync(path, constants.R_OK)
    return undefined
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return `${path} does not exist${path === resolve(path) ? '' : ` (relative to the working directory ${process.cwd()})`}`
    if (code === 'EACCES') return `${path} is not readable by this user`
    return `${path}: ${errText(e)}`
  }
}

/** The directory `dir` exists and is writable, or would be creatable under its nearest existing ancestor. */
function creatableDir(dir: string): string | undefined {
  let d = resolve(dir)
  for (let i = 0; i < 64; i++) {
    try {
      const st = statSync(d)
      if (!st.isDirectory()) return `${d} is not a directory`
      accessSync(d, constants.W_OK | constants.X_OK)
      return undefined
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      if (code === 'EACCES') return `${d} is not writable by this user`
      if (code !== 'ENOENT') return `${d}: ${errText(e)}`
    }
    const up = dirname(d)
    if (up === d) break
    d = up
  }
  return `no existing parent directory for ${dir}`
}

export function checkResources(c: Config, ctx: Ctx, o: ResourceCheckOptions): void {
  const issue = (path: string, message: string): void => ctx.issue('ERR_CONFIG_FILE', path, ctx.posOf(path), message)

  // ---- auth.domains.*.users_file: read by every worker at start (and on reload)
  for (const [name, d] of Object.entries(c.auth.domains)) {
    if (isStoreSource(d.users_file)) continue
    const path = `auth.domains.${name}.users_file`
    const bad = readableFile(d.users_file)
    if (bad !== undefined) { issue(path, `users file ${bad}`); continue }
    if (o.usersFile !== undefined) {
      try { o.usersFile(d.users_file, d.realm) } catch (e) { issue(path, (e as Error).message) }
    }
  }

  // ---- certificates of tls/wss listeners: loaded by the engine before it listens
  const secure = c.listen.map((l, i) => ({ l, i })).filter(x => x.l.proto === 'tls' || x.l.proto === 'wss')
  const pairs: Array<{ cert: string; key: string; path: string }> = []
  for (const { l, i } of secure) if (l.tls !== null) pairs.push({ cert: l.tls.cert, key: l.tls.key, path: `listen[${i}].tls` })
  if (secure.some(x => x.l.tls === null)) c.tls.certificates.forEach((x, i) => pairs.push({ cert: x.cert, key: x.key, path: `tls.certificates[${i}]` }))
  for (const p of pairs) {
    const badCert = readableFile(p.cert)
    const badKey = readableFile(p.key)
    if (badCert !== undefined) issue(`${p.path}.cert`, `certificate ${badCert}`)
    if (badKey !== undefined) issue(`${p.path}.key`, `private key ${badKey}`)
    if (badCert !== undefined || badKey !== undefined) continue
    try {
      createSecureContext({ cert: readFileSync(p.cert), key: readFileSync(p.key) })
    } catch (e) {
      issue(`${p.path}.cert`, `certificate ${p.cert} with key ${p.key} cannot be used: ${errText(e)}`)
    }
  }
  if (secure.length > 0 && c.tls.ca !== null) {
    const bad = readableFile(c.tls.ca)
    if (bad !== undefined) issue('tls.ca', `CA bundle ${bad}`)
    else {
      try { createSecureContext({ ca: readFileSync(c.tls.ca) }) } catch (e) { issue('tls.ca', `CA bundle ${c.tls.ca} cannot be used: ${errText(e)}`) }
    }
  }

  // ---- logging.file: opened for appending before anything else starts
  if (c.logging.file !== null) {
    const f = c.logging.file
    let bad: string | undefined
    try {
      const st = statSync(f)
      if (!st.isFile()) bad = `${f} is not a regular file`
      else accessSync(f, constants.W_OK)
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      if (code === 'ENOENT') {
        // the sink creates the file, not its directory
        try {
          const st = statSync(dirname(resolve(f)))
          if (!st.isDirectory()) bad = `${dirname(resolve(f))} is not a directory`
          else accessSync(dirname(resolve(f)), constants.W_OK | constants.X_OK)
        } catch (e2) {
          bad = (e2 as NodeJS.ErrnoException).code === 'ENOENT' ? `directory ${dirname(resolve(f))} does not exist` : `cannot create ${f}: ${errText(e2)}`
        }
      } else bad = code === 'EACCES' ? `${f} is not writable by this user` : `${f}: ${errText(e)}`
    }
    if (bad !== undefined) issue('logging.file', `log file: ${bad}`)
  }

  // ---- LMDB stores the workers open at start (the registrar's, when a route uses it)
  const usesLocation = c.routes.some(r => r.action.type === 'register' || r.action.type === 'lookup')
  if (usesLocation) {
    const u = parseStoreUrl(c.registrar.store)
    if (u.ok && u.value.kind === 'lmdb') {
      const p = u.value.path.replace(/\?.*$/, '')
      // a path ending in a file name (".../loc.mdb") is the database file; else the directory
      const dir = /\.[^/\\]*$/.test(p) ? dirname(p) : p
      const bad = creatableDir(dir)
      if (bad !== undefined) issue(ctx.positions.has('registrar.store') ? 'registrar.store' : 'store', `LMDB store ${p}: ${bad}`)
    }
  }
}
