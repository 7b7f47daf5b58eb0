// The admin token at start (admin-open-by-default): admin.token wins; else token_file, created
// 0600 with a random token on the first start and re-used afterwards; a broken file stops the start.
import t from 'tap'
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { resolveAdminToken } from '../dist/admin-token.js'

function tmp(t: { teardown(fn: () => void): void }): string {
  const d = mkdtempSync(join(tmpdir(), 'sipedge-token-'))
  t.teardown(() => rmSync(d, { recursive: true, force: true }))
  return d
}

t.test('admin-open-by-default: the first start creates a 0600 token file, later starts re-use it', async t => {
  const dir = tmp(t)
  const file = join(dir, 'var', 'state', 'admin.token') // parent directories are created
  const first = resolveAdminToken({ token: null, token_file: file }, { create: true })
  t.equal(first.source, 'generated')
  t.equal(first.file, file)
  t.match(first.token, /^[A-Za-z0-9_-]{43}$/, '256 random bits, base64url')
  t.equal(statSync(file).mode & 0o777, 0o600, 'only the owner may read it')
  t.equal(statSync(join(dir, 'var', 'state')).mode & 0o077, 0, 'a directory it creates is private too')
  t.equal(readFileSync(file, 'utf8'), first.token + '\n')
  t.same(readdirSync(join(dir, 'var', 'state')), ['admin.token'], 'no temporary file left behind')

  const second = resolveAdminToken({ token: null, token_file: file }, { create: true })
  t.same(second, { token: first.token, source: 'file', file }, 'the same token on the next start, not a new one')
  t.equal(resolveAdminToken({ token: null, token_file: file }, { create: false }).token, first.token)

  const other = resolveAdminToken({ token: null, token_file: join(dir, 'other.token') }, { create: true })
  t.not(other.token, first.token, 'tokens are random')
})

t.test('a token in the configuration wins; no file is touched', async t => {
  const dir = tmp(t)
  const file = join(dir, 'admin.token')
  writeFileSync(file, 'from-the-file-0123456789\n', { mode: 0o600 })
  t.same(resolveAdminToken({ token: 'from-the-config-0123456789', token_file: file }, { create: true }), { token: 'from-the-config-0123456789', source: 'config', file: null })
  const none = join(dir, 'none.token')
  resolveAdminToken({ token: 'from-the-config-0123456789', token_file: none }, { create: true })
  t.throws(() => statSync(none), { code: 'ENOENT' })
})

t.test('a provisioned file: whitespace trimmed, loose permissions reported, bad content refused', async t => {
  const dir = tmp(t)
  const file = join(dir, 'admin.token')
  writeFileSync(file, '  provisioned-token-0123456789 \n')
  chmodSync(file, 0o644)
  const r = resolveAdminToken({ token: null, token_file: file }, { create: true })
  t.same(r, { token: 'provisioned-token-0123456789', source: 'file', file, looseMode: 0o644 })
  for (const bad of ['short\n', '', 'has spaces in the token 0123\n']) {
    writeFileSync(file, bad)
    t.throws(() => resolveAdminToken({ token: null, token_file: file }, { create: true }), { code: 'ERR_ADMIN_TOKEN_FILE' }, JSON.stringify(bad))
    t.equal(readFileSync(file, 'utf8'), bad, 'an existing file is never overwritten')
  }
  mkdirSync(join(dir, 'adir'))
  t.throws(() => resolveAdminToken({ token: null, token_file: join(dir, 'adir') }, { create: true }), { code: 'ERR_ADMIN_TOKEN_FILE' })
  symlinkSync(join(dir, 'nowhere'), join(dir, 'dangling'))
  t.throws(() => resolveAdminToken({ token: null, token_file: join(dir, 'dangling') }, { create: true }), { code: 'ERR_ADMIN_TOKEN_FILE' }, 'a symlink is not followed')
})

t.test('the admin client never invents a token', async t => {
  const dir = tmp(t)
  const file = join(dir, 'missing.token')
  t.throws(() => resolveAdminToken({ token: null, token_file: file }, { create: false }), { code: 'ERR_ADMIN_TOKEN_FILE', message: /start sipedge once/ })
  t.throws(() => statSync(file), { code: 'ENOENT' })
})

t.test('an unwritable directory is a clear error', { skip: process.getuid?.() === 0 ? 'root may write anywhere' : false }, async t => {
  const dir = tmp(t)
  chmodSync(dir, 0o500)
  t.teardown(() => chmodSync(dir, 0o700))
  t.throws(() => resolveAdminToken({ token: null, token_file: join(dir, 'admin.token') }, { create: true }), { code: 'ERR_ADMIN_TOKEN_FILE', message: /cannot create it/ })
})
