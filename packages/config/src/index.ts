// @sipedge/config: schema, YAML loading with positions, validation, normalisation, docs.
// Deliberately imports no other sipedge package.
export { ConfigError, formatIssue } from './errors.js'
export type { ConfigIssue, ConfigIssueCode, ConfigErrorCode } from './errors.js'
export { parseConfig, loadConfigFile, checkConfigFile, defaultConfig, deepFreeze } from './load.js'
export type { CheckResult, LoadOptions } from './load.js'
export type { ResourceCheckOptions } from './resources.js'
export { configSchema } from './sections.js'
export { PROTOS, ALGORITHMS, LOG_LEVELS } from './fields.js'
export { renderConfigDocs } from './docs.js'
export { parseDuration, formatDuration, parseSize, formatSize, parseCidr, parseStoreUrl, checkSipUri } from './values.js'
export type { Cidr, StoreUrl } from './values.js'
export type * from './types.js'
