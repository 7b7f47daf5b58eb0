// The metrics + admin HTTP listener, on a uWebSockets.js App of its own (not the SIP WS one).
//
// uWS rules kept here: the HttpRequest is valid only during the synchronous part of the handler,
// so everything needed is copied out first; onAborted is attached before any asynchronous work
// and checked before every write; writes after an await are corked; a body is read with onData,
// copying each chunk (uWS reuses/neuters the ArrayBuffer after the callback).
import { createHash, timingSafeEqual } from 'node:crypto'
import { AdminError, type AdminBackend, type DestinationAction, type TraceFilters } from './admin.js'
import type { SipedgeMetrics } from './registry.js'

/** uSockets LIBUS_LISTEN_EXCLUSIVE_PORT: no SO_REUSEPORT. */
const LIBUS_LISTEN_EXCLUSIVE_PORT = 1
/** The (host, port, options, cb) overload uWS has at run time but not in its typings. */
interface ExclusiveListen<S> { listen(host: string, port: number, options: number, cb: (s: S | false) => void): void }
import { loadUwsForHttp, type UwsModule } from './uws.js'

type HttpResponse = import('uWebSockets.js').HttpResponse
type ListenSocket = import('uWebSockets.js').us_listen_socket

export interface HttpServerOptions {
  /** Bind address and port (port 0: any free port; read it back from HttpServer.port). */
  listen: { address: string; port: number }
  /** Serve Prometheus metrics at `path` (default /metrics). */
  metrics?: { registry: SipedgeMetrics; path?: string } | null
  /**
   * Serve /health, /ready (open: load balancers and keepalived ask them) and the /api routes.
   * There is no admin API without a token: every /api request needs `Authorization: Bearer
   * <token>` (401 otherwise), comes from no other origin (403), changes state only with
   * POST/PUT/DELETE and a JSON body type (405/415), and on a non-loopback listener is served only
   * when `enabled` (403). docs/security.md "Admin API".
   */
  admin?: { backend: AdminBackend; token: string; enabled?: boolean } | null
  /** Largest request body accepted (413 beyond). Default 64 KiB. */
  maxBodyBytes?: number
  /** For tests: a specific uWS module. */
  uws?: UwsModule
}

export interface HttpServer {
  readonly address: string
  readonly port: number
  /** Stop listening; in-flight responses still complete. Idempotent. */
  close(): void
}

export class HttpServerError extends Error {
  readonly code: string
  constructor(code: string, message: string) {
    super(message)
    this.name = 'HttpServerError'
    this.code = code
  }
}

const STATUS_TEXT: Record<number, string> = {
  200: '200 OK', 202: '202 Accepted', 400: '400 Bad Request', 401: '401 Unauthorized', 403: '403 Forbidden', 404: '404 Not Found',
  405: '405 Method Not Allowed', 413: '413 Payload Too Large', 415: '415 Unsupported Media Type', 500: '500 Internal Server Error', 501: '501 Not Implemented',
  503: '503 Service Unavailable',
}
const JSON_TYPE = 'application/json; charset=utf-8'

export function isLoopback(address: string): boolean {
  return address.startsWith('127.') || address === '::1' || address === 'localhost' || address.startsWith('::ffff:127.')
}

interface Ctx {
  readonly res: HttpResponse
  readonly method: string
  readonly path: string
  readonly query: URLSearchParams
  /** Request headers the checks need, copied out of the uWS request ('' when absent). */
  readonly authorization: string
  readonly origin: string
  readonly fetchSite: string
  readonly contentType: string
  readonly host: string
  aborted: boolean
  done: boolean
}

/** Methods that may change state; GET and HEAD never do. */
const STATE_CHANGING = new Set(['POST', 'PUT', 'DELETE', 'PATCH'])

/**
 * `application/json` (parameters such as charset allowed). What an HTML form can send without a
 * CORS preflight — application/x-www-form-urlencoded, multipart/form-data, text/plain — never
 * passes, so a page on another site cannot drive the API even where a browser leaves out Origin.
 */
