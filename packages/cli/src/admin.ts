// The admin API's backend (@sipedge/metrics AdminBackend) over the running product: engine
// state and counters, worker queries (docs/contracts.md "Control messages"), the stores opened
// in the primary, and the same reload path as SIGHUP.
import type { FrozenConfig } from '@sipedge/config'
import type { Engine } from '@sipedge/transport'
import type { Stores } from '@sipedge/store'
import type { Logger } from '@sipedge/log'
import type { NodeDrain } from './node-drain.js'
import type { BanSync } from './bans.js'
import {
  AdminError,
  type AdminBackend, type BanInfo, type BindingInfo, type DestinationAction, type DestinationInfo, type DestinationStatus,
  type DialogCounts, type DispatcherInfo, type Page, type ReadyStatus, type RegistrationInfo, type RegistrationQuery,
  type ReloadResult, type TraceFilters,
} from '@sipedge/metrics'

export interface AdminDeps {
  engine: Engine
  config(): FrozenConfig
  generation(): number
  /** The stores named by registrar.store, opened on first use; null when not reachable from the primary. */
  stores(): Promise<Stores | null>
  reload(): Promise<ReloadResult>
  reopenLogs(): Promise<void>
  /** True once SIGTERM started the drain. */
  stopping(): boolean
  log: Logger
  startedAt: number
  /** Node drain (docs/ha.md); absent: /api/node answers 501. */
  drain?: NodeDrain
  /** The primary's ban table and its store (bans.ts). */
  bans: BanSync
}

/** Trace filters in force; sent to every worker (and to replacements in their workerData). */
export class TraceState {
  filters: TraceFilters = { callIds: [], sources: [] }
}

function errCode(err: unknown): string {
  const c = (err as { code?: unknown } | null)?.code
  return typeof c === 'string' ? c : ''
}

const UNSUPPORTED = new Set(['ERR_QUERY_UNKNOWN', 'ERR_QUERY_UNSUPPORTED'])

/** Flattens a `dispatcher` answer into the metrics registry's destination list. */
export function destinationStatuses(info: DispatcherInfo): DestinationStatus[] {
  const out: DestinationStatus[] = []
  for (const s of info.sets ?? []) for (const d of s.destinations ?? []) out.push({ set: s.name, uri: d.uri, state: d.state })
  return out
}

function binding(b: { contact: string; expires: number; path?: string[]; instance?: string | undefined; regId?: number | undefined; userAgent?: string | undefined; received?: { transport: string; address: string; port: number } }, now: number): BindingInfo {
  const r = b.received
  return {
    contact: b.contact,
    expires: Math.max(0, Math.round((b.expires - now) / 1000)),
    received: r !== undefined ? `${r.transport}:${r.address.includes(':') ? `[${r.address}]` : r.address}:${r.port}` : null,
    path: b.path ?? [],
    instance: b.instance ?? null,
    regId: b.regId ?? null,
    userAgent: b.userAgent ?? null,
  }
}

