// The security module (docs/security.md): on-arrival drops for a node on a public address.
// This file is the module's door.
export { SecurityModule, securityModule, PatternSet, compilePatterns, containsFolded } from './module.js'
