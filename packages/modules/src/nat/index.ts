// The nat module (docs/nat.md): NAT detection, flows for dialogs in our Record-Route, keep-alives
// and removal of bindings that stop answering. This file is the module's door.
export { NatDetector, DEFAULT_PRIVATE_NETWORKS } from './detect.js'
export { FlowTokens, flowParamOf, FLOW_PARAM } from './flow-token.js'
export type { FlowClaim } from './flow-token.js'
export { KeepaliveScheduler, NatCounters, PingEntry, bindingKeyOf, PING_BRANCH, TICK_MS } from './keepalive.js'
export type { BindingRef, KeepaliveOptions } from './keepalive.js'
export { NatModule, natModule, FLOW_FAILED, WATCH_FLOW } from './module.js'
export type { RegistrarHooks } from './module.js'
