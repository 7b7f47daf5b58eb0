// The engine and the cli log through @sipedge/transport's small Logger interface
// (`log.info(msg, fields)`); in the running product that interface is served by pino loggers of
// @sipedge/log (one log thread for the process, per-module levels), adapted here.
import type { Logger as EngineLogger, LogLevel as EngineLevel } from '@sipedge/transport'
import type { Logger as PinoLogger, Logging } from '@sipedge/log'

export function engineLogger(logging: Logging, module: string): EngineLogger {
  const l: PinoLogger = logging.logger(module)
  return {
    debug: (msg, fields) => l.debug(fields ?? {}, msg),
    info: (msg, fields) => l.info(fields ?? {}, msg),
    warn: (msg, fields) => l.warn(fields ?? {}, msg),
    error: (msg, fields) => l.error(fields ?? {}, msg),
    fatal: (msg, fields) => l.fatal(fields ?? {}, msg),
    isLevelEnabled: (level: EngineLevel) => level !== 'silent' && l.isLevelEnabled(level),
    child: (m: string) => engineLogger(logging, m),
    reopen: () => { void logging.reopen() },
  }
}
