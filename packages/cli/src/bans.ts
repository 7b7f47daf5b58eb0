// The primary's ban table (@sipedge/transport Pike) and the BanStore of `registrar.store`:
//  - a ban pike decides (flood) is written to the store, so the other nodes of an HA pair (Redis)
//    and a restarted node load it; a worker's auth ban is written there by the worker itself;
//  - bans in the store are loaded at start, and on Redis polled every `pollMs` so a ban made on
//    one node applies on the others (expiry carried: `until` is an absolute time), and a ban
//    lifted on one node (DELETE /api/bans/ADDRESS) is lifted on the others;
//  - every ban and its end is logged once.
// docs/security.md "Flood detection (pike)", docs/operations.md "A source got banned".
import type { Engine, BanRecord } from '@sipedge/transport'
import type { Stores } from '@sipedge/store'
import type { Logger } from '@sipedge/log'

export interface BanSyncOptions {
  engine: Engine
  stores: () => Promise<Stores | null>
  log: Logger
  /** Poll the store for other nodes' bans (Redis); 0: load once at start only. */
  pollMs: number
}

export class BanSync {
  readonly #o: BanSyncOptions
  #timer: NodeJS.Timeout | null = null
  #polling = false
  #readFailing = false
  /** Store errors (writes, reads) since start. */
  errors = 0

  constructor(o: BanSyncOptions) {
    this.#o = o
    const { engine, log } = o
    engine.pike.on({
      banned: b => {
        log.warn({ address: b.address, reason: b.reason, domain: b.domain, origin: b.origin, until: new Date(b.until).toISOString(), requests: b.requests || undefined }, 'source banned')
        if (b.origin === 'pike' || b.origin === 'admin') void this.#write(b)
      },
      ended: (b, how) => {
        log.info({ address: b.address, reason: b.reason, how, dropped: b.dropped }, how === 'expired' ? 'ban expired' : 'ban lifted')
      },
    })
  }

  /** Loads the store's bans now and, on Redis, every pollMs after. */
  start(): void {
    void this.poll()
    if (this.#o.pollMs > 0 && this.#timer === null) {
      this.#timer = setInterval(() => { void this.poll() }, this.#o.pollMs)
      this.#timer.unref()
    }
  }

  stop(): void {
    if (this.#timer !== null) { clearInterval(this.#timer); this.#timer = null }
  }

  /** Lifts a ban here, in the store (so on every node) and in the workers' auth modules. */
  async lift(address: string): Promise<boolean> {
    const { engine } = this.#o
    const here = engine.pike.unban(address)
    engine.control({ type: 'unban', address })
    let stored = false
    try {
      const s = await this.#o.stores()
      if (s !== null) stored = await s.bans.remove(address)
    } catch (err) {
      this.errors++
      this.#o.log.warn({ address, code: (err as { code?: string } | null)?.code }, 'ban not removed from the store')
    }
    return here || stored
  }

  /** One merge of the store's bans into the table (start() runs it, then every pollMs on Redis). */
  async poll(): Promise<void> {
    if (this.#polling) return
    this.#polling = true
    const startedAt = Date.now()
    try {
      const s = await this.#o.stores()
      if (s === null) return
      const list = await s.bans.list(100_000)
      const pike = this.#o.engine.pike
      const seen = new Set<string>()
      for (const b of list) {
        // keys are addresses; a key `address|domain` (older per-domain bans) bans the address
        const bar = b.key.indexOf('|')
        const address = bar < 0 ? b.key : b.key.slice(0, bar)
        seen.add(address)
        pike.ban(address, b.reason, b.until, { origin: 'store', shared: true })
      }
      // A shared ban gone from the store was lifted on another node (or the store's copy expired).
      for (const b of pike.list()) if (b.shared && !seen.has(b.address) && b.since < startedAt) pike.unban(b.address)
      if (this.#readFailing) { this.#readFailing = false; this.#o.log.info({}, 'bans read from the store again') }
    } catch (err) {
      this.errors++
      // once per outage, not every poll
      if (!this.#readFailing) this.#o.log.warn({ code: (err as { code?: string } | null)?.code, err }, 'bans not read from the store (retrying)')
      this.#readFailing = true
    } finally {
      this.#polling = false
    }
  }

  async #write(b: BanRecord): Promise<void> {
    try {
      const s = await this.#o.stores()
      if (s === null) return
      await s.bans.ban(b.address, b.until, b.reason)
      b.shared = true
    } catch (err) {
      this.errors++
      this.#o.log.warn({ address: b.address, code: (err as { code?: string } | null)?.code }, 'ban not written to the store')
    }
  }
}
