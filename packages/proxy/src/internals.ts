// What the parts of the core (core.ts, forwarding.ts, replies.ts, stateless.ts, originate.ts)
// share: the Proxy implements this, the other files take it as their first argument. Types only,
// so the files depend on this one and never on each other in a circle.
import type { SipMessage } from '@sipedge/sip'
import type { ClientTransaction, TimeoutReason, TransactionLayer } from '@sipedge/transaction'
import type { FrozenConfig } from '@sipedge/config'
import type { ProxyCounters, ProxyMetrics } from './counters.js'
import type { LocalIdentity } from './identity.js'
import type { BranchFactory } from './loop.js'
import type { ModuleInstance } from './module.js'
import type { Resolver } from './resolver.js'
import type { BranchSigner } from './secret.js'
import type { Destination, ProxyLogger } from './types.js'

/** Module instances per hook, in load order (empty arrays cost nothing per message). */
export interface Hooks {
  onArrival: ModuleInstance[]
  onRequest: ModuleInstance[]
  onRestore: ModuleInstance[]
  onDialogRequest: ModuleInstance[]
  onForward: ModuleInstance[]
  onForwardAck: ModuleInstance[]
  onResponse: ModuleInstance[]
  onAttemptFailed: ModuleInstance[]
  onReply: ModuleInstance[]
  onFinished: ModuleInstance[]
  trusts: ModuleInstance[]
  onStrayResponse: ModuleInstance[]
  onSelectRule: ModuleInstance[]
}

export interface CoreState {
  readonly counters: ProxyCounters
  readonly layer: TransactionLayer
  readonly workerIndex: number
  readonly workers: number
  readonly config: FrozenConfig
  readonly local: LocalIdentity
  readonly resolver: Resolver
  readonly branches: BranchFactory
  readonly signer: BranchSigner
  readonly log: ProxyLogger
  readonly metrics: ProxyMetrics | undefined
  readonly hooks: Hooks
  readonly localHeaders: Array<[string, string]>
  inflight: number
  sendFn(dest: Destination, data: Buffer | Buffer[]): void
  readonly onClientResponse: (msg: SipMessage, tx: ClientTransaction) => void
  readonly onClientTimeout: (tx: ClientTransaction, reason: TimeoutReason) => void
}
