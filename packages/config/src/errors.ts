/** One problem found in a configuration file. Positions are 1-based. */
export interface ConfigIssue {
  /** Key path of the offending value, e.g. `dispatcher.sets.apps.algorithm` or `routes[2].action.dispatch`. */
  path: string
  line: number
  column: number
  /** What was expected and what was found, e.g. `expected one of hash-callid, round-robin, got "foo"`. */
  message: string
  /** Stable kind of problem, for tests and tooling (ERR_CONFIG_TYPE, ERR_CONFIG_UNKNOWN_KEY, ...). */
  code: ConfigIssueCode
}

export type ConfigIssueCode =
  | 'ERR_CONFIG_YAML' // YAML syntax
  | 'ERR_CONFIG_TYPE' // wrong YAML type (string where a list was expected ...)
  | 'ERR_CONFIG_UNKNOWN_KEY'
  | 'ERR_CONFIG_RENAMED_KEY'
  | 'ERR_CONFIG_REQUIRED' // a mandatory key is missing
  | 'ERR_CONFIG_ENUM' // not one of the allowed values
  | 'ERR_CONFIG_RANGE' // number, duration or size out of range
  | 'ERR_CONFIG_FORMAT' // malformed listen spec, URI, CIDR, regex, duration ...
  | 'ERR_CONFIG_REFERENCE' // names something that does not exist (unknown dispatcher set ...)
  | 'ERR_CONFIG_CONFLICT' // values that contradict each other
  | 'ERR_CONFIG_FILE' // a file the configuration names is missing, unreadable or unusable (users file, certificate ...)

export type ConfigErrorCode = 'ERR_CONFIG_INVALID' | 'ERR_CONFIG_YAML' | 'ERR_CONFIG_READ'

export class ConfigError extends Error {
  readonly code: ConfigErrorCode
  readonly file: string
  readonly issues: readonly ConfigIssue[]
  constructor(code: ConfigErrorCode, file: string, issues: readonly ConfigIssue[], summary?: string) {
    super(formatMessage(code, file, issues, summary))
    this.name = 'ConfigError'
    this.code = code
    this.file = file
    this.issues = issues
  }

  /** Plain form for postMessage / msgpack: class identity does not survive cloning. */
  toJSON(): { code: ConfigErrorCode; message: string; file: string; issues: ConfigIssue[] } {
    return { code: this.code, message: this.message, file: this.file, issues: this.issues.map(i => ({ ...i })) }
  }

  static fromJSON(o: { code: ConfigErrorCode; file: string; issues: ConfigIssue[] }): ConfigError {
    return new ConfigError(o.code, o.file, o.issues)
  }
}

export function formatIssue(file: string, i: ConfigIssue): string {
  return `${file}:${i.line}:${i.column}: ${i.path === '' ? '(top level)' : i.path}: ${i.message}`
}

function formatMessage(code: ConfigErrorCode, file: string, issues: readonly ConfigIssue[], summary?: string): string {
  const head =
    summary ??
    (code === 'ERR_CONFIG_READ'
      ? `cannot read configuration file ${file}`
      : code === 'ERR_CONFIG_YAML'
        ? `${file}: YAML syntax error${issues.length === 1 ? '' : 's'}`
        : `${file}: ${issues.length} configuration error${issues.length === 1 ? '' : 's'}`)
  if (issues.length === 0) return head
  return head + '\n' + issues.map(i => '  ' + formatIssue(file, i)).join('\n')
}
