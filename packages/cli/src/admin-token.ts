// The admin API's bearer token: `admin.token` from the configuration, else the one in
// `admin.token_file`, created with a random token on the first start. There is no admin API
// without a token (docs/security.md "Admin API").
import { randomBytes } from 'node:crypto'
import { closeSync, fsyncSync, linkSync, lstatSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs'
import { dirname, isAbsolute } from 'node:path'

/** RFC 6750 §2.1 b64token, as the configuration checks `admin.token`. */
const B64TOKEN_RE = /^[A-Za-z0-9\-._~+/]+=*$/

export class AdminTokenError extends Error {
  readonly code = 'ERR_ADMIN_TOKEN_FILE'
  readonly file: string
  constructor(file: string, message: string) {
    super(`admin.token_file ${file}: ${message}`)
    this.name = 'AdminTokenError'
    this.file = file
  }
}

export interface AdminToken {
  token: string
  /** config: `admin.token`; file: read from token_file; generated: token_file created now. */
  source: 'config' | 'file' | 'generated'
  /** The file read or created; null for a token from the configuration. */
  file: string | null
  /** Set when the file is readable or writable by group or others (its mode, e.g. 0o644): worth a warning. */
  looseMode?: number
}

/**
 * `create`: make the file when it is missing (the proxy at start); false: a missing file is an
 * error (`sipedge admin`, which must use the running proxy's token, never invent one).
 */
export function resolveAdminToken(admin: { token: string | null; token_file: string }, o: { create: boolean }): AdminToken {
  if (admin.token !== null) return { token: admin.token, source: 'config', file: null }
  const file = admin.token_file
  const existing = readTokenFile(file)
  if (existing !== null) return existing
  if (!o.create) {
    const hint = isAbsolute(file) ? '' : ` (a relative path, taken from the working directory ${process.cwd()}: run this where sipedge runs, or make the path absolute)`
    throw new AdminTokenError(file, `does not exist${hint}: start sipedge once (it creates the file) or set admin.token`)
  }
  return createTokenFile(file)
}

/** null: no such file. */
function readTokenFile(file: string): AdminToken | null {
  let st
  try {
    st = lstatSync(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw new AdminTokenError(file, (err as Error).message)
  }
  if (!st.isFile()) throw new AdminTokenError(file, 'is not a regular file')
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new AdminTokenError(file, (err as Error).message)
  }
  const token = text.trim()
  if (token.length < 16) throw new AdminTokenError(file, 'holds no token of at least 16 characters')
  if (!B64TOKEN_RE.test(token)) throw new AdminTokenError(file, 'holds characters a bearer token may not have (RFC 6750 b64token: letters, digits, -._~+/)')
  const mode = st.mode & 0o777
  return { token, source: 'file', file, ...((mode & 0o077) !== 0 ? { looseMode: mode } : {}) }
}

/**
 * Writes a fresh token to a private temporary file and links it into place: the token file
 * appears complete or not at all, and when two processes start at once (an HA pair sharing a
 * state directory, a restart racing a `check`), the second link fails with EEXIST and that one
 * reads the first one's token instead of overwriting it.
 */
function createTokenFile(file: string): AdminToken {
  // 256 random bits, base64url: within RFC 6750 b64token
  const token = randomBytes(32).toString('base64url')
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
  try {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 })
    const fd = openSync(tmp, 'wx', 0o600)
    try {
      writeSync(fd, token + '\n')
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    try {
      linkSync(tmp, file)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      const other = readTokenFile(file)
      if (other !== null) return other
      throw err
    }
  } catch (err) {
    if (err instanceof AdminTokenError) throw err
    throw new AdminTokenError(file, `cannot create it: ${(err as Error).message}`)
  } finally {
    try { unlinkSync(tmp) } catch { /* never created, or already gone */ }
  }
  return { token, source: 'generated', file }
}
