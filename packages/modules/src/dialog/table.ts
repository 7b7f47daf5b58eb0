// Dialog tracking for sticky sessions (docs/dispatcher.md "Dialog tracking"): INVITE dialogs
// (early -> confirmed -> terminated) and subscription dialogs (SUBSCRIBE, out-of-dialog REFER)
// sent to a dispatcher set, kept in the worker that owns the Call-ID (the primary shards by
// Call-ID, so no locks). The table answers "which destination serves this dialog" for every
// in-dialog request, keeps per-destination counts for `least-dialogs`, and times dialogs out.
//
// Per message the table costs one Map lookup by Call-ID and a few field stores: expiry is lazy
// (a touched dialog is not moved in the timer wheel; when its slot comes up it is re-checked and
// re-filed), and the store mirror is written on state changes only, never awaited.
import { dialogId, type Dialog, type DialogStore } from '@sipedge/store'
import type { SipMessage } from '@sipedge/sip'
import type { DispatchDestination, Dispatcher } from '../dispatcher/index.js'
import type { Destination, ProxyLogger } from '@sipedge/proxy'

export type DialogKind = 'invite' | 'subscribe'
/** The set name of dialogs that were not dispatched (routed by lookup or forward). */
export const UNDISPATCHED = '-'
export type DialogState = 'early' | 'confirmed' | 'terminated'

/** One dialog. Stable shape: every field set in the constructor. */
export class DialogRecord {
  readonly callId: string
  /** The caller's (dialog creator's) From-tag. */
  readonly fromTag: string
  /** The callee's tag ('' until a response with a To-tag). */
  toTag: string
  readonly kind: DialogKind
  readonly setName: string
  destUri: string
  /** The counted destination (null: not in the current configuration). */
  dest: DispatchDestination | null
  state: DialogState
  createdAt: number
  lastActivity: number
  /** lastActivity + timeout; the wheel checks it lazily. */
  expiresAt: number
  /** Our Record-Route token for this dialog (a token equal to it needs no HMAC check). */
  token: string
  /** Rebuilt from a Record-Route token (table lost): no BYE-on-timeout data. */
  recovered: boolean
  /** Written to the store (so it must be removed there at the end). */
  mirrored: boolean
  // What a BYE on timeout needs (INVITE dialogs created here).
  callerContact: string
  callerFrom: string
  callerTo: string
  calleeTo: string
  calleeContact: string
  callerSource: Destination | null
  callerCseq: number
  calleeCseq: number
  /** Next dialog with the same Call-ID (rare: a chain, not a second map). */
  next: DialogRecord | null
  /** Timer wheel slot (-1: not filed). */
  slot: number

  constructor(kind: DialogKind, callId: string, fromTag: string, setName: string, destUri: string, dest: DispatchDestination | null, token: string, now: number, expiresAt: number) {
    this.callId = callId
    this.fromTag = fromTag
    this.toTag = ''
    this.kind = kind
    this.setName = setName
    this.destUri = destUri
    this.dest = dest
    this.state = 'early'
    this.createdAt = now
    this.lastActivity = now
    this.expiresAt = expiresAt
    this.token = token
    this.recovered = false
    this.mirrored = false
    this.callerContact = ''
    this.callerFrom = ''
    this.callerTo = ''
    this.calleeTo = ''
    this.calleeContact = ''
    this.callerSource = null
    this.callerCseq = 0
    this.calleeCseq = 0
    this.next = null
    this.slot = -1
  }

  /** The id in the dialog store: dialogId(Call-ID, caller's tag). */
  get storeId(): string {
    return dialogId(this.callId, this.fromTag)
  }

  toJSON(): DialogInfo {
    return {
      callId: this.callId, fromTag: this.fromTag, toTag: this.toTag, kind: this.kind, set: this.setName,
      destination: this.destUri, state: this.state, createdAt: this.createdAt, lastActivity: this.lastActivity,
      expiresAt: this.expiresAt, recovered: this.recovered,
    }
  }
}

