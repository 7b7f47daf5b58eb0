export { topologyModule, TopologyModule, TopologyCounters } from './module.js'
export { EdgeClaim, EDGE_PREFIX, edgeUri, sealClaim, openClaim, parseToken } from './token.js'
export { SealKey, SealKeys, CallIdMask, shardModulus, shardSuffix, SHARD_BASE } from './crypto.js'
