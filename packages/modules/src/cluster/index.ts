export { ClusterModule, ClusterCounters, clusterModule, relayUri, sharedStore, RELAY_PARAM } from './module.js'
