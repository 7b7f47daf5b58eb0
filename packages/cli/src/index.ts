// @sipedge/cli — the `sipedge` command (dist/main.js); the config -> engine mapping is shared.
export { engineOptionsFromConfig, keepaliveFromConfig } from './options.js'
export { V8_DEFAULTS, v8FlagsToSet, applyV8Defaults } from './v8-tuning.js'
