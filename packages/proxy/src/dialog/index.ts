// Dialog tracking and the signed Record-Route parameter (docs/dispatcher.md).
export { DialogTracker, DialogRecord, DialogCounters } from './table.js'
export type { DialogKind, DialogState, DialogInfo, DialogCounts, DialogTrackerOptions } from './table.js'
export { DialogTokens, deriveSecret, tokenOf, TOKEN_PARAM } from './token.js'
export type { TokenClaim } from './token.js'
export { attachDialogStore } from './store.js'
