// Credential sources for digest authentication: a users file (htdigest-style lines, JSON or
// YAML) loaded into memory, or the store's CredentialStore for large user bases.
import { parse as parseYamlText } from 'yaml'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { CredentialStore } from '@sipedge/store'
import { ha1Of } from './digest.js'

/** HA1 values of one user in one realm (lower-case hex). */
export interface UserCredential {
  ha1Md5: string | undefined
  ha1Sha256: string | undefined
}

export interface UserSource {
  /** Credentials of `user` in `realm`, or null when unknown. */
  get(realm: string, user: string): UserCredential | null | Promise<UserCredential | null>
  readonly kind: 'file' | 'store'
  /** Users known (file) or -1 (store). */
  readonly size: number
}

export class AuthConfigError extends Error {
  readonly code: 'ERR_AUTH_USERS_FILE'
  constructor(message: string) {
    super(message)
    this.code = 'ERR_AUTH_USERS_FILE'
  }
}

const HEX32 = /^[0-9a-f]{32}$/i
const HEX64 = /^[0-9a-f]{64}$/i

export class FileUsers implements UserSource {
  readonly kind = 'file' as const
  private readonly users: Map<string, UserCredential>
  readonly realm: string
  /** The file's bytes hashed: part of the nonce key when no secret is configured. */
  readonly digest: Buffer

  constructor(realm: string, users: Map<string, UserCredential>, digest: Buffer) {
    this.realm = realm
    this.users = users
    this.digest = digest
  }

  get size(): number {
    return this.users.size
  }

  get(realm: string, user: string): UserCredential | null {
    if (realm !== this.realm) return null
    return this.users.get(user) ?? null
  }
}

export class StoreUsers implements UserSource {
  readonly kind = 'store' as const
  readonly size = -1
  private readonly store: CredentialStore
  constructor(store: CredentialStore) {
    this.store = store
  }
  async get(realm: string, user: string): Promise<UserCredential | null> {
    const c = await this.store.get(realm, user)
    if (c === null) return null
    return { ha1Md5: c.ha1Md5?.toLowerCase(), ha1Sha256: c.ha1Sha256?.toLowerCase() }
  }
}

/** `users_file: store:` (or `store`) selects the CredentialStore of `registrar.store`. */
export function isStoreSource(usersFile: string): boolean {
  return usersFile === 'store' || usersFile === 'store:'
}

/**
 * Loads a users file for `realm`. Formats, by extension:
 * - `.json` / `.yaml` / `.yml`: `{ users: { NAME: PASSWORD | { password } | { ha1_md5, ha1_sha256 } } }`
 *   or `users: [{ username, password | ha1_md5 | ha1_sha256, realm? }]`; plain passwords are hashed
 *   here (MD5 and SHA-256), HA1 values are taken as given (they must be for this realm).
 * - anything else: htdigest-style lines `user:realm:HA1[:MD5|SHA-256]` (`#` comments); the
 *   algorithm defaults from the length (32 hex = MD5, 64 = SHA-256); lines of other realms are skipped.
 * Throws AuthConfigError (ERR_AUTH_USERS_FILE) with the file and line.
 */
export function loadUsersFile(path: string, realm: string, readFile: (p: string) => Buffer = readFileSync): FileUsers {
  let bytes: Buffer
  try {
    bytes = readFile(path)
  } catch (err) {
    throw new AuthConfigError(`cannot read users file ${path}: ${(err as Error).message}`)
  }
  const users = new Map<string, UserCredential>()
  const lower = path.toLowerCase()
  if (lower.endsWith('.json') || lower.endsWith('.yaml') || lower.endsWith('.yml')) {
    let doc: unknown
    try {
      doc = lower.endsWith('.json') ? JSON.parse(bytes.toString('utf8')) : parseYaml(bytes.toString('utf8'))
    } catch (err) {
      throw new AuthConfigError(`users file ${path} does not parse: ${(err as Error).message}`)
    }
    structured(doc, realm, path, users)
  } else {
    htdigest(bytes.toString('utf8'), realm, path, users)
  }
  return new FileUsers(realm, users, createDigest(bytes, realm))
}