/** `query('dialog')` result (docs/contracts.md "Query results"). */
export interface DialogInfo {
  callId: string
  fromTag: string
  toTag: string
  kind: DialogKind
  set: string
  destination: string
  state: DialogState
  createdAt: number
  lastActivity: number
  expiresAt: number
  recovered: boolean
}

/** `query('dialogs')` result. */
export interface DialogCounts {
  workerIndex: number
  total: number
  byState: { early: number; confirmed: number }
  byKind: { invite: number; subscribe: number }
  sets: Record<string, { total: number; destinations: Record<string, number> }>
  counters: DialogCounters
}

export class DialogCounters {
  created = 0
  confirmed = 0
  failed = 0
  ended = 0
  timedOut = 0
  recovered = 0
  restored = 0
  cleared = 0
  storeErrors = 0
}

export interface DialogTrackerOptions {
  workerIndex: number
  timeoutMs: number
  now(): number
  log: ProxyLogger
  /** A dialog timed out (the proxy may send BYE to both sides); called before it is removed. */
  onTimeout?(rec: DialogRecord): void
  /** Tests: drive expiry with tick() instead of an interval. */
  manualTimers?: boolean
  nodeId?: string
}

/** Wheel resolution: 1/64 of the timeout, between 1 s and 60 s. */
function resolutionFor(timeoutMs: number): number {
  return Math.min(60_000, Math.max(1_000, Math.floor(timeoutMs / 64)))
}

export class DialogTracker {
  readonly counters: DialogCounters
  private readonly table: Map<string, DialogRecord>
  private readonly opts: DialogTrackerOptions
  private timeoutMs: number
  private res: number
  private readonly wheel: Map<number, Set<DialogRecord>>
  private cursor: number
  private timer: NodeJS.Timeout | null
  private store: DialogStore | null
  private closeStore: (() => Promise<void>) | null
  private live: number
  private liveUndispatched: number

  constructor(opts: DialogTrackerOptions) {
    this.opts = opts
    this.counters = new DialogCounters()
    this.table = new Map()
    this.timeoutMs = opts.timeoutMs
    this.res = resolutionFor(opts.timeoutMs)
    this.wheel = new Map()
    this.cursor = Math.floor(opts.now() / this.res)
    this.timer = null
    this.store = null
    this.closeStore = null
    this.live = 0
    this.liveUndispatched = 0
    this.startTimer()
  }

  /** Dialogs in the table (not terminated). */
  get size(): number {
    return this.live
  }

  private startTimer(): void {
    if (this.opts.manualTimers === true) return
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = setInterval(() => this.tick(this.opts.now()), this.res)
    this.timer.unref()
  }

  /** A new `dialog.timeout` (reload): applies to the next activity of each dialog. */
  setTimeout(ms: number): void {
    if (ms === this.timeoutMs) return
    this.timeoutMs = ms
    const res = resolutionFor(ms)
    if (res !== this.res) {
      // Re-file everything on the new grid (reload only).
      const all: DialogRecord[] = []
      for (const b of this.wheel.values()) for (const r of b) all.push(r)
      this.wheel.clear()
      this.res = res
      this.cursor = Math.floor(this.opts.now() / res)
      for (const r of all) { r.slot = -1; this.file(r) }
      this.startTimer()
    }
  }

  /** Mirror to this store from now on (opened asynchronously by the host); `close` on close(). */
  attachStore(store: DialogStore, close?: () => Promise<void>): void {
    this.store = store
    this.closeStore = close ?? null
    // Dialogs confirmed before the store was there are written now.
    for (const head of this.table.values()) for (let r: DialogRecord | null = head; r !== null; r = r.next) if (r.state === 'confirmed') this.mirrorPut(r)
  }

  // ------------------------------------------------------------------------------ lookups

