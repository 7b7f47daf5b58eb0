// The `registrar` module's declaration and instance: the route actions `register` (it takes over
// the REGISTER's server transaction) and `lookup` (the registered contacts as hops).
import { parseUri, type SipMessage } from '@sipedge/sip'
import type { ServerTransaction } from '@sipedge/transaction'
import {
  Reply, TargetHop, hopOf,
  type HopPlan, type ModuleContext, type ModuleDeclaration, type ModuleInstance, type RouteAction, type Source, type Target, type NextHop,
} from '@sipedge/proxy'
import type { FrozenConfig } from '@sipedge/config'
import type { Stores } from '@sipedge/store'
import type { AuthModule } from '../auth/index.js'
import { LocationRegistrar, isLookupFailure, type LookupFailure } from './registrar.js'

/** Lookup targets as hops: over the registered flow when there is one, else to the contact. */
export function hopsOf(targets: readonly Target[]): NextHop[] {
  const hops: NextHop[] = []
  for (const t of targets) {
    try {
      const hop = t.flow !== undefined ? { transport: t.flow.transport, host: t.flow.address, port: t.flow.port } : hopOf(parseUri(t.uri))
      hops.push(new TargetHop(t.uri, hop, t.requestUri, t.flow, t.headers, false, t.failStatus ?? 0))
    } catch { /* an unparseable contact is skipped */ }
  }
  return hops
}

const EMPTY = new Reply(480, 'Temporarily Unavailable')
const RETRY_AFTER: ReadonlyArray<readonly [string, string]> = [['Retry-After', '5']]

function planOf(r: Target[] | LookupFailure): HopPlan | Reply {
  // the location store is unreachable (Redis outage): 503 with Retry-After, as for REGISTER (issue 15)
  if (isLookupFailure(r)) return r.status === 503 ? new Reply(503, r.reason, RETRY_AFTER) : new Reply(r.status, r.reason)
  if (r.length === 0) return EMPTY
  return { hops: hopsOf(r), failover: null }
}

export class RegistrarModule implements ModuleInstance {
  readonly registrar: LocationRegistrar
  readonly actions: Readonly<Record<string, RouteAction>>

  constructor(ctx: ModuleContext<Stores>) {
    const auth = ctx.module<AuthModule>('auth')
    const stores = ctx.stores!
    this.registrar = new LocationRegistrar({
      config: ctx.config, stores, workerIndex: ctx.core.workerIndex, log: ctx.core.log, now: () => Date.now(), nodeId: ctx.config.node.id,
      ...(auth !== undefined ? { auth: () => auth.digest } : {}),
    })
    const log = ctx.core.log
    const w = ctx.core.workerIndex
    stores.on('unavailable', err => log.warn('registrar: store unavailable: REGISTER answered 503 until it is back', { code: err.code, worker: w }))
    stores.on('available', () => log.info('registrar: store available again', { worker: w }))
    const reg = this.registrar
    this.actions = {
      register: {
        kind: 'takeover',
        run: (req: SipMessage, tx: ServerTransaction, source: Source) => reg.handleRegister(req, tx, source),
      },
      lookup: {
        kind: 'targets',
        run: (req: SipMessage) => {
          const r = reg.lookup(req)
          return r instanceof Promise ? r.then(planOf) : planOf(r)
        },
      },
    }
  }

  applyConfig(config: FrozenConfig): void {
    this.registrar.applyConfig(config)
  }

  stats(): Record<string, unknown> {
    return { registrar: { ...this.registrar.counters } }
  }

  close(): Promise<void> {
    return this.registrar.close()
  }
}

/** Routes that send requests to the registrar (register) or the location service (lookup). */
export function usesLocation(config: FrozenConfig): boolean {
  return config.routes.some(r => r.action.type === 'register' || r.action.type === 'lookup')
}

export const registrarModule: ModuleDeclaration<RegistrarModule, Stores> = {
  name: 'registrar',
  configSection: 'registrar',
  requires: [],
  uses: ['auth'],
  actions: ['register', 'lookup'],
  metrics: ['sipedge_registrations_aors', 'sipedge_registrations_bindings'],
  enabled: usesLocation,
  store: config => ({ url: config.registrar.store, required: true }),
  create: ctx => new RegistrarModule(ctx),
}