function createDigest(bytes: Buffer, realm: string): Buffer {
  return hashBytes(Buffer.concat([Buffer.from(realm + '\0', 'utf8'), bytes]))
}

function hashBytes(b: Buffer): Buffer {
  return createHash('sha256').update(b).digest()
}

function htdigest(text: string, realm: string, path: string, out: Map<string, UserCredential>): void {
  const lines = text.split(/\r?\n/)
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim()
    if (line === '' || line.startsWith('#')) continue
    const parts = line.split(':')
    if (parts.length < 3 || parts.length > 4) throw new AuthConfigError(`${path}:${i + 1}: expected user:realm:HA1[:algorithm]`)
    const [user, r, ha1, alg] = parts as [string, string, string, string | undefined]
    if (user === '') throw new AuthConfigError(`${path}:${i + 1}: empty user name`)
    if (r !== realm) continue
    const a = (alg ?? (HEX64.test(ha1) ? 'SHA-256' : 'MD5')).toUpperCase()
    const cred = out.get(user) ?? { ha1Md5: undefined, ha1Sha256: undefined }
    if (a === 'MD5' && HEX32.test(ha1)) cred.ha1Md5 = ha1.toLowerCase()
    else if ((a === 'SHA-256' || a === 'SHA256') && HEX64.test(ha1)) cred.ha1Sha256 = ha1.toLowerCase()
    else throw new AuthConfigError(`${path}:${i + 1}: HA1 is not ${a === 'MD5' ? '32' : '64'} hex digits for ${a}`)
    out.set(user, cred)
  }
}

function structured(doc: unknown, realm: string, path: string, out: Map<string, UserCredential>): void {
  const users = (doc !== null && typeof doc === 'object' && 'users' in doc) ? (doc as { users: unknown }).users : doc
  const add = (name: string, v: unknown, where: string): void => {
    if (typeof v === 'string' || typeof v === 'number') {
      out.set(name, fromPassword(name, realm, String(v)))
      return
    }
    if (v === null || typeof v !== 'object') throw new AuthConfigError(`${path}: ${where}: expected a password or { password | ha1_md5 | ha1_sha256 }`)
    const o = v as Record<string, unknown>
    if (typeof o['realm'] === 'string' && o['realm'] !== realm) return
    if (o['password'] !== undefined) {
      out.set(name, fromPassword(name, realm, String(o['password'])))
      return
    }
    const md5 = o['ha1_md5'] ?? o['ha1']
    const sha = o['ha1_sha256']
    if (md5 !== undefined && !(typeof md5 === 'string' && HEX32.test(md5))) throw new AuthConfigError(`${path}: ${where}: ha1_md5 must be 32 hex digits`)
    if (sha !== undefined && !(typeof sha === 'string' && HEX64.test(sha))) throw new AuthConfigError(`${path}: ${where}: ha1_sha256 must be 64 hex digits`)
    if (md5 === undefined && sha === undefined) throw new AuthConfigError(`${path}: ${where}: no password, ha1_md5 or ha1_sha256`)
    out.set(name, { ha1Md5: (md5 as string | undefined)?.toLowerCase(), ha1Sha256: (sha as string | undefined)?.toLowerCase() })
  }
  if (Array.isArray(users)) {
    users.forEach((u, i) => {
      const name = (u as Record<string, unknown> | null)?.['username'] ?? (u as Record<string, unknown> | null)?.['user']
      if (typeof name !== 'string' || name === '') throw new AuthConfigError(`${path}: users[${i}]: missing username`)
      add(name, u, `users[${i}]`)
    })
  } else if (users !== null && typeof users === 'object') {
    for (const [name, v] of Object.entries(users as Record<string, unknown>)) add(name, v, `users.${name}`)
  } else {
    throw new AuthConfigError(`${path}: expected a "users" mapping or list`)
  }
}

function fromPassword(user: string, realm: string, password: string): UserCredential {
  return { ha1Md5: ha1Of('MD5', user, realm, password), ha1Sha256: ha1Of('SHA-256', user, realm, password) }
}

function parseYaml(text: string): unknown {
  return parseYamlText(text)
}
