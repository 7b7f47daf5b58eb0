// A WebRTC phone in a real browser for tests: a small page using SIP.js (served as ES modules
// straight from node_modules/sip.js/lib) in headless Chromium driven by playwright-core. The
// page exposes `window.phone` (start/register, call, answer incoming calls, hang up) and logs
// what SIP.js saw; it also counts the WebSocket connections it opens.
import { createServer, type Server } from 'node:http'
import { existsSync, readFileSync } from 'node:fs'
import { extname, join, normalize } from 'node:path'
import { createRequire } from 'node:module'
import { dirname } from 'node:path'

export const CHROMIUM = process.env['CHROMIUM'] ?? '/usr/bin/chromium'

/** Why the browser test cannot run here, or null. */
export function chromiumMissing(): string | null {
  if (!existsSync(CHROMIUM)) return `chromium not installed (${CHROMIUM}; Debian package chromium)`
  try { createRequire(import.meta.url).resolve('playwright-core') } catch { return 'playwright-core not installed' }
  return null
}

const SIPJS_LIB = join(dirname(createRequire(import.meta.url).resolve('sip.js')), '.')

const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>sipedge WebRTC test phone</title>
<script>
  // Every WebSocket the page opens, before SIP.js loads.
  window.sockets = []
  const NativeWS = window.WebSocket
  window.WebSocket = class extends NativeWS {
    constructor(...a) { super(...a); window.sockets.push(this) }
  }
</script>
<script type="module">
  import { UserAgent, Registerer, RegistererState, Inviter, SessionState } from '/sipjs/index.js'
  const log = []
  let ua, registerer, session = null
  const sdh = { constraints: { audio: true, video: false } }
  const watch = (s, dir) => {
    session = s
    s.stateChange.addListener(st => log.push({ ev: 'session', dir, state: st }))
    // in-dialog requests the browser receives
    s.delegate = {
      onAck: () => log.push({ ev: 'ack', dir }),
      // SIP.js 0.21 leaves the answer to a delegate that takes the BYE: accept it (200)
      onBye: bye => { log.push({ ev: 'bye', dir }); bye.accept().catch(e => log.push({ ev: 'error', where: 'bye', message: String(e) })) },
    }
  }
  window.phone = {
    log,
    get sessionState() { return session ? session.state : null },
    get registered() { return registerer ? registerer.state === RegistererState.Registered : false },
    async start({ server, aor, user, password }) {
      ua = new UserAgent({
        uri: UserAgent.makeURI(aor),
        transportOptions: { server, traceSip: false },
        authorizationUsername: user,
        authorizationPassword: password,
        logLevel: 'warn',
        sessionDescriptionHandlerFactoryOptions: { iceGatheringTimeout: 500, peerConnectionConfiguration: { iceServers: [] } },
        delegate: {
          onInvite(inv) {
            log.push({ ev: 'invite', recordRoute: inv.request.getHeaders('record-route'), from: inv.remoteIdentity.uri.toString() })
            watch(inv, 'in')
            inv.accept({ sessionDescriptionHandlerOptions: sdh }).catch(e => log.push({ ev: 'error', where: 'accept', message: String(e) }))
          },
        },
      })
      await ua.start()
      registerer = new Registerer(ua, { expires: 300 })
      registerer.stateChange.addListener(st => log.push({ ev: 'register', state: st }))
      await registerer.register({ requestDelegate: { onReject: r => log.push({ ev: 'register-rejected', status: r.message.statusCode }) } })
    },
    async call(target) {
      const inviter = new Inviter(ua, UserAgent.makeURI(target), { sessionDescriptionHandlerOptions: sdh })
      watch(inviter, 'out')
      await inviter.invite({
        requestDelegate: {
          onAccept: r => log.push({ ev: 'accepted', status: r.message.statusCode, recordRoute: r.message.getHeaders('record-route') }),
          onReject: r => log.push({ ev: 'rejected', status: r.message.statusCode }),
        },
      })
    },
    async hangup() {
      if (session && session.state === SessionState.Established) await session.bye()
    },
    async stop() {
      if (registerer) await registerer.unregister().catch(() => {})
      if (ua) await ua.stop()
    },
  }
  window.phoneReady = true
</script>
`

const TYPES: Record<string, string> = { '.js': 'text/javascript', '.html': 'text/html', '.map': 'application/json' }

/** Serves the page at / and SIP.js at /sipjs/ on 127.0.0.1:port (http://127.0.0.1 is a secure context). */
export async function servePage(port: number): Promise<Server> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x')
    if (url.pathname === '/' || url.pathname === '/index.html') {
      res.writeHead(200, { 'content-type': 'text/html' })
      res.end(PAGE)
      return
    }
    if (url.pathname.startsWith('/sipjs/')) {
      const rel = normalize(url.pathname.slice('/sipjs/'.length))
      const file = join(SIPJS_LIB, rel)
      if (!rel.startsWith('..') && file.startsWith(SIPJS_LIB) && existsSync(file)) {
        res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' })
        res.end(readFileSync(file))
        return
      }
    }
    res.writeHead(404)
    res.end()
  })
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(port, '127.0.0.1', () => resolve()) })
  return server
}
