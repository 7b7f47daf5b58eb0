#!/usr/bin/env node
// The `sipedge` command: runs the proxy in the foreground, or checks a configuration file.
import { readFileSync } from 'node:fs'
import { resolve as resolvePath } from 'node:path'
import { MessageChannel, type MessagePort } from 'node:worker_threads'
import { checkConfigFile, loadConfigFile, ConfigError, formatIssue, type FrozenConfig, type LoadOptions } from '@sipedge/config'
import { Engine } from '@sipedge/transport'
import { createLogging, Tracer, type Logging, type LoggingOptions } from '@sipedge/log'
import { inProcessHost, createCompactionGate, IdleCollector, logCollection } from '@sipedge/workers'
import {
  MetricsAggregator, DestinationSlots, createMetricsRegistry, THREAD_SAMPLE, startHttpServer, isLoopback,
  type HttpServer, type ReloadResult, type DispatcherInfo, type SipedgeMetrics,
} from '@sipedge/metrics'
import type { Stores } from '@sipedge/store'
import { engineOptionsFromConfig, keepaliveFromConfig, pikeFromConfig } from './options.js'
import { BanSync } from './bans.js'
import { engineLogger } from './log-adapter.js'
import { createAdminBackend, destinationStatuses, TraceState } from './admin.js'
import { resolveAdminToken } from './admin-token.js'
import { adminCommand } from './admin-client.js'
import { NodeDrain } from './node-drain.js'
import { applyV8Defaults } from './v8-tuning.js'
import { lowerHelperThreads } from './thread-priority.js'

const USAGE = `Usage:
  sipedge --config FILE          run the proxy in the foreground (SIGTERM drains and exits 0,
                                 SIGHUP reopens logs and reloads the configuration)
  sipedge check-config FILE      validate FILE; print every problem as file:line:col and exit 1
  sipedge admin -c FILE METHOD PATH [JSON]
                                 call the admin API of the proxy that runs with FILE, with its
                                 token (admin.token or admin.token_file); prints the answer,
                                 exits 1 on an HTTP error. e.g. admin -c FILE GET /api/stats
  sipedge --help | --version

Options:
  -c, --config FILE   configuration file (YAML; keys in docs/configuration.md)
  -h, --help          this text
  -V, --version       print the version
`

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
  return pkg.version
}

function printConfigError(err: unknown): void {
  if (err instanceof ConfigError) {
    process.stderr.write(err.message + '\n')
    // The message lists the issues; make sure each one is there even if it is formatted differently.
    for (const i of err.issues) {
      const line = formatIssue(err.file, i)
      if (!err.message.includes(line)) process.stderr.write('  ' + line + '\n')
    }
  } else {
    process.stderr.write(`${(err as Error)?.message ?? String(err)}\n`)
  }
}

/**
 * What check-config and a reload check beyond the file itself: every file it names, and users
 * files read exactly as the auth code will read them (issue #16: check-config said OK for a
 * users_file that did not exist, and the start failed). The auth code is imported only when a
 * domain has a users file: the proxy core costs the primary start-up time it otherwise never needs.
 */
async function resourceChecks(file: string): Promise<LoadOptions> {
  let needsUsers = false
  try {
    const c = loadConfigFile(file)
    needsUsers = Object.values(c.auth.domains).some(d => d.users_file !== 'store' && d.users_file !== 'store:')
  } catch { /* reported by the full check */ }
  if (!needsUsers) return { resources: true }
  const { loadUsersFile } = await import('@sipedge/modules')
  return { resources: { usersFile: (path, realm) => { loadUsersFile(path, realm) } } }
}

export async function checkConfig(file: string): Promise<number> {
  const r = checkConfigFile(file, await resourceChecks(file))
  if (r.ok) {
    process.stdout.write(`${file}: OK\n`)
    return 0
  }
  printConfigError(r.error)
  return 1
}

