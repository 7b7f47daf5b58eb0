// @sipedge/frame — the one contract between the primary and the workers: what a frame's header
// holds, the transport kinds and frame flags, the header's address codec, and the interface of
// the message handler a worker (or the primary with `workers: 0`) drives. No runtime
// dependencies; nothing about SIP routing. Imported by @sipedge/ring, @sipedge/transport and
// @sipedge/workers.
export { FrameFlags, FLAG_CLOSE_AFTER_SEND, FLAG_OPEN_CONNECTION, FLAG_TRANSPORT_ERROR, FLAG_KEEPALIVE, createFrameMeta } from './meta.js'
export type { FrameMeta } from './meta.js'
export { TransportKind, UDP, TCP, TLS, WS, WSS, TRANSPORT_NAMES, nameOf, kindOf, isStreamKind } from './transport-kind.js'
export type { TransportName } from './transport-kind.js'
export { encodeAddress, decodeAddress } from './address.js'
export type { AddressFamily } from './address.js'
export type { HandlerContext, HandlerLogger, HandlerMetrics, MessageHandler, CreateHandler } from './handler.js'