function isJsonType(contentType: string): boolean {
  const semi = contentType.indexOf(';')
  return (semi < 0 ? contentType : contentType.slice(0, semi)).trim().toLowerCase() === 'application/json'
}

/** The origins a page served by this listener would have (none is, but a same-origin caller is no attack). */
function ownOrigins(address: string, port: number): Set<string> {
  const hosts = [address.includes(':') ? `[${address}]` : address]
  if (isLoopback(address)) hosts.push('localhost', '127.0.0.1', '[::1]')
  const out = new Set<string>()
  for (const h of hosts) {
    out.add(`http://${h}:${port}`)
    if (port === 80) out.add(`http://${h}`)
  }
  return out
}

function send(ctx: Ctx, status: number, contentType: string, body: string, extra?: Record<string, string>): void {
  if (ctx.aborted || ctx.done) return
  ctx.done = true
  ctx.res.cork(() => {
    ctx.res.writeStatus(STATUS_TEXT[status] ?? `${status} Status`)
    ctx.res.writeHeader('Content-Type', contentType)
    ctx.res.writeHeader('Cache-Control', 'no-store')
    // never sniffed into HTML by a browser; and no Access-Control-* header, ever (no CORS)
    ctx.res.writeHeader('X-Content-Type-Options', 'nosniff')
    if (extra !== undefined) for (const [k, v] of Object.entries(extra)) ctx.res.writeHeader(k, v)
    ctx.res.end(body)
  })
}
function sendJson(ctx: Ctx, status: number, value: unknown, extra?: Record<string, string>): void {
  send(ctx, status, JSON_TYPE, JSON.stringify(value) + '\n', extra)
}
function sendError(ctx: Ctx, status: number, code: string, message: string, extra?: Record<string, string>): void {
  sendJson(ctx, status, { error: { code, message } }, extra)
}
function sendCaught(ctx: Ctx, err: unknown): void {
  if (err instanceof AdminError) return sendError(ctx, err.status, err.code, err.message)
  const e = err as { code?: unknown; message?: unknown; status?: unknown }
  const status = typeof e?.status === 'number' && e.status >= 400 && e.status <= 599 ? e.status : 500
  const code = typeof e?.code === 'string' ? e.code : 'ERR_ADMIN_INTERNAL'
  sendError(ctx, status, code, typeof e?.message === 'string' ? e.message : String(err))
}

function readBody(ctx: Ctx, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = []
    let size = 0
    let over = false
    ctx.res.onData((chunk, isLast) => {
      if (!over) {
        size += chunk.byteLength
        if (size > max) over = true
        else parts.push(Buffer.from(chunk.slice(0)))
      }
      if (isLast) {
        if (over) reject(new AdminError('ERR_ADMIN_BODY_TOO_LARGE', `request body larger than ${max} bytes`, 413))
        else resolve(Buffer.concat(parts, size))
      }
    })
  })
}

async function readJson(ctx: Ctx, max: number): Promise<unknown> {
  const body = await readBody(ctx, max)
  if (body.length === 0) return {}
  try {
    return JSON.parse(body.toString('utf8'))
  } catch {
    throw new AdminError('ERR_ADMIN_BAD_JSON', 'request body is not valid JSON', 400)
  }
}

function decode(segment: string): string {
  try {
    return decodeURIComponent(segment)
  } catch {
    throw new AdminError('ERR_ADMIN_BAD_PATH', `bad percent-encoding in "${segment}"`, 400)
  }
}

/** Constant time: both sides hashed first, so neither the content nor the length leaks through timing. */
function tokenMatches(header: string, token: string): boolean {
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header)
  if (m === null) return false
  return timingSafeEqual(createHash('sha256').update(m[1]!).digest(), createHash('sha256').update(token).digest())
}

