// Worker thread entry: drains the inbound ring into the message handler and gives the
// handler's frames to the outbound ring, which the primary sends out. Control messages
// (config, drain, ...) arrive msgpackr-encoded on the MessagePort.
import { workerData, parentPort } from 'node:worker_threads'
import { setImmediate as setImmediateP } from 'node:timers/promises'
import { Ring, type FrameView } from '@sipedge/ring'
import { pack, unpack } from 'msgpackr'
import { workerLogger } from './log.js'
import type { CreateHandler, MessageHandler, FrameMeta } from './types.js'

interface WorkerData {
  inbound: SharedArrayBuffer
  outbound: SharedArrayBuffer
  workerIndex: number
  config: unknown
  handlerUrl?: string
}

const BATCH = 256
const data = workerData as WorkerData
const port = parentPort!
const log = workerLogger('worker', data.workerIndex)
const inbound = new Ring(data.inbound)
const outbound = new Ring(data.outbound)
let outFull = 0
let handlerErrors = 0
let lastErrorLog = 0
let draining = false

const mod = await import(data.handlerUrl ?? new URL('./handler.js', import.meta.url).href) as { createHandler: CreateHandler }
const handler: MessageHandler = await mod.createHandler({
  workerIndex: data.workerIndex,
  config: data.config,
  send(meta: FrameMeta, payload: Uint8Array | readonly Uint8Array[]): boolean {
    if (outbound.tryPush(meta, payload)) return true
    outFull++ // the primary is behind: like a lost datagram, the peer retransmits
    return false
  },
  now: () => performance.timeOrigin + performance.now(),
  log,
  inProcess: false,
  postControl(msg: { type: string; [k: string]: unknown }): void {
    port.postMessage(pack({ type: 'broadcast', from: data.workerIndex, msg }))
  },
})

const onFrame = (meta: FrameView, payload: Buffer): void => {
  try {
    handler.onFrame(meta, payload)
  } catch (err) {
    // One bad message must not take the thread (and every call on it) down.
    handlerErrors++
    const now = Date.now()
    if (now - lastErrorLog > 10_000) { lastErrorLog = now; log.error('handler threw', { err, handlerErrors }) }
  }
}

port.on('message', (m: Uint8Array) => {
  let msg: { type: string; [k: string]: unknown }
  try { msg = unpack(m) as typeof msg } catch { return }
  if (msg.type === 'drain') {
    draining = true
    inbound.wake()
    void finish()
  } else if (msg.type === 'stats') {
    port.postMessage(pack({ type: 'stats', workerIndex: data.workerIndex, outFull, handlerErrors }))
  } else {
    handler.onControl?.(msg)
  }
})

async function finish(): Promise<void> {
  while (inbound.drain(onFrame, BATCH) > 0) { /* the primary stopped producing: this ends */ }
  try { await handler.close?.() } catch (err) { log.error('handler close failed', { err }) }
  port.postMessage(pack({ type: 'drained', outFull, handlerErrors }))
}

port.postMessage(pack({ type: 'ready' }))

while (!draining) {
  const n = inbound.drain(onFrame, BATCH)
  // A full batch: yield a macrotask so MessagePort messages (config, drain) get in.
  if (n >= BATCH) await setImmediateP()
  else if (!draining) await inbound.waitForData()
}
