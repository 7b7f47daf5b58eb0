// Opening the dialog mirror (config `dialog.store`, default the top-level `store`). Done by the
// host (the worker adapter) after the proxy is up: the proxy never waits for it, and dialogs
// confirmed before it is open are written once it is (DialogTracker.attachStore).
import { openStores } from '@sipedge/store'
import type { FrozenConfig } from '@sipedge/config'
import type { DialogTracker } from './table.js'

/**
 * Opens `config.dialog.store` for this worker and attaches it to `tracker`. Only worker 0 runs
 * the store's expiry sweep. Resolves false (nothing attached) when mirroring is off or the store
 * cannot be opened; the caller logs it.
 */
export async function attachDialogStore(tracker: DialogTracker, config: FrozenConfig, workerIndex: number, nodeId?: string): Promise<boolean> {
  if (!config.dialog.mirror) return false
  const stores = await openStores(config.dialog.store, {
    sweepIntervalMs: workerIndex === 0 ? 5_000 : 0,
    ...(nodeId !== undefined ? { nodeId } : {}),
  })
  tracker.attachStore(stores.dialogs, () => stores.close())
  return true
}
