// `sipedge admin -c FILE METHOD PATH [JSON]`: one request to the admin API of the proxy that runs
// with FILE, authenticated with that proxy's token (admin.token, else admin.token_file, which
// the proxy created on its first start). The operator never has to copy the token around.
import { loadConfigFile } from '@sipedge/config'
import { resolveAdminToken } from './admin-token.js'

const METHODS = new Set(['GET', 'POST', 'PUT', 'DELETE'])

function fail(msg: string, usage?: string): number {
  process.stderr.write(`sipedge admin: ${msg}\n${usage ?? ''}`)
  return 2
}

/** Exit code: 0 for a 2xx answer, 1 for an HTTP error or no answer, 2 for bad arguments or configuration. */
export async function adminCommand(args: string[], usage: string): Promise<number> {
  let file: string | undefined
  const rest: string[] = []
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!
    if (a === '--config' || a === '-c') file = args[++i]
    else if (a.startsWith('--config=')) file = a.slice('--config='.length)
    else rest.push(a)
  }
  if (file === undefined) return fail('--config FILE is required', usage)
  const [methodArg, path, body, extra] = rest
  const method = (methodArg ?? '').toUpperCase()
  if (!METHODS.has(method) || path === undefined || !path.startsWith('/') || extra !== undefined)
    return fail('expected METHOD PATH [JSON], e.g. GET /api/stats', usage)
  if (body !== undefined) {
    try { JSON.parse(body) } catch { return fail('the request body must be JSON') }
  }

  let config
  try {
    config = loadConfigFile(file)
  } catch (err) {
    return fail((err as Error).message)
  }
  const listen = config.admin.listen ?? config.metrics.listen
  if (listen === null) return fail('the admin API is off in this configuration (admin.listen and metrics.listen unset)')
  let token: string
  try {
    token = resolveAdminToken(config.admin, { create: false }).token
  } catch (err) {
    return fail((err as Error).message)
  }
  // a wildcard listener is reached on this host's loopback
  const host = listen.address === '0.0.0.0' ? '127.0.0.1' : listen.address === '::' ? '::1' : listen.address
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${listen.port}${path}`
  const headers: Record<string, string> = { authorization: `Bearer ${token}` }
  // state-changing requests must say JSON (the API refuses form and text bodies with 415)
  if (method !== 'GET') headers['content-type'] = 'application/json'
  try {
    const res = await fetch(url, { method, headers, ...(body !== undefined ? { body } : {}), signal: AbortSignal.timeout(15_000) })
    const text = await res.text()
    process.stdout.write(text.endsWith('\n') || text === '' ? text : text + '\n')
    if (res.status >= 300) {
      process.stderr.write(`sipedge admin: ${method} ${path}: HTTP ${res.status}\n`)
      return 1
    }
    return 0
  } catch (err) {
    process.stderr.write(`sipedge admin: ${method} ${url}: ${(err as Error).message}\n`)
    return 1
  }
}
