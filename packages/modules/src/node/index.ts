export { NodeModule, nodeModule, NODE_DRAIN } from './module.js'
