// The dialog module (docs/dispatcher.md "Dialog tracking"): sticky dialogs, the signed
// Record-Route parameter, BYE on timeout. This file is the module's door.
export { DialogTracker, DialogRecord, DialogCounters } from './table.js'
export type { DialogKind, DialogState, DialogInfo, DialogCounts, DialogTrackerOptions } from './table.js'
export { DialogTokens, deriveSecret, tokenOf, TOKEN_PARAM } from './token.js'
export type { TokenClaim } from './token.js'
export { DialogModule, DialogModuleCounters, dialogModule } from './module.js'