function loggingOptions(c: FrozenConfig): LoggingOptions {
  const r = c.logging.rotate
  return {
    level: c.logging.level,
    modules: c.logging.modules,
    file: c.logging.file,
    rotate: { size: r.size > 0 ? r.size : false, interval: r.interval > 0 ? r.interval : false, keep: r.keep },
  }
}

/** How often a node reads the bans other nodes made (Redis store). */
const BAN_POLL_MS = 2_000

const sameAddr = (a: { address: string; port: number } | null, b: { address: string; port: number } | null): boolean =>
  a !== null && b !== null && a.address === b.address && a.port === b.port

/** Keys whose change needs a restart (logged in restartNeededFor). */
function restartKeys(prev: FrozenConfig, next: FrozenConfig): string[] {
  const out: string[] = []
  const diff = (k: keyof FrozenConfig): void => { if (JSON.stringify(next[k]) !== JSON.stringify(prev[k])) out.push(k) }
  diff('listen')
  if (next.workers !== prev.workers) out.push('workers')
  if (next.helper_thread_nice !== prev.helper_thread_nice) out.push('helper_thread_nice')
  diff('limits')
  diff('metrics')
  if (JSON.stringify(next.admin) !== JSON.stringify(prev.admin)) out.push('admin')
  // The workers open their stores once, at start (the registrar's location store, the dialog
  // mirror); a changed URL is not reopened by a reload.
  if (next.registrar.store !== prev.registrar.store) out.push('registrar.store')
  if (next.dialog.store !== prev.dialog.store) out.push('dialog.store')
  return out
}

