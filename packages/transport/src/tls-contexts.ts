// Server certificates for TLS listeners: several certificates chosen by SNI, reloaded from
// their files without a restart (file watch + explicit reload on SIGHUP), optional client
// certificate verification. A reload that fails keeps the contexts in use and says why.
import { readFileSync, watch, type FSWatcher } from 'node:fs'
import { dirname, basename, resolve } from 'node:path'
import { X509Certificate } from 'node:crypto'
import { createSecureContext, type SecureContext, type Server as TlsServer, type SecureContextOptions } from 'node:tls'
import type { Logger } from './log.js'

export interface TlsCertificate {
  /** PEM certificate (chain) file. */
  cert: string
  /** PEM private key file. */
  key: string
  /** SNI names served by this certificate (`*.example.com` allowed); default: CN and DNS SANs of the certificate. */
  serverNames?: string[]
}

export interface TlsOptions {
  /** The first certificate is also the default for clients that send no (or an unknown) SNI name. */
  certificates: TlsCertificate[]
  /** CA bundle file used to verify client certificates. */
  ca?: string
  /** `none` (default), `optional` (ask, accept without), `require` (reject without a valid one). */
  verifyClient?: 'none' | 'optional' | 'require'
  minVersion?: 'TLSv1.2' | 'TLSv1.3'
  /** Watch the certificate files and reload on change (default true). */
  watch?: boolean
}

interface Entry { names: string[]; ctx: SecureContext; options: SecureContextOptions }

function namesOf(certPem: Buffer): string[] {
  const x = new X509Certificate(certPem)
  const names: string[] = []
  for (const part of (x.subjectAltName ?? '').split(',')) {
    const p = part.trim()
    if (p.startsWith('DNS:')) names.push(p.slice(4).toLowerCase())
  }
  const cn = /(?:^|\n)CN=([^\n]+)/.exec(x.subject)
  if (cn !== null && !names.includes(cn[1]!.toLowerCase())) names.push(cn[1]!.toLowerCase())
  return names
}

function matches(pattern: string, name: string): boolean {
  if (pattern === name) return true
  if (pattern.startsWith('*.')) {
    const dot = name.indexOf('.')
    return dot > 0 && name.slice(dot + 1) === pattern.slice(2)
  }
  return false
}

export class TlsContextSet {
  #entries: Entry[] = []
  readonly #servers = new Set<TlsServer>()
  readonly #watchers: FSWatcher[] = []
  #reloadTimer: NodeJS.Timeout | null = null
  readonly opts: TlsOptions
  readonly log: Logger
  onReload: ((ok: boolean) => void) | null = null

  constructor(opts: TlsOptions, log: Logger) {
    if (opts.certificates.length === 0) throw Object.assign(new Error('a TLS listener needs at least one certificate'), { code: 'ERR_TRANSPORT_TLS_CONFIG' })
    this.opts = opts
    this.log = log
    this.#entries = this.#load()
  }

  #load(): Entry[] {
    const ca = this.opts.ca !== undefined ? readFileSync(this.opts.ca) : undefined
    return this.opts.certificates.map(c => {
      const cert = readFileSync(c.cert)
      const key = readFileSync(c.key)
      const options: SecureContextOptions = { cert, key, minVersion: this.opts.minVersion ?? 'TLSv1.2' }
      if (ca !== undefined) options.ca = ca
      const ctx = createSecureContext(options) // throws on a key that does not match, bad PEM ...
      const names = (c.serverNames ?? namesOf(cert)).map(n => n.toLowerCase())
      return { names, ctx, options }
    })
  }

  /** Options for tls.createServer / the default context. */
  serverOptions(): SecureContextOptions & { requestCert: boolean; rejectUnauthorized: boolean; SNICallback: (name: string, cb: (err: Error | null, ctx?: SecureContext) => void) => void } {
    const v = this.opts.verifyClient ?? 'none'
    return {
      ...this.#entries[0]!.options,
      requestCert: v !== 'none',
      rejectUnauthorized: v === 'require',
      SNICallback: (name, cb) => cb(null, this.select(name)),
    }
  }

  select(servername: string): SecureContext {
    const name = servername.toLowerCase()
    for (const e of this.#entries) for (const p of e.names) if (matches(p, name)) return e.ctx
    return this.#entries[0]!.ctx
  }

  attach(server: TlsServer): void {
    this.#servers.add(server)
  }

  /** Re-reads every certificate file; on any error keeps the current contexts. */
  reload(): boolean {
    let next: Entry[]
    try {
      next = this.#load()
    } catch (err) {
      this.log.error('TLS certificate reload failed, keeping the certificates in use', { err, files: this.opts.certificates.map(c => c.cert) })
      this.onReload?.(false)
      return false
    }
    this.#entries = next
    // New handshakes use the new default context; connections already up keep theirs.
    for (const s of this.#servers) s.setSecureContext(this.#entries[0]!.options)
    this.log.info('TLS certificates reloaded', { files: this.opts.certificates.map(c => c.cert), names: next.map(e => e.names) })
    this.onReload?.(true)
    return true
  }

  /** Watches the directories holding the files (a rename-into-place replaces the inode). */
  watch(): void {
    if (this.opts.watch === false) return
    const byDir = new Map<string, Set<string>>()
    const files = this.opts.certificates.flatMap(c => [c.cert, c.key])
    if (this.opts.ca !== undefined) files.push(this.opts.ca)
    for (const f of files) {
      const abs = resolve(f)
      const d = dirname(abs)
      if (!byDir.has(d)) byDir.set(d, new Set())
      byDir.get(d)!.add(basename(abs))
    }
    for (const [dir, names] of byDir) {
      try {
        const w = watch(dir, { persistent: false }, (_ev, filename) => {
          if (filename === null || names.has(filename.toString())) this.#scheduleReload()
        })
        w.on('error', err => this.log.warn('TLS certificate watch failed; reload with SIGHUP', { err, dir }))
        this.#watchers.push(w)
      } catch (err) {
        this.log.warn('cannot watch TLS certificate directory; reload with SIGHUP', { err, dir })
      }
    }
  }

  #scheduleReload(): void {
    // Editors and cert tools write key and cert in several steps: wait until they settle.
    if (this.#reloadTimer !== null) clearTimeout(this.#reloadTimer)
    this.#reloadTimer = setTimeout(() => {
      this.#reloadTimer = null
      this.reload()
    }, 250)
    this.#reloadTimer.unref()
  }

  close(): void {
    for (const w of this.#watchers) w.close()
    this.#watchers.length = 0
    if (this.#reloadTimer !== null) clearTimeout(this.#reloadTimer)
    this.#servers.clear()
  }
}
