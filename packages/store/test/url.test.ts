import t from 'tap'
import { openStores, parseStoreUrl, StoreError } from '@sipedge/store'

t.test('parseStoreUrl', async t => {
  t.same(parseStoreUrl('lmdb:/var/lib/sipedge/store'), { backend: 'lmdb', path: '/var/lib/sipedge/store', syncMs: 100 })
  t.same(parseStoreUrl('lmdb:///var/lib/x'), { backend: 'lmdb', path: '/var/lib/x', syncMs: 100 })
  t.same(parseStoreUrl('lmdb:./data'), { backend: 'lmdb', path: './data', syncMs: 100 })
  t.same(parseStoreUrl('lmdb:./data?sync=commit'), { backend: 'lmdb', path: './data', syncMs: 0 }, 'sync=commit: flushed per commit')
  t.same(parseStoreUrl('lmdb:/d?sync=250ms'), { backend: 'lmdb', path: '/d', syncMs: 250 })
  t.same(parseStoreUrl('lmdb:/d?sync=20'), { backend: 'lmdb', path: '/d', syncMs: 20 })
  t.same(parseStoreUrl('redis://127.0.0.1:6380/2'), { backend: 'redis', host: '127.0.0.1', port: 6380, db: 2, tls: false })
  t.same(parseStoreUrl('redis://h'), { backend: 'redis', host: 'h', port: 6379, db: 0, tls: false })
  t.same(parseStoreUrl('rediss://u:p%40ss@h:1/0?prefix=a:'), {
    backend: 'redis', host: 'h', port: 1, db: 0, tls: true, username: 'u', password: 'p@ss', keyPrefix: 'a:',
  })
  t.same(parseStoreUrl('redis://[::1]:6379/1'), { backend: 'redis', host: '::1', port: 6379, db: 1, tls: false })
  for (const bad of ['', 'lmdb:', 'memcached://h', '/just/a/path', 'redis://h/notanumber', 'redis://:6379/0', 'redis://h:99999/0', 'lmdb:/d?sync=0', 'lmdb:/d?sync=soon', 'lmdb:/d?fast=1', 'lmdb:?sync=commit']) {
    t.throws(() => parseStoreUrl(bad), { code: 'ERR_STORE_BAD_URL' }, `rejects '${bad}'`)
  }
  try {
    parseStoreUrl('redis://u:secret@h/x')
  } catch (err) {
    t.ok(err instanceof StoreError)
    t.notMatch((err as Error).message, /secret/, 'password never in the message')
  }
})

t.test('openStores rejects a bad URL with ERR_STORE_BAD_URL', async t => {
  await t.rejects(openStores('foo:bar'), { code: 'ERR_STORE_BAD_URL' })
  await t.rejects(openStores('lmdb:/tmp/x', { sweepBatch: -1 }), { code: 'ERR_STORE_BAD_VALUE' })
})

t.test('StoreError survives a structured clone as {code, message}', async t => {
  const e = new StoreError('ERR_STORE_UNAVAILABLE', 'down')
  const back = StoreError.from(structuredClone(e.toJSON()))
  t.equal(back.code, 'ERR_STORE_UNAVAILABLE')
  t.equal(back.message, 'down')
})