export async function run(file: string, o: { v8Flags?: readonly string[] } = {}): Promise<void> {
  let config: FrozenConfig
  try {
    // Files the configuration names are checked before anything starts (users files for
    // existence here; their contents are read by the workers, which report errors by line).
    config = loadConfigFile(file, { resources: true })
  } catch (err) {
    printConfigError(err)
    process.exitCode = 1
    return
  }
  const startedAt = Date.now()
  let generation = 1
  // One log thread for the process (pino transport); workers post their lines to it.
  const logging: Logging = createLogging(loggingOptions(config))
  const log = logging.logger('sipedge')
  // Before the engine creates the workers (they inherit this thread's priority): every thread
  // that exists now handles no SIP message (V8's platform threads, libuv's pool, the log thread).
  const helperNice = lowerHelperThreads(config.helper_thread_nice)
  const exit = async (code: number): Promise<never> => {
    // the last lines (stopped, exit) must reach the file before the process ends
    await logging.close().catch(() => {})
    process.exit(code)
  }

  // ------------------------------------------------------------ metrics blocks and workers
  let agg: MetricsAggregator | null = null
  const trace = new TraceState()
  /** Control messages a replacement worker applies at start (a node drain in progress). */
  const workerControls: Array<{ type: string }> = []
  const logPorts = new Map<number, MessagePort>()
  /** Every thread's idle collector shares it: V8's compaction flag is per process (idle-collect.ts). */
  const gcGate = createCompactionGate()
  const opts = engineOptionsFromConfig(config, engineLogger(logging, 'engine'))
  opts.workerData = (index: number) => {
    const ch = new MessageChannel()
    logging.attachPort(ch.port1)
    ch.port1.unref()
    logPorts.set(index, ch.port1)
    return { ...(agg !== null ? agg.workerData(index) : {}), logPort: ch.port2, traceFilters: trace.filters, controls: workerControls, compaction: gcGate }
  }
  opts.onWorkerExit = (index: number) => {
    // no thread writes the block any more: fold its counters into the retired totals
    agg?.retireWorker(index)
    // lines the thread posted just before it ended are still in flight on its port: close later
    const p = logPorts.get(index)
    logPorts.delete(index)
    if (p !== undefined) setTimeout(() => p.close(), 1_000).unref()
  }
  // workers: 0 — the handler runs on this thread, counted into this thread's block and traced
  // like in a worker
  opts.inProcessHandler = inProcessHost({
    handlerUrl: opts.handlerUrl,
    metrics: () => agg?.main() ?? null,
    tracer: new Tracer(logging.logger('trace')),
    traceFilters: trace.filters,
    compaction: gcGate,
  })
  // With worker threads the primary handles no SIP, but a burst grows its heap too (the buffers
  // and strings of the I/O): it gets an idle collector of its own, fed one count per message.
  let primaryIdle: IdleCollector | null = null
  opts.onMessage = () => { if (primaryIdle !== null) primaryIdle.note() }
  const engine = new Engine(opts)
  if (engine.workerCount > 0) primaryIdle = new IdleCollector({ onCollect: logCollection(engineLogger(logging, 'primary')), compaction: gcGate })
  agg = MetricsAggregator.create({ workers: engine.workerCount })
  agg.setDestinations(new DestinationSlots(config.dispatcher.sets))
  // no timer: the primary's thread gauges are sampled on each scrape (sampleThreads below), like the workers'
  agg.main().startSampler(0)

  // ------------------------------------------------------------ stores (opened on first use)
  let storesP: Promise<Stores | null> | null = null
  const stores = (): Promise<Stores | null> => {
    if (storesP === null) {
      const url = config.registrar.store
      // imported on first use: lmdb/redis clients cost start-up time a node without admin traffic never needs
      storesP = import('@sipedge/store').then(m => m.openStores(url, { sweepIntervalMs: 0 })).catch((err: unknown) => {
        storesP = null // retry on the next use
        throw err
      })
    }
    return storesP
  }

  // ------------------------------------------------------------ metrics registry
  const dispatcherState = async (): Promise<DispatcherInfo> => (await engine.query(0, 'dispatcher')) as DispatcherInfo
  const registry: SipedgeMetrics = createMetricsRegistry({
    aggregator: agg,
    version: version(),
    sources: {
      engineCounters: () => ({ ...engine.counters, pikeDropped: engine.pike.dropped, pikeFloodBans: engine.pike.floodBans }) as unknown as Record<string, number>,
      rings: () => engine.ringStats(),
      connections: () => engine.connectionsByTransport(),
      workersAlive: () => engine.workersAlive,
      sampleThreads: async () => {
        // Every thread samples its gauges now, for this scrape; nothing samples between scrapes.
        const at = performance.timeOrigin + performance.now()
        const asked: Array<Promise<unknown>> = []
        // (in-process, query 0 is the handler on this thread: its gauges into the primary's block)
        for (let i = 0; i < Math.max(1, engine.workerCount); i++) asked.push(engine.query(i, THREAD_SAMPLE, { at }))
        await new Promise<void>(resolve => setImmediate(resolve)) // the primary's delay: one turn of its loop
        agg!.main().requestSample(at)
        // a worker that does not answer within 500 ms keeps its last sample (its lag shows it next time)
        let timer: NodeJS.Timeout | undefined
        await Promise.race([Promise.allSettled(asked), new Promise<void>(resolve => { timer = setTimeout(resolve, 500) })])
        clearTimeout(timer)
      },
      natKeepalives: () => engine.keepaliveStats(),
      registrations: async () => {
        const s = await stores()
        if (s === null) throw Object.assign(new Error('no store in the primary'), { code: 'ERR_ADMIN_NOT_AVAILABLE' })
        return s.location.count()
      },
      dispatcher: async () => destinationStatuses(await dispatcherState()),
      // the primary's table holds every ban in force: pike's, the workers' (auth), the store's
      bansActive: () => engine.pike.stats().active,
    },
  })
  registry.setConfigGeneration(generation)
  // Bans shared through the store of registrar.store: loaded at start; polled on Redis (other nodes).
  const banSync = new BanSync({ engine, stores, log: logging.logger('pike'), pollMs: /^rediss?:/.test(config.registrar.store) ? BAN_POLL_MS : 0 })

  // ------------------------------------------------------------ reload (SIGHUP and POST /api/reload)
  const reload = async (source: string): Promise<ReloadResult> => {
    // the same checks as check-config: a reload that the workers would fail on is refused here
    const r = checkConfigFile(file, await resourceChecks(file))
    if (!r.ok) {
      const issues = r.error.issues.map(i => formatIssue(r.error.file, i))
      log.error({ file, source, generation, code: r.error.code, issues }, 'configuration reload rejected; keeping the running configuration')
      registry.configReloaded(false)
      return {
        ok: false, generation,
        errors: r.error.issues.length > 0
          ? r.error.issues.map(i => ({ code: i.code, message: formatIssue(r.error.file, i), path: i.path }))
          : [{ code: r.error.code, message: r.error.message }],
      }
    }
    const next = r.config as FrozenConfig
    const restartNeeded = restartKeys(config, next)
    config = next
    generation++
    engine.updateConfig(next, generation)
    engine.setKeepalive(keepaliveFromConfig(next))
    engine.setPike(pikeFromConfig(next))
    logging.configure(next.logging.level, next.logging.modules)
    agg!.setDestinations(new DestinationSlots(next.dispatcher.sets))
    const tlsOk = engine.reloadTls()
    registry.setConfigGeneration(generation)
    registry.configReloaded(true)
    log.info({ file, source, generation, tlsReloaded: tlsOk, ...(restartNeeded.length > 0 ? { restartNeededFor: restartNeeded } : {}) }, 'configuration reloaded')
    return { ok: true, generation, ...(restartNeeded.length > 0 ? { restartNeededFor: restartNeeded } : {}) }
  }
  const reopenLogs = async (source: string): Promise<void> => {
    await logging.reopen()
    log.info({ source, file: config.logging.file }, 'log file reopened')
  }

  // ------------------------------------------------------------ signals
  let stopping = false
  const servers: HttpServer[] = []
  const stop = (signal: string): void => {
    // A repeated signal is ignored: pnpm and other runners forward the signal that the process
    // group already got (systemd, Ctrl-C), and the drain is bounded anyway.
    if (stopping) return
    stopping = true
    drain.close()
    registry.setReady(false)
    log.info({ signal }, 'shutting down')
    banSync.stop()
    primaryIdle?.close()
    engine.stop().then(
      () => {
        for (const s of servers) s.close()
        log.info({ code: 0 }, 'exit')
        return exit(0)
      },
      err => { log.error({ err }, 'shutdown failed'); return exit(1) },
    )
  }
  // Node drain (docs/ha.md): SIGUSR2 or POST /api/node/drain; ends through stop() with exit 0.
  const drain = new NodeDrain({ engine, config: () => config, log, done: reason => stop(`drain (${reason})`), startControls: workerControls })
  process.on('SIGUSR2', () => drain.start('SIGUSR2'))
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
  // SIGHUP: reopen the log file first (logrotate moved it), then reload; one at a time.
  let hup: Promise<void> = Promise.resolve()
  process.on('SIGHUP', () => {
    hup = hup.then(async () => {
      try { await reopenLogs('SIGHUP') } catch (err) { log.error({ err }, 'log file reopen failed') }
      await reload('SIGHUP')
    })
  })

  // ------------------------------------------------------------ start
  let adminTokenFile: string | null = null
  try {
    // the log thread boots while the workers do; lines logged meanwhile wait in its stream
    await Promise.all([logging.ready(), engine.start()])
    const backend = createAdminBackend({
      engine, config: () => config, generation: () => generation, stores,
      reload: () => reload('api'), reopenLogs: () => reopenLogs('api'),
      stopping: () => stopping || drain.state === 'draining', log: logging.logger('admin'), startedAt, bans: banSync, drain,
    }, trace)
    const m = config.metrics
    const a = config.admin
    // admin.listen null: the admin API shares the metrics listener. Off on a public address
    // unless admin.enabled. Never without a token: admin.token, else the one in admin.token_file
    // (created on the first start).
    const adminListen = a.listen ?? m.listen
    const adminOn = adminListen !== null && (a.enabled || isLoopback(adminListen.address))
    const adminToken = adminOn ? resolveAdminToken(a, { create: true }) : null
    if (adminToken !== null && adminToken.file !== null) {
      // absolute: the operator reading the log may not know the service's working directory
      adminTokenFile = resolvePath(adminToken.file)
      if (adminToken.source === 'generated') log.info({ tokenFile: adminTokenFile }, 'admin API token created: /api requests need "Authorization: Bearer <the token in tokenFile>"')
      if (adminToken.looseMode !== undefined)
        log.warn({ tokenFile: adminTokenFile, mode: '0' + adminToken.looseMode.toString(8) }, 'admin token file is readable by other users: chmod 600 it')
    }
    const metricsPart = m.listen !== null ? { registry, path: m.path } : null
    const adminPart = adminOn ? { backend, token: adminToken!.token, enabled: a.enabled } : null
    if (metricsPart !== null && adminPart !== null && sameAddr(m.listen, adminListen)) {
      servers.push(await startHttpServer({ listen: adminListen!, metrics: metricsPart, admin: adminPart }))
    } else {
      if (metricsPart !== null) servers.push(await startHttpServer({ listen: m.listen!, metrics: metricsPart }))
      if (adminPart !== null) servers.push(await startHttpServer({ listen: adminListen!, admin: adminPart }))
    }
  } catch (err) {
    log.fatal({ err }, 'startup failed')
    for (const s of servers) s.close()
    await engine.stop().catch(() => {})
    await logging.close().catch(() => {})
    process.exitCode = 1
    return
  }
  registry.setReady(true)
  banSync.start()
  log.info({
    pid: process.pid, workers: engine.workerCount, generation,
    listen: engine.listeners.map(l => `${l.transport}:${l.address.includes(':') ? `[${l.address}]` : l.address}:${l.port}`),
    http: servers.map(s => `${s.address}:${s.port}`),
    ...(adminTokenFile !== null ? { adminTokenFile } : {}),
    v8Flags: o.v8Flags ?? [],
    ...(helperNice !== null ? { helperThreadsNice: helperNice.nice, helperThreads: helperNice.threads } : {}),
    ...(helperNice !== null && helperNice.failed > 0 ? { helperThreadsFailed: helperNice.failed } : {}),
  }, 'ready')
}

