// Helpers for the dispatcher end-to-end tests (packages/tests/test/dispatch-*.test.ts): sipp
// backends that log every INVITE and BYE with its Call-ID, and a bounded sipp UAC.
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { startSipp, scenario, type Sipp, type SippResult } from './sipp.js'
import { until } from './index.js'

export interface Backend {
  readonly ip: string
  readonly port: number
  readonly uri: string
  sipp: Sipp
  /** Call-IDs of the INVITEs and BYEs this backend received (read from its log file). */
  seen(): { invites: string[]; byes: string[] }
  stop(): Promise<void>
  /** Starts it again (same address), e.g. after a simulated outage; then await ready(). */
  restart(): void
  /** Resolves once its sipp is bound to ip:port (bounded; fails if sipp exits first). */
  ready(): Promise<void>
}

function spawnBackend(ip: string, port: number, contactHost: string, timeoutS: number): Sipp {
  return startSipp({
    scenario: scenario('dispatch/uas.xml'), localIp: ip, localPort: port, transport: 'u1',
    calls: 100_000, timeoutS, extra: ['-key', 'contact_host', contactHost, '-trace_logs', '-log_file', 'backend.log'],
  })
}

/**
 * A sipp UAS on ip:port answering OPTIONS 200 and calls. Its Contact names `contactHost`
 * (default 127.0.0.9, where nothing listens): in-dialog requests reach it only through the
 * proxy's stickiness.
 */
export function startBackend(ip: string, port: number, o: { contactHost?: string; timeoutS?: number } = {}): Backend {
  const contact = o.contactHost ?? '127.0.0.9'
  const timeoutS = o.timeoutS ?? 90
  const old: Sipp[] = []
  const b: Backend = {
    ip, port, uri: `sip:${ip}:${port}`,
    sipp: spawnBackend(ip, port, contact, timeoutS),
    seen() {
      const invites: string[] = []
      const byes: string[] = []
      for (const s of [...old, b.sipp]) {
        let files: string[] = []
        try { files = readdirSync(s.dir).filter(f => f.includes('backend')) } catch { /* gone */ }
        for (const f of files) {
          for (const line of readFileSync(join(s.dir, f), 'utf8').split('\n')) {
            const m = /(INVITE|BYE) (\S+)/.exec(line)
            if (m) (m[1] === 'INVITE' ? invites : byes).push(m[2]!)
          }
        }
      }
      return { invites, byes }
    },
    async stop() { await b.sipp.stop() },
    restart() { old.push(b.sipp); b.sipp = spawnBackend(ip, port, contact, timeoutS) },
    ready() { return b.sipp.ready() },
  }
  return b
}

/** Starts a backend per address on `port` and waits until every one of them is bound. */
export async function startBackends(ips: readonly string[], port: number, o: { contactHost?: string; timeoutS?: number } = {}): Promise<Backend[]> {
  const bs = ips.map(ip => startBackend(ip, port, o))
  try {
    await Promise.all(bs.map(b => b.ready()))
  } catch (err) {
    await stopBackends(bs)
    throw err
  }
  return bs
}

/**
 * Polls the backends' logs until `cond` holds on what they have seen (bounded); returns whether
 * it did. Each backend logs an INVITE or BYE when it receives it, so after the UAC ended every
 * line is there or about to be: this waits for the files, not for a guessed time.
 */
export function untilSeen(bs: readonly Backend[], cond: (seen: Array<{ invites: string[]; byes: string[] }>) => boolean, ms = 15_000): Promise<boolean> {
  return until(() => cond(bs.map(b => b.seen())), ms, 50)
}

export async function stopBackends(bs: readonly Backend[]): Promise<void> {
  for (const b of bs) {
    await b.sipp.stop()
    b.sipp.cleanup()
  }
}

export interface UacOptions {
  proxy: string
  port: number
  calls: number
  rate?: number
  limit?: number
  service?: string
  domain?: string
  /** ms between ACK and BYE (sipp -d). */
  holdMs?: number
  /** Value of the X-Test header. */
  hdr?: string
  timeoutS?: number
  /**
   * sipp -cid_str, the Call-ID format (%u call number, %s local IP). sipp's default has its
   * pid in it: hash-based shares then differ from run to run; a fixed format makes them repeat.
   */
  cidStr?: string
}

function uacArgs(o: UacOptions): string[] {
  return ['-d', String(o.holdMs ?? 50), '-key', 'hdr', o.hdr ?? 'none', ...(o.cidStr !== undefined ? ['-cid_str', o.cidStr] : [])]
}

/** A bounded sipp UAC (dispatch/uac.xml); resolves when it ends, stopped in any case. */
export async function runUac(o: UacOptions): Promise<SippResult> {
  const s = startSipp({
    scenario: scenario('dispatch/uac.xml'), remote: o.proxy, localIp: '127.0.0.1', localPort: o.port, transport: 'u1',
    calls: o.calls, rate: o.rate ?? 50, ...(o.limit !== undefined ? { limit: o.limit } : {}), timeoutS: o.timeoutS ?? 30,
    service: o.service ?? 'alice', domain: o.domain ?? o.proxy,
    extra: uacArgs(o),
  })
  try { return await s.done } finally { await s.stop(); s.cleanup() }
}

/** Starts a UAC without waiting (for tests that act while calls are up). */
export function startUac(o: UacOptions): Sipp {
  return startSipp({
    scenario: scenario('dispatch/uac.xml'), remote: o.proxy, localIp: '127.0.0.1', localPort: o.port, transport: 'u1',
    calls: o.calls, rate: o.rate ?? 50, ...(o.limit !== undefined ? { limit: o.limit } : {}), timeoutS: o.timeoutS ?? 30,
    service: o.service ?? 'alice', domain: o.domain ?? o.proxy,
    extra: uacArgs(o),
  })
}

export const sleep = (ms: number): Promise<void> => new Promise(r => setTimeout(r, ms))

/** Counts of `items` per value. */
export function tally(items: readonly string[]): Map<string, number> {
  const m = new Map<string, number>()
  for (const i of items) m.set(i, (m.get(i) ?? 0) + 1)
  return m
}
