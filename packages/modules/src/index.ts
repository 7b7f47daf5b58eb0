// @sipedge/modules: the feature modules of the proxy core, one folder each, each exporting one
// declaration (see @sipedge/proxy module.ts). MODULES is what a host loads; the order is the
// order of the hooks where dependencies do not decide it.
import type { ModuleDeclaration } from '@sipedge/proxy'
import { authModule } from './auth/index.js'
import { clusterModule } from './cluster/index.js'
import { dialogModule } from './dialog/index.js'
import { dispatcherModule } from './dispatcher/index.js'
import { natModule } from './nat/index.js'
import { nodeModule } from './node/index.js'
import { registrarModule } from './registrar/index.js'
import { securityModule } from './security/index.js'
import { topologyModule } from './topology/index.js'

export * from './auth/index.js'
export * from './cluster/index.js'
export * from './dialog/index.js'
export * from './dispatcher/index.js'
export * from './nat/index.js'
export * from './node/index.js'
export * from './registrar/index.js'
export * from './security/index.js'
export * from './topology/index.js'

export const MODULES: readonly ModuleDeclaration[] = Object.freeze([
  // First: a scanner's request is dropped before any other module spends anything on it.
  securityModule as ModuleDeclaration,
  // Second: a draining node refuses new dialogs and registrations before auth challenges them.
  nodeModule as ModuleDeclaration,
  authModule as ModuleDeclaration,
  registrarModule as ModuleDeclaration,
  dispatcherModule as ModuleDeclaration,
  dialogModule as ModuleDeclaration,
  // After registrar and dispatcher (it uses both): liveness, relaying, shared operator states.
  clusterModule as ModuleDeclaration,
  natModule as ModuleDeclaration,
  topologyModule as ModuleDeclaration,
])