export async function main(argv: string[]): Promise<number | undefined> {
  const args = argv.slice()
  if (args.length === 0 || args.includes('--help') || args.includes('-h')) {
    process.stdout.write(USAGE)
    return args.length === 0 ? 2 : 0
  }
  if (args.includes('--version') || args.includes('-V')) {
    process.stdout.write(`sipedge ${version()}\n`)
    return 0
  }
  if (args[0] === 'admin') return adminCommand(args.slice(1), USAGE)
  if (args[0] === 'check-config') {
    if (args[1] === undefined) { process.stderr.write('sipedge check-config: missing FILE\n' + USAGE); return 2 }
    return checkConfig(args[1])
  }
  let file: string | undefined
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!
    if (a === '--config' || a === '-c') file = args[++i]
    else if (a.startsWith('--config=')) file = a.slice('--config='.length)
    else { process.stderr.write(`sipedge: unknown argument ${JSON.stringify(a)}\n` + USAGE); return 2 }
  }
  if (file === undefined) { process.stderr.write('sipedge: --config FILE is required\n' + USAGE); return 2 }
  // before the engine starts its workers: V8 flags are process-wide, their isolates get them
  const v8Flags = applyV8Defaults()
  await run(file, { v8Flags })
  return undefined // keep running until a signal
}

const code = await main(process.argv.slice(2))
if (code !== undefined) process.exitCode = code
