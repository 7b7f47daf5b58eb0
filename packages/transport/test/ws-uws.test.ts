// The uWebSockets.js loader (src/uws.ts).
import { createRequire } from 'node:module'
import t from 'tap'
import { UWS_CANDIDATES, UwsUnavailableError, loadUws, uwsPlatform } from '../dist/uws.js'

t.test('loads the native build', async tt => {
  const uws = loadUws()
  tt.type(uws.App, 'function')
  tt.match(Function.prototype.toString.call(uws.App), /\[native code\]/, 'native, not the ws-based JS fallback')
  tt.equal(loadUws(), uws, 'same module on the next call')
  tt.same(UWS_CANDIDATES, ['uWebSockets.js', '@btc-vision/uwebsockets.js'])
})

t.test('platform facts', async tt => {
  const p = uwsPlatform()
  tt.equal(p.platform, process.platform)
  tt.equal(p.arch, process.arch)
  tt.equal(p.node, process.versions.node)
  tt.equal(p.modules, process.versions.modules)
  if (process.platform === 'linux') tt.match(p.glibc ?? 'musl', /^(\d+\.\d+|musl)$/)
})

t.test('nothing loads: ERR_UWS_UNAVAILABLE naming the platform and every attempt', async tt => {
  const names = ['@sipedge/no-such-uws', 'node:path']
  let err: unknown
  try {
    loadUws(names)
  } catch (e) {
    err = e
  }
  tt.ok(err instanceof UwsUnavailableError)
  const e = err as UwsUnavailableError
  tt.equal(e.code, 'ERR_UWS_UNAVAILABLE')
  tt.same(e.attempts.map(a => a.module), names)
  tt.match(e.attempts[0]!.error, /MODULE_NOT_FOUND/)
  tt.match(e.attempts[1]!.error, /does not look like uWebSockets\.js/)
  tt.match(e.message, new RegExp(`${process.platform}-${process.arch}`))
  tt.match(e.message, new RegExp(`ABI ${process.versions.modules}`))
  tt.match(e.message, /glibc/)
  tt.equal(e.platform.node, process.versions.node)
})

t.test('the glibc 2.38 build fails cleanly when it is not installed', async tt => {
  const require = createRequire(new URL('../src/uws.ts', import.meta.url))
  let installed = true
  try {
    require.resolve('@btc-vision/uwebsockets.js')
  } catch {
    installed = false
  }
  if (installed) {
    tt.skip('@btc-vision/uwebsockets.js is installed here', () => {})
    return
  }
  tt.throws(() => loadUws(['@btc-vision/uwebsockets.js']), { code: 'ERR_UWS_UNAVAILABLE' })
})
