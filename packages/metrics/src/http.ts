// The metrics + admin HTTP listener, on a node:http server of its own (not the SIP WS one).
//
// node:http, not uWebSockets.js: uWS's loop keeps a 1 s date timer that woke the primary thread
// about once a second on an idle node (issue 17, docs/performance.md "Idle cost"); node:http has
// no timer of its own but its 30 s connection check. The listener answers a scrape every few
// seconds and a handful of admin calls: its throughput is not what the SIP path needs.
//
// Kept from the uWS version: a response is written once (a second write is dropped), nothing is
// written to a client that went away, a body is size-limited while it streams in, the port is
// exclusive (no SO_REUSEPORT share with another process).
import { createHash, timingSafeEqual } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { AdminError, type AdminBackend, type DestinationAction, type TraceFilters } from './admin.js'
import type { SipedgeMetrics } from './registry.js'

/** A client that has not sent its headers within this time is cut off (slowloris). */
const HEADERS_TIMEOUT_MS = 10_000
/** A whole request (headers and body) within this time. */
const REQUEST_TIMEOUT_MS = 30_000
/** Open connections at most: a scraper, an operator and a load balancer need a few. */
const MAX_CONNECTIONS = 256

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

const JSON_TYPE = 'application/json; charset=utf-8'

export function isLoopback(address: string): boolean {
  return address.startsWith('127.') || address === '::1' || address === 'localhost' || address.startsWith('::ffff:127.')
}

interface Ctx {
  readonly req: IncomingMessage
  readonly res: ServerResponse
  readonly method: string
  readonly path: string
  readonly query: URLSearchParams
  /** Request headers the checks need ('' when absent). */
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
  const headers: Record<string, string | number> = {
    'Content-Type': contentType,
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    // never sniffed into HTML by a browser; and no Access-Control-* header, ever (no CORS)
    'X-Content-Type-Options': 'nosniff',
  }
  if (extra !== undefined) Object.assign(headers, extra)
  ctx.res.writeHead(status, headers)
  ctx.res.end(body)
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
    ctx.req.on('data', (chunk: Buffer) => {
      if (over) return
      size += chunk.byteLength
      // past the limit the rest is read and dropped (within REQUEST_TIMEOUT_MS), then 413
      if (size > max) { over = true; parts.length = 0 } else parts.push(chunk)
    })
    ctx.req.once('end', () => {
      if (over) reject(new AdminError('ERR_ADMIN_BODY_TOO_LARGE', `request body larger than ${max} bytes`, 413))
      else resolve(Buffer.concat(parts, size))
    })
    ctx.req.once('error', err => reject(err))
    ctx.req.once('close', () => { if (!ctx.req.complete) reject(new AdminError('ERR_ADMIN_ABORTED', 'client went away', 400)) })
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

  const server = createServer({ headersTimeout: HEADERS_TIMEOUT_MS, requestTimeout: REQUEST_TIMEOUT_MS }, (req, res) => {
    const target = req.url ?? '/'
    let path = target
    let query = ''
    if (target.startsWith('/')) {
      const q = target.indexOf('?')
      if (q >= 0) { path = target.slice(0, q); query = target.slice(q + 1) }
    } else {
      // absolute-form (a proxy-style request) or garbage: the path of the URL, or 404
      try {
        const u = new URL(target)
        path = u.pathname
        query = u.search.slice(1)
      } catch { path = '' }
    }
    const h = req.headers
    const one = (v: string | string[] | undefined): string => (Array.isArray(v) ? v.join(', ') : v ?? '')
    const ctx: Ctx = {
      req,
      res,
      method: (req.method ?? 'GET').toUpperCase(),
      path,
      query: new URLSearchParams(query),
      authorization: one(h.authorization),
      origin: one(h.origin),
      fetchSite: one(h['sec-fetch-site']).toLowerCase(),
      contentType: one(h['content-type']),
      host: one(h.host),
      aborted: false,
      done: false,
    }
    // the client went away before the answer: nothing is written
    res.once('close', () => { if (!res.writableFinished) ctx.aborted = true })
    dispatch(ctx).catch(err => sendCaught(ctx, err))
  })
  server.maxConnections = MAX_CONNECTIONS
  // a client that sends garbage gets an answer that says why, and the connection is closed (as
  // node does by default): 408 when it was too slow (headersTimeout / requestTimeout), 431 for
  // headers over node's limit, 400 otherwise. A socket error of one client is that client's end,
  // never the listener's.
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable || err.code === 'ECONNRESET') { socket.destroy(); return }
    const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout'
      : err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large'
      : '400 Bad Request'
    socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`)
  })

  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      reject(new HttpServerError('ERR_METRICS_LISTEN', `cannot listen on ${opts.listen.address}:${opts.listen.port}: ${err.code ?? err.message}`))
    }
    server.once('error', onError)
    // exclusive: a second process on the same port is an error, not a shared port
    server.listen({ host: opts.listen.address, port: opts.listen.port, exclusive: true }, () => {
      server.off('error', onError)
      resolve()
    })
  })
  // after listening, an error of the listening socket is logged by nobody: keep it from becoming
  // an uncaught exception of the primary
  server.on('error', () => { /* the listener keeps running or is closed; the node does not fall over */ })
  const addr = server.address()
  const port = typeof addr === 'object' && addr !== null ? addr.port : opts.listen.port
  origins = ownOrigins(opts.listen.address, port)
  let closed = false
  return {
    address: opts.listen.address,
    port,
    close() {
      if (closed) return
      closed = true
      server.close()
    },
  }
}
