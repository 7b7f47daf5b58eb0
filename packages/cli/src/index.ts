// @sipedge/cli — the `sipedge` command (dist/main.js); the config -> engine mapping is shared.
export { engineOptionsFromConfig, keepaliveFromConfig } from './options.js'
