// Node drain (issue 15, docs/ha.md "Drain"): POST /api/node/drain or SIGUSR2. The workers are told
// once (`node-drain` control message: new dialogs and REGISTERs get 503 + Retry-After, /ready says
// "draining" so keepalived moves the VIP away); the primary then watches the dialogs the workers
// still track and the requests they still route, and ends the process (exit 0, through the same
// path as SIGTERM) when both are zero or at node.drain_timeout, whichever comes first.
import type { FrozenConfig } from '@sipedge/config'
import type { Engine } from '@sipedge/transport'
import type { Logger } from '@sipedge/log'
import type { NodeStatus } from '@sipedge/metrics'

/** How often the counts are read while draining (two small queries per worker). */
const POLL_MS = 250

export interface NodeDrainDeps {
  engine: Engine
  config(): FrozenConfig
  log: Logger
  /** Control messages a replacement worker applies at start: the drain message is added. */
  startControls?: Array<{ type: string }>
  /** Called once, when the drain is over: the caller stops the engine and exits 0. */
  done(reason: 'empty' | 'deadline'): void
  now?(): number
}

function list(r: unknown): unknown[] {
  return Array.isArray(r) ? r : [r]
}

export class NodeDrain {
  state: 'serving' | 'draining' = 'serving'
  startedAt: number | null = null
  deadline: number | null = null
  private timer: NodeJS.Timeout | null = null
  private finished = false
  private readonly d: NodeDrainDeps
  private readonly now: () => number

  constructor(d: NodeDrainDeps) {
    this.d = d
    this.now = d.now ?? Date.now
  }

  /** Dialogs tracked and requests still routed, summed over the workers. */
  async counts(): Promise<{ dialogs: number; transactions: number }> {
    const e = this.d.engine
    const [dl, st] = await Promise.all([
      e.query('all', 'dialogs').then(list, () => [] as unknown[]),
      e.query('all', 'stats').then(list, () => [] as unknown[]),
    ])
    let dialogs = 0
    let transactions = 0
    for (const w of dl) dialogs += Number((w as { total?: unknown } | null)?.total ?? 0) || 0
    for (const w of st) transactions += Number((w as { pending?: unknown } | null)?.pending ?? 0) || 0
    return { dialogs, transactions }
  }

  async status(): Promise<NodeStatus> {
    const [c, cl] = await Promise.all([
      this.counts(),
      // the cluster module (Redis store only): the nodes this one sees alive
      this.d.engine.query(0, 'cluster').catch(() => undefined) as Promise<{ live?: string[] } | undefined>,
    ])
    return {
      ...(cl?.live !== undefined ? { live: cl.live } : {}),
      id: this.d.config().node.id,
      state: this.state,
      dialogs: c.dialogs,
      transactions: c.transactions,
      drainStartedAt: this.startedAt === null ? null : new Date(this.startedAt).toISOString(),
      deadline: this.deadline === null ? null : new Date(this.deadline).toISOString(),
    }
  }

  /** Starts the drain; a second call changes nothing (the first deadline stays). */
  start(source: string): void {
    if (this.state === 'draining') return
    this.state = 'draining'
    this.startedAt = this.now()
    this.deadline = this.startedAt + this.d.config().node.drain_timeout
    this.d.engine.control({ type: 'node-drain' })
    // a worker that dies during the drain is replaced by one that drains too
    this.d.startControls?.push({ type: 'node-drain' })
    this.d.log.info({ source, deadline: new Date(this.deadline).toISOString() }, 'drain started: new dialogs and registrations get 503')
    const tick = (): void => {
      this.timer = null
      if (this.finished) return
      this.counts().then(c => {
        if (this.finished) return
        if (c.dialogs === 0 && c.transactions === 0) return this.finish('empty', c)
        if (this.now() >= this.deadline!) return this.finish('deadline', c)
        this.timer = setTimeout(tick, POLL_MS)
      }, () => { this.timer = setTimeout(tick, POLL_MS) })
    }
    this.timer = setTimeout(tick, POLL_MS)
  }

  private finish(reason: 'empty' | 'deadline', left: { dialogs: number; transactions: number }): void {
    this.finished = true
    this.d.log.info({ reason, ...left, seconds: Math.round((this.now() - this.startedAt!) / 1000) }, 'drain finished')
    this.d.done(reason)
  }

  close(): void {
    this.finished = true
    if (this.timer !== null) clearTimeout(this.timer)
  }
}
