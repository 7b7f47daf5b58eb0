// @sipedge/proxy: the stateful proxy core (RFC 3261 §16), routing rules, and the contract for
// feature modules (module.ts) with their loader (host.ts). See docs/proxy.md.
export { Proxy, createProxy } from './core.js'
export type { ProxyOptions } from './core.js'
export { ProxyCounters } from './counters.js'
export type { ProxyMetrics } from './counters.js'
export { betterFinal } from './context.js'
export { Reply, TargetHop, DROP } from './module.js'
export type {
  ArrivalVerdict, NextHop, FailoverPolicy, HopPlan, RouteAction, RequestView, DialogRequestInfo, Restored, CoreApi, OriginateOptions,
  ModuleContext, ModuleDeclaration, ModuleInstance, LoadedModule,
} from './module.js'
export { planModules, createModules, startProxy, ModuleError, CORE_ACTIONS } from './host.js'
export type { ModuleErrorCode, CreateModulesOptions } from './host.js'
export { pinnedCallId } from './originate.js'
export { deriveSecret, keyOf, BranchSigner } from './secret.js'
export { HmacSha256 } from './hmac.js'
export type { Destination, Source, ProxyLogger, ControlMessage, Target, TransportName } from './types.js'
export { LocalIdentity, defaultPort } from './identity.js'
export type { Listener } from './identity.js'
export { compileRoutes, compileRule, RouteTable, PrefixTrie, PrefixGroup } from './routing.js'
export type { CompiledRule, CompiledAction, RoutePredicate, RouteCompileDeps } from './routing.js'
export { loopHash, isLoop, hasOurBranch, BranchFactory, BRANCH_MARK } from './loop.js'
export { Resolver, hopOf, hopOfUri } from './resolver.js'
export type { Hop } from './resolver.js'
