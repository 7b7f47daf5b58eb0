#!/usr/bin/env node
// The `sipedge` command: runs the proxy in the foreground, or checks a configuration file.
import { readFileSync } from 'node:fs'
import { checkConfigFile, loadConfigFile, ConfigError, formatIssue, type FrozenConfig } from '@sipedge/config'
import { Engine, createLogger, type Logger, type LogLevel } from '@sipedge/transport'
import { engineOptionsFromConfig } from './options.js'

const USAGE = `Usage:
  sipedge --config FILE          run the proxy in the foreground (SIGTERM drains and exits 0,
                                 SIGHUP reopens logs and reloads the configuration)
  sipedge check-config FILE      validate FILE; print every problem as file:line:col and exit 1
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

function logLevel(l: string): LogLevel {
  return l === 'trace' ? 'debug' : (l as LogLevel)
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

export async function checkConfig(file: string): Promise<number> {
  const r = checkConfigFile(file)
  if (r.ok) {
    process.stdout.write(`${file}: OK\n`)
    return 0
  }
  printConfigError(r.error)
  return 1
}

export async function run(file: string): Promise<void> {
  let config: FrozenConfig
  try {
    config = loadConfigFile(file)
  } catch (err) {
    printConfigError(err)
    process.exitCode = 1
    return
  }
  const log: Logger = createLogger({ level: logLevel(config.logging.level), module: 'sipedge', ...(config.logging.file !== null ? { file: config.logging.file } : {}) })
  const engine = new Engine(engineOptionsFromConfig(config, log.child('engine')))
  let stopping = false
  const stop = (signal: string): void => {
    // A repeated signal is ignored: pnpm and other runners forward the signal that the process
    // group already got (systemd, Ctrl-C), and the drain is bounded anyway.
    if (stopping) return
    stopping = true
    log.info('shutting down', { signal })
    engine.stop().then(
      () => { log.info('exit', { code: 0 }); process.exit(0) },
      err => { log.error('shutdown failed', { err }); process.exit(1) },
    )
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
  process.on('SIGHUP', () => {
    log.reopen()
    const r = checkConfigFile(file)
    if (!r.ok) {
      log.error('configuration reload rejected; keeping the running configuration', {
        file, code: r.error.code, issues: r.error.issues.map(i => formatIssue(r.error.file, i)),
      })
      return
    }
    const next = r.config as FrozenConfig
    const restartNeeded: string[] = []
    if (JSON.stringify(next.listen) !== JSON.stringify(config.listen)) restartNeeded.push('listen')
    if (next.workers !== config.workers) restartNeeded.push('workers')
    if (JSON.stringify(next.limits) !== JSON.stringify(config.limits)) restartNeeded.push('limits')
    config = next
    engine.updateConfig(next)
    const tlsOk = engine.reloadTls()
    log.info('configuration reloaded', { file, tlsReloaded: tlsOk, ...(restartNeeded.length > 0 ? { restartNeededFor: restartNeeded } : {}) })
  })
  try {
    await engine.start()
  } catch (err) {
    log.fatal('startup failed', { err })
    process.exitCode = 1
    return
  }
  log.info('ready', {
    pid: process.pid, workers: engine.workerCount,
    listen: engine.listeners.map(l => `${l.transport}:${l.address.includes(':') ? `[${l.address}]` : l.address}:${l.port}`),
  })
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
  await run(file)
  return undefined // keep running until a signal
}

const code = await main(process.argv.slice(2))
if (code !== undefined) process.exitCode = code
