export {
  Ring,
  FrameView,
  TransportKind,
  FrameFlags,
  FLAG_CLOSE_AFTER_SEND,
  FLAG_OPEN_CONNECTION,
  FRAME_HEADER_SIZE,
  RING_CONTROL_SIZE,
  RING_MIN_CAPACITY,
  RING_MAX_CAPACITY,
  RING_MAGIC,
  RING_LAYOUT_VERSION,
  RECORD_ALIGN,
  createFrameMeta,
} from './ring.js'
export type { FrameMeta, RingStats, FrameHandler } from './ring.js'
export { RingError, RingErrorCode } from './errors.js'
export { encodeAddress, decodeAddress } from './address.js'
export type { AddressFamily } from './address.js'