  /** The dialog of an in-dialog request (either direction), or undefined. */
  find(callId: string, fromTag: string | undefined, toTag: string | undefined): DialogRecord | undefined {
    for (let r = this.table.get(callId) ?? null; r !== null; r = r.next) {
      if (r.fromTag === fromTag && (r.toTag === '' || r.toTag === toTag)) return r
      if (r.fromTag === toTag && (r.toTag === '' || r.toTag === fromTag)) return r
    }
    return undefined
  }

  /** Every dialog of a Call-ID (admin query). */
  byCallId(callId: string): DialogRecord[] {
    const out: DialogRecord[] = []
    for (let r = this.table.get(callId) ?? null; r !== null; r = r.next) out.push(r)
    return out
  }

  // ------------------------------------------------------------------------------ lifecycle

  /** A dialog-creating request is sent to `dest` (state early until a response). */
  begin(kind: DialogKind, req: SipMessage, setName: string, dest: DispatchDestination | string, token: string, source: Destination): DialogRecord {
    const now = this.opts.now()
    const callId = req.callId
    const d = typeof dest === 'string' ? null : dest
    const rec = new DialogRecord(kind, callId, req.from.tag ?? '', setName, d === null ? dest as string : d.uri, d, token, now, now + this.timeoutMs)
    if (kind === 'invite') {
      rec.callerFrom = req.header('from') ?? ''
      rec.callerTo = req.header('to') ?? ''
      const c = req.contacts
      rec.callerContact = c.length > 0 && c[0]!.star !== true ? c[0]!.uri : ''
      rec.callerSource = source
      rec.callerCseq = req.cseq.seq
    }
    if (d !== null) d.dialogs++
    this.insert(rec)
    this.counters.created++
    return rec
  }

  /** Failover: the same dialog-creating request goes to another destination. */
  /** Live dialogs that were not dispatched (set "-": routed by lookup or forward). */
  get undispatched(): number {
    return this.liveUndispatched
  }

  retarget(rec: DialogRecord, dest: DispatchDestination, token: string): void {
    if (rec.dest === dest) { rec.token = token; return }
    if (rec.dest !== null && rec.state !== 'terminated') rec.dest.dialogs--
    rec.dest = dest
    rec.destUri = dest.uri
    rec.token = token
    if (rec.state !== 'terminated') dest.dialogs++
  }

  /** A provisional response with a To-tag: the early dialog has both tags. */
  provisional(rec: DialogRecord, resp: SipMessage): void {
    if (rec.state !== 'early') return
    const tag = resp.to.tag
    if (tag !== undefined) rec.toTag = tag
  }

  /** A 2xx for the dialog-creating request. */
  confirm(rec: DialogRecord, resp: SipMessage): void {
    if (rec.state !== 'early') return
    rec.state = 'confirmed'
    rec.toTag = resp.to.tag ?? rec.toTag
    const now = this.opts.now()
    rec.lastActivity = now
    rec.expiresAt = now + this.timeoutMs
    if (rec.kind === 'invite') {
      rec.calleeTo = resp.header('to') ?? ''
      const c = resp.contacts
      rec.calleeContact = c.length > 0 && c[0]!.star !== true ? c[0]!.uri : ''
    }
    this.counters.confirmed++
    this.mirrorPut(rec)
  }

  /** The dialog-creating request got a non-2xx final (after failover): no dialog. */
  fail(rec: DialogRecord): void {
    if (rec.state !== 'early') return
    this.counters.failed++
    this.remove(rec)
  }

  /**
   * An in-dialog request: activity, CSeq per direction, and the end of the dialog (BYE; a
   * NOTIFY with Subscription-State: terminated for a subscription dialog).
   */
  request(rec: DialogRecord, req: SipMessage, fromCaller: boolean): void {
    const now = this.opts.now()
    rec.lastActivity = now
    rec.expiresAt = now + this.timeoutMs
    const method = req.method
    if (method !== 'ACK') {
      const seq = req.cseq.seq
      if (fromCaller) { if (seq > rec.callerCseq) rec.callerCseq = seq } else if (seq > rec.calleeCseq) rec.calleeCseq = seq
    }
    if (method === 'BYE') {
      if (rec.kind === 'invite') this.end(rec)
    } else if (method === 'NOTIFY' && rec.kind === 'subscribe') {
      const ss = req.header('subscription-state')
      if (ss !== undefined && ss.trimStart().toLowerCase().startsWith('terminated')) this.end(rec)
    } else if (rec.state === 'early' && method === 'ACK') {
      // ACK of a 2xx whose confirmation we did not see (recovered dialog): it is confirmed.
      rec.state = 'confirmed'
    }
  }