function strList(v: unknown, name: string): string[] {
  if (v === undefined) return []
  if (!Array.isArray(v) || !v.every(x => typeof x === 'string')) throw new AdminError('ERR_ADMIN_BAD_REQUEST', `${name} must be a list of strings`, 400)
  return v as string[]
}

/** A route: the methods it answers, and the handler given the decoded path parameters. */
type Handler = (ctx: Ctx, params: string[]) => Promise<void>
interface Route { match: (segments: string[]) => string[] | null; methods: Record<string, Handler> }

/** Starts the listener. Resolves once it listens; rejects with ERR_METRICS_LISTEN if it cannot bind. */
export async function startHttpServer(opts: HttpServerOptions): Promise<HttpServer> {
  const uws = opts.uws ?? loadUwsForHttp()
  const maxBody = opts.maxBodyBytes ?? 64 * 1024
  const metrics = opts.metrics ?? null
  const metricsPath = metrics?.path ?? '/metrics'
  const admin = opts.admin ?? null
  if (admin !== null && (typeof admin.token !== 'string' || admin.token.length < 16))
    throw new HttpServerError('ERR_ADMIN_NO_TOKEN', 'the admin API needs a bearer token of at least 16 characters')
  const token = admin?.token ?? ''
  const wildcard = opts.listen.address === '0.0.0.0' || opts.listen.address === '::'
  let origins = new Set<string>() // filled once the port is known
  const adminAllowed = admin !== null && (admin.enabled === true || isLoopback(opts.listen.address))
  const backend = admin?.backend

  const routes: Route[] = []
  const exact = (path: string, methods: Record<string, Handler>): void => {
    const segs = path.split('/').slice(1)
    routes.push({ match: s => (s.length === segs.length && s.every((x, i) => x === segs[i]) ? [] : null), methods })
  }

  if (metrics !== null) {
    exact(metricsPath, {
      GET: async ctx => {
        const text = await metrics.registry.metrics()
        send(ctx, 200, metrics.registry.contentType, text)
      },
    })
  }

  if (admin !== null && backend !== undefined) {
    exact('/health', {
      GET: async ctx => {
        const h = backend.health !== undefined ? await backend.health() : { ok: true }
        sendJson(ctx, h.ok ? 200 : 503, { status: h.ok ? 'ok' : 'failing', ...h })
      },
    })
    exact('/ready', {
      GET: async ctx => {
        const r = await backend.ready()
        sendJson(ctx, r.ready ? 200 : 503, { ready: r.ready, reasons: r.reasons ?? [] })
      },
    })
    exact('/api/stats', { GET: async ctx => sendJson(ctx, 200, await backend.stats()) })
    exact('/api/registrations', {
      GET: async ctx => {
        const q = ctx.query
        const limitText = q.get('limit')
        const limit = limitText === null ? 100 : Number(limitText)
        if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new AdminError('ERR_ADMIN_BAD_REQUEST', 'limit must be an integer in 1..1000', 400)
        const aor = q.get('aor')
        const cursor = q.get('cursor')
        sendJson(ctx, 200, await backend.registrations({
          limit,
          ...(aor !== null && aor !== '' ? { aor } : {}),
          ...(cursor !== null && cursor !== '' ? { cursor } : {}),
        }))
      },
    })
    exact('/api/dialogs', { GET: async ctx => sendJson(ctx, 200, await backend.dialogCounts()) })
    routes.push({
      match: s => (s.length === 3 && s[0] === 'api' && s[1] === 'dialogs' && s[2] !== '' ? [decode(s[2]!)] : null),
      methods: {
        GET: async (ctx, [callId]) => {
          const d = await backend.dialog(callId!)
          if (d === null) throw new AdminError('ERR_ADMIN_NOT_FOUND', 'no such dialog', 404)
          sendJson(ctx, 200, d)
        },
      },
    })
    exact('/api/dispatcher', { GET: async ctx => sendJson(ctx, 200, await backend.dispatcher()) })
    // /api/dispatcher/:set/:uri/(drain|enable|disable); the URI may be percent-encoded or raw
    // ("sip:127.0.0.2:5070"), and a raw one may even contain "/" (it is everything in between).
    routes.push({
      match: s => {
        if (s.length < 5 || s[0] !== 'api' || s[1] !== 'dispatcher') return null
        const action = s[s.length - 1]!
        if (action !== 'drain' && action !== 'enable' && action !== 'disable') return null
        const uri = s.slice(3, -1).join('/')
        if (s[2] === '' || uri === '') return null
        return [decode(s[2]!), decode(uri), action]
      },
      methods: {
        POST: async (ctx, [set, uri, action]) => {
          sendJson(ctx, 200, await backend.setDestinationState(set!, uri!, action as DestinationAction))
        },
      },
    })
    exact('/api/bans', { GET: async ctx => sendJson(ctx, 200, { items: await backend.bans() }) })
    routes.push({
      match: s => (s.length === 3 && s[0] === 'api' && s[1] === 'bans' && s[2] !== '' ? [decode(s[2]!)] : null),
      methods: {
        DELETE: async (ctx, [address]) => {
          if (!(await backend.unban(address!))) throw new AdminError('ERR_ADMIN_NOT_FOUND', 'address is not banned', 404)
          sendJson(ctx, 200, { address, unbanned: true })
        },
      },
    })
    exact('/api/reload', {
      POST: async ctx => {
        const r = await backend.reload()
        if (r.ok) sendJson(ctx, 200, r)
        else sendJson(ctx, 400, { error: { code: 'ERR_CONFIG_INVALID', message: 'configuration rejected; the running one stays in force' }, ...r })
      },
    })
    exact('/api/logs/reopen', {
      POST: async ctx => {
        if (backend.reopenLogs === undefined) throw new AdminError('ERR_ADMIN_NOT_IMPLEMENTED', 'log reopen is not available', 501)
        await backend.reopenLogs()
        sendJson(ctx, 200, { reopened: true })
      },
    })
    // ---- issue 15: this node and its drain (docs/ha.md)
    exact('/api/node', {
      GET: async ctx => {
        if (backend.node === undefined) throw new AdminError('ERR_ADMIN_NOT_IMPLEMENTED', 'node status is not available', 501)
        sendJson(ctx, 200, await backend.node())
      },
    })
    exact('/api/node/drain', {
      POST: async ctx => {
        if (backend.drainNode === undefined) throw new AdminError('ERR_ADMIN_NOT_IMPLEMENTED', 'node drain is not available', 501)
        sendJson(ctx, 200, await backend.drainNode())
      },
    })
    const traceGet = async (ctx: Ctx): Promise<void> => {
      if (backend.traceFilters === undefined) throw new AdminError('ERR_ADMIN_NOT_IMPLEMENTED', 'tracing is not available', 501)
      sendJson(ctx, 200, await backend.traceFilters())
    }
    const traceSet = async (ctx: Ctx, f: TraceFilters): Promise<void> => {
      if (backend.setTraceFilters === undefined) throw new AdminError('ERR_ADMIN_NOT_IMPLEMENTED', 'tracing is not available', 501)
      sendJson(ctx, 200, await backend.setTraceFilters(f))
    }
    exact('/api/trace', {
      GET: traceGet,
      PUT: async ctx => {
        const b = (await readJson(ctx, maxBody)) as Record<string, unknown>
        if (b === null || typeof b !== 'object') throw new AdminError('ERR_ADMIN_BAD_REQUEST', 'body must be a JSON object', 400)
        await traceSet(ctx, { callIds: strList(b['callIds'], 'callIds'), sources: strList(b['sources'], 'sources') })
      },
      DELETE: async ctx => traceSet(ctx, { callIds: [], sources: [] }),
    })
  }

  /**
   * A request a browser sends on behalf of another site: an Origin other than this listener's
   * (also "null": sandboxed frames, file: pages), or Sec-Fetch-Site saying so. "same-site" is
   * refused too: another port on the same host (a local web app) is same-site but not our origin.
   */
  function crossOrigin(ctx: Ctx): boolean {
    if (ctx.fetchSite !== '' && ctx.fetchSite !== 'same-origin' && ctx.fetchSite !== 'none') return true
    if (ctx.origin === '') return false
    const o = ctx.origin.toLowerCase()
    if (origins.has(o)) return false
    // a wildcard listener has no one address: the name the client used (Host) is its origin
    return !(wildcard && ctx.host !== '' && o === `http://${ctx.host.toLowerCase()}`)
  }

  async function dispatch(ctx: Ctx): Promise<void> {
    const segments = ctx.path.split('/').slice(1)
    if (segments[0] === 'api') {
      if (!adminAllowed) return sendError(ctx, 403, 'ERR_ADMIN_DISABLED', 'the admin API is not enabled on this non-loopback listener (admin.enabled)')
      if (crossOrigin(ctx)) return sendError(ctx, 403, 'ERR_ADMIN_CROSS_ORIGIN', 'cross-origin requests are refused')
      if (!tokenMatches(ctx.authorization, token)) {
        return sendError(ctx, 401, 'ERR_ADMIN_UNAUTHORIZED', 'missing or wrong bearer token', { 'WWW-Authenticate': 'Bearer realm="sipedge"' })
      }
    }
    for (const r of routes) {
      const params = r.match(segments)
      if (params === null) continue
      const h = r.methods[ctx.method]
      if (h === undefined) {
        return sendError(ctx, 405, 'ERR_ADMIN_METHOD_NOT_ALLOWED', `${ctx.method} is not allowed on ${ctx.path}`, { Allow: Object.keys(r.methods).join(', ') })
      }
      if (STATE_CHANGING.has(ctx.method) && !isJsonType(ctx.contentType)) {
        return sendError(ctx, 415, 'ERR_ADMIN_CONTENT_TYPE', `${ctx.method} needs Content-Type: application/json`)
      }
      return h(ctx, params)
    }
    sendError(ctx, 404, 'ERR_ADMIN_NOT_FOUND', `no route for ${ctx.path}`)
  }

  const app = uws.App()
  app.any('/*', (res, req) => {
    // copy everything out of req now: it is invalid after this synchronous part
    const ctx: Ctx = {
      res,
      method: req.getMethod().toUpperCase(),
      path: req.getUrl(),
      query: new URLSearchParams(req.getQuery() ?? ''),
      authorization: req.getHeader('authorization'),
      origin: req.getHeader('origin'),
      fetchSite: req.getHeader('sec-fetch-site').toLowerCase(),
      contentType: req.getHeader('content-type'),
      host: req.getHeader('host'),
      aborted: false,
      done: false,
    }
    res.onAborted(() => { ctx.aborted = true })
    dispatch(ctx).catch(err => sendCaught(ctx, err))
  })

  const listenSocket = await new Promise<ListenSocket>((resolve, reject) => {
    // Exclusive: a second process on the same port is an error, not a silent SO_REUSEPORT share.
    ;(app as unknown as ExclusiveListen<ListenSocket>).listen(opts.listen.address, opts.listen.port, LIBUS_LISTEN_EXCLUSIVE_PORT, s => {
      if (s === false) reject(new HttpServerError('ERR_METRICS_LISTEN', `cannot listen on ${opts.listen.address}:${opts.listen.port}`))
      else resolve(s)
    })
  })
  const port = uws.us_socket_local_port(listenSocket as never)
  origins = ownOrigins(opts.listen.address, port)
  let closed = false
  return {
    address: opts.listen.address,
    port,
    close() {
      if (closed) return
      closed = true
      uws.us_listen_socket_close(listenSocket)
    },
  }
}
