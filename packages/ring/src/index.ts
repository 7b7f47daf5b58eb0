export {
  Ring,
  FrameView,
  FRAME_HEADER_SIZE,
  RING_CONTROL_SIZE,
  RING_MIN_CAPACITY,
  RING_MAX_CAPACITY,
  RING_MAGIC,
  RING_LAYOUT_VERSION,
  RECORD_ALIGN,
  RING_REWIND_DIVISOR,
} from './ring.js'
export type { RingStats, FrameHandler } from './ring.js'
export { RingError, RingErrorCode } from './errors.js'
// The frame contract is defined in @sipedge/frame; re-exported here for callers that took it
// from the ring before that package existed (new code imports @sipedge/frame).
export {
  TransportKind,
  FrameFlags,
  FLAG_CLOSE_AFTER_SEND,
  FLAG_OPEN_CONNECTION,
  FLAG_TRANSPORT_ERROR,
  createFrameMeta,
  encodeAddress,
  decodeAddress,
} from '@sipedge/frame'
export type { FrameMeta, AddressFamily } from '@sipedge/frame'