  /**
   * A dialog known only from a verified Record-Route token (table lost, another node, restarted
   * worker). Inserted as confirmed when `insert` (not for BYE/ACK-only traffic); the store copy,
   * if any, fills in the creation time asynchronously.
   */
  recover(callId: string, ftag: string, otherTag: string, setName: string, uri: string, dest: DispatchDestination | null, token: string, insert: boolean): DialogRecord {
    const now = this.opts.now()
    const rec = new DialogRecord('invite', callId, ftag, setName, uri, dest, token, now, now + this.timeoutMs)
    rec.state = 'confirmed'
    rec.toTag = otherTag
    rec.recovered = true
    // Not inserted (BYE/ACK of a dialog we no longer hold): a routing answer only, never counted.
    if (!insert) { rec.state = 'terminated'; return rec }
    if (dest !== null) dest.dialogs++
    this.insert(rec)
    this.counters.recovered++
    const store = this.store
    if (store !== null) {
      rec.mirrored = true
      store.get(rec.storeId).then(d => {
        if (d === null || rec.state === 'terminated') return
        rec.createdAt = d.createdAt
        this.counters.restored++
      }, () => { this.counters.storeErrors++ })
    }
    return rec
  }

  /** Normal end (BYE, subscription terminated). */
  end(rec: DialogRecord): void {
    if (rec.state === 'terminated') return
    this.counters.ended++
    this.remove(rec)
  }

  /** Forget every dialog of this worker (test hook: a forced loss of the table). Store untouched. */
  clear(): number {
    let n = 0
    for (const head of this.table.values()) {
      for (let r: DialogRecord | null = head; r !== null; r = r.next) {
        if (r.dest !== null) r.dest.dialogs--
        r.state = 'terminated'
        r.slot = -1
        n++
      }
    }
    this.table.clear()
    this.wheel.clear()
    this.live = 0
    this.liveUndispatched = 0
    this.counters.cleared += n
    return n
  }

  /**
   * A new dispatcher (reload): point every dialog at the destination object of the new
   * configuration (same set and URI) and recount. A destination that left the configuration keeps
   * its dialogs (they are routed by URI) but is no longer counted.
   */
  relink(dispatcher: Dispatcher): void {
    for (const head of this.table.values()) {
      for (let r: DialogRecord | null = head; r !== null; r = r.next) {
        const d = dispatcher.find(r.setName, r.destUri) ?? null
        r.dest = d
        if (d !== null) d.dialogs++
      }
    }
  }

  // ------------------------------------------------------------------------------ timeouts

  /** Expires due dialogs: slots up to now; touched ones are re-filed at their new expiry. */
  tick(now: number): void {
    const end = Math.floor(now / this.res)
    if (end - this.cursor > 100_000) {
      // Asleep for a long time (or a clock jump): walk the filled slots instead of every slot.
      for (const k of [...this.wheel.keys()].sort((a, b) => a - b)) { if (k > end) break; this.runSlot(k, now) }
      this.cursor = end + 1
      return
    }
    while (this.cursor <= end) this.runSlot(this.cursor++, now)
  }

