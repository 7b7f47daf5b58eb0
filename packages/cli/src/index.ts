// @sipedge/cli — the `sipedge` command (dist/main.js); the config -> engine mapping is shared.
export { engineOptionsFromConfig } from './options.js'