export function createAdminBackend(d: AdminDeps, trace: TraceState): AdminBackend {
  const { engine } = d

  async function storesOr501(): Promise<Stores> {
    const s = await d.stores()
    if (s === null) throw new AdminError('ERR_ADMIN_NOT_AVAILABLE', 'the store is not reachable from the primary', 501)
    return s
  }

  async function dispatcher(): Promise<DispatcherInfo> {
    try {
      return (await engine.query(0, 'dispatcher')) as DispatcherInfo
    } catch (err) {
      if (UNSUPPORTED.has(errCode(err))) return { sets: [] }
      throw new AdminError(errCode(err) || 'ERR_ADMIN_QUERY', (err as Error).message, 503)
    }
  }

  return {
    async health() {
      return { ok: true, uptimeSeconds: Math.round((Date.now() - d.startedAt) / 1000), generation: d.generation() }
    },

    async ready(): Promise<ReadyStatus> {
      const reasons: string[] = []
      if (d.stopping() || engine.state === 'draining' || engine.state === 'stopped') reasons.push('draining')
      else if (engine.state !== 'running') reasons.push('starting')
      const want = engine.workerCount
      if (engine.state === 'running' && engine.workersAlive < want) reasons.push(`workers starting (${engine.workersAlive}/${want})`)
      return reasons.length === 0 ? { ready: true } : { ready: false, reasons }
    },

    async stats() {
      const s = engine.stats()
      const workers = await Promise.all(
        (engine.workerCount === 0 ? [0] : s.workers.map(w => w.index)).map(i =>
          engine.query(i, 'stats').catch((err: unknown) => ({ worker: i, error: { code: errCode(err) || 'ERR_QUERY_FAILED', message: (err as Error).message } }))),
      )
      return {
        generation: d.generation(),
        uptimeSeconds: Math.round((Date.now() - d.startedAt) / 1000),
        state: engine.state,
        pid: process.pid,
        memory: process.memoryUsage(),
        connections: s.connections,
        connectionsByTransport: engine.connectionsByTransport(),
        counters: s.counters,
        pike: engine.pike.stats(),
        rings: engine.ringStats(),
        workers,
      }
    },

    async registrations(q: RegistrationQuery): Promise<Page<RegistrationInfo>> {
      const st = await storesOr501()
      const now = Date.now()
      if (q.aor !== undefined) {
        const list = await st.location.get(q.aor)
        return { items: list.length > 0 ? [{ aor: q.aor, bindings: list.map(b => binding(b, now)) }] : [], next: null }
      }
      const page = await st.location.list(q.cursor ?? null, q.limit)
      return { items: page.items.map(a => ({ aor: a.aor, bindings: a.bindings.map(b => binding(b, now)) })), next: page.cursor }
    },

    async dialogCounts(): Promise<DialogCounts> {
      try {
        const all = (await engine.query('all', 'dialogs')) as Array<{ total?: number; bySet?: Record<string, number> } | null>
        const out: DialogCounts = { total: 0, bySet: {} }
        for (const w of all) {
          out.total += w?.total ?? 0
          for (const [k, v] of Object.entries(w?.bySet ?? {})) out.bySet[k] = (out.bySet[k] ?? 0) + v
        }
        return out
      } catch (err) {
        if (!UNSUPPORTED.has(errCode(err))) throw err
      }
      // No dialog query in this build: the dispatcher's per-destination counts, summed over workers.
      const all = (await engine.query('all', 'dispatcher')) as DispatcherInfo[]
      const out: DialogCounts = { total: 0, bySet: {} }
      for (const w of all) {
        for (const s of w.sets ?? []) {
          for (const x of s.destinations) {
            const n = typeof x.activeDialogs === 'number' ? x.activeDialogs : 0
            out.total += n
            out.bySet[s.name] = (out.bySet[s.name] ?? 0) + n
          }
        }
      }
      return out
    },

    async dialog(callId: string) {
      try {
        const r = await engine.query(engine.workerForCallId(callId), 'dialog', { callId })
        return r === null || r === undefined ? null : (r as Record<string, unknown>)
      } catch (err) {
        if (UNSUPPORTED.has(errCode(err))) throw new AdminError('ERR_ADMIN_NOT_IMPLEMENTED', 'dialog lookup is not available in this build', 501)
        throw err
      }
    },

    dispatcher,

    async setDestinationState(set: string, uri: string, action: DestinationAction): Promise<DestinationInfo> {
      const before = await dispatcher()
      const s = before.sets.find(x => x.name === set)
      if (s === undefined) throw new AdminError('ERR_ADMIN_NOT_FOUND', `no dispatcher set "${set}"`, 404)
      if (s.destinations.find(x => x.uri === uri) === undefined) throw new AdminError('ERR_ADMIN_NOT_FOUND', `no destination "${uri}" in set "${set}"`, 404)
      // Every worker routes on its own copy of the dispatcher: all of them get the action. The
      // query that follows travels on worker 0's port after it, so it sees the new state.
      // issue 15: with a Redis store the state is kept there first (every node applies it, and it
      // survives a restart); a write that failed is reported, and nothing is changed.
      if (/^redis(s|\+sentinel)?:/i.test(d.config().registrar.store)) {
        try {
          const st = await storesOr501()
          await st.cluster.setAdminState(set, uri, action === 'enable' ? null : action)
        } catch (err) {
          if (err instanceof AdminError) throw err
          throw new AdminError('ERR_ADMIN_STORE_UNAVAILABLE', `the shared store did not take the state: ${(err as Error).message}`, 503)
        }
      }
      engine.control({ type: 'dispatcher-admin', set, uri, action })
      d.log.info({ set, uri, action }, 'dispatcher destination action')
      const after = await dispatcher()
      return after.sets.find(x => x.name === set)?.destinations.find(x => x.uri === uri) ?? { uri, state: 'unknown' }
    },

    // The primary's table: every ban in force here (pike's floods, the workers' auth bans, the
    // other nodes' through the store), with what it has dropped. docs/operations.md.
    async bans(): Promise<BanInfo[]> {
      return engine.pike.list().map(b => ({
        address: b.address,
        reason: b.reason,
        domain: b.domain,
        origin: b.origin,
        dropped: b.dropped,
        requests: b.requests,
        since: new Date(b.since).toISOString(),
        until: new Date(b.until).toISOString(),
        expiresInSeconds: Math.max(0, Math.ceil((b.until - Date.now()) / 1000)),
      }))
    },

    async unban(address: string): Promise<boolean> {
      const ok = await d.bans.lift(address)
      if (ok) d.log.info({ address }, 'ban lifted (admin API)')
      return ok
    },

    reload: () => d.reload(),
    reopenLogs: () => d.reopenLogs(),

    ...(d.drain !== undefined ? {
      node: () => d.drain!.status(),
      async drainNode() { d.drain!.start('api'); return d.drain!.status() },
    } : {}),

    async traceFilters() {
      return trace.filters
    },

    async setTraceFilters(f: TraceFilters) {
      trace.filters = { callIds: [...new Set(f.callIds)].slice(0, 1000), sources: [...new Set(f.sources)].slice(0, 1000) }
      engine.control({ type: 'trace', filters: trace.filters })
      d.log.info({ callIds: trace.filters.callIds.length, sources: trace.filters.sources.length }, 'SIP trace filters set')
      return trace.filters
    },
  }
}
