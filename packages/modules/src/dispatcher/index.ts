// The dispatcher module (docs/dispatcher.md): sets of application servers, algorithms, probing,
// failover and draining behind the route action `dispatch`. This file is the module's door.
export { Dispatcher, DispatchSet, DispatchDestination, proberIndex, adminStateOf } from './dispatcher.js'
export type { DestState, AdminState, AdminAction, DispatcherOptions, ProbeSender, DispatcherSnapshot, DestinationSnapshot } from './dispatcher.js'
export { DispatcherModule, DispatcherCounters, dispatcherModule } from './module.js'
export type { ProbeObserver } from './module.js'