  private runSlot(k: number, now: number): void {
    const b = this.wheel.get(k)
    if (b === undefined) return
    this.wheel.delete(k)
    for (const r of b) {
      r.slot = -1
      if (r.state === 'terminated') continue
      if (r.expiresAt <= now) {
        this.counters.timedOut++
        try { this.opts.onTimeout?.(r) } catch (err) { this.opts.log.warn('dialog timeout handler failed', { err: String(err) }) }
        this.remove(r)
      } else {
        this.file(r)
        // The store copy's expiry follows (at most once per timeout per dialog, never per message).
        if (r.mirrored && this.store !== null) {
          this.store.touch(r.storeId, r.expiresAt + 2 * this.res, r.lastActivity).catch(() => { this.counters.storeErrors++ })
        }
      }
    }
  }

  private file(r: DialogRecord): void {
    let k = Math.floor(r.expiresAt / this.res) + 1
    if (k < this.cursor) k = this.cursor
    let b = this.wheel.get(k)
    if (b === undefined) { b = new Set(); this.wheel.set(k, b) }
    b.add(r)
    r.slot = k
  }

  private unfile(r: DialogRecord): void {
    if (r.slot < 0) return
    const b = this.wheel.get(r.slot)
    if (b !== undefined) { b.delete(r); if (b.size === 0) this.wheel.delete(r.slot) }
    r.slot = -1
  }

  // ------------------------------------------------------------------------------ table

  private insert(rec: DialogRecord): void {
    const head = this.table.get(rec.callId)
    if (head !== undefined) rec.next = head
    this.table.set(rec.callId, rec)
    this.file(rec)
    this.live++
    if (rec.setName === UNDISPATCHED) this.liveUndispatched++
  }

  private remove(rec: DialogRecord): void {
    if (rec.state === 'terminated' && rec.slot < 0) return
    const wasLive = rec.state !== 'terminated'
    if (wasLive && rec.setName === UNDISPATCHED) this.liveUndispatched--
    rec.state = 'terminated'
    if (wasLive && rec.dest !== null) rec.dest.dialogs--
    this.unfile(rec)
    const head = this.table.get(rec.callId)
    if (head === rec) {
      if (rec.next === null) this.table.delete(rec.callId)
      else this.table.set(rec.callId, rec.next)
      if (wasLive) this.live--
    } else if (head !== undefined) {
      for (let p = head; p.next !== null; p = p.next) {
        if (p.next === rec) { p.next = rec.next; if (wasLive) this.live--; break }
      }
    }
    rec.next = null
    if (rec.mirrored && this.store !== null) {
      rec.mirrored = false
      this.store.remove(rec.storeId).catch(() => { this.counters.storeErrors++ })
    }
  }

  private mirrorPut(rec: DialogRecord): void {
    const store = this.store
    if (store === null) return
    rec.mirrored = true
    const d: Dialog = {
      id: rec.storeId, setName: rec.setName, destination: rec.destUri, state: rec.state,
      createdAt: rec.createdAt, lastActivity: rec.lastActivity, expiresAt: rec.expiresAt + 2 * this.res,
      ...(this.opts.nodeId !== undefined ? { nodeId: this.opts.nodeId } : {}),
    }
    store.put(d).catch(() => { this.counters.storeErrors++ })
  }

  // ------------------------------------------------------------------------------ queries

  counts(): DialogCounts {
    const out: DialogCounts = {
      workerIndex: this.opts.workerIndex, total: 0, byState: { early: 0, confirmed: 0 }, byKind: { invite: 0, subscribe: 0 },
      sets: {}, counters: { ...this.counters },
    }
    for (const head of this.table.values()) {
      for (let r: DialogRecord | null = head; r !== null; r = r.next) {
        if (r.state === 'terminated') continue
        out.total++
        out.byState[r.state]++
        out.byKind[r.kind]++
        const s = out.sets[r.setName] ?? (out.sets[r.setName] = { total: 0, destinations: {} })
        s.total++
        s.destinations[r.destUri] = (s.destinations[r.destUri] ?? 0) + 1
      }
    }
    return out
  }

  async close(): Promise<void> {
    if (this.timer !== null) { clearInterval(this.timer); this.timer = null }
    const c = this.closeStore
    this.closeStore = null
    this.store = null
    if (c !== null) await c().catch(() => undefined)
  }
}
