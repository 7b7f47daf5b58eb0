// Frame header fields and flag bits.
import t from 'tap'
import { createFrameMeta, FrameFlags, FLAG_CLOSE_AFTER_SEND, FLAG_OPEN_CONNECTION, FLAG_TRANSPORT_ERROR, FLAG_KEEPALIVE } from '@sipedge/frame'

t.test('createFrameMeta: every field, in a fixed order', async t => {
  const m = createFrameMeta()
  t.same(Object.keys(m), ['transport', 'socketId', 'connId', 'family', 'address', 'port', 'recvTime', 'flags'])
  t.same(m, { transport: 0, socketId: 0, connId: 0, family: 4, address: '', port: 0, recvTime: 0, flags: 0 })
  const o = createFrameMeta({ port: 5060, family: 6, address: '::1', flags: FLAG_TRANSPORT_ERROR })
  t.same(Object.keys(o), Object.keys(m), 'same shape whatever is given')
  t.equal(o.port, 5060)
  t.equal(o.flags, 4)
})

t.test('flags are distinct bits', async t => {
  t.same(FrameFlags, { CLOSE_AFTER_SEND: 1, OPEN_CONNECTION: 2, TRANSPORT_ERROR: 4, KEEPALIVE: 8 })
  t.same([FLAG_CLOSE_AFTER_SEND, FLAG_OPEN_CONNECTION, FLAG_TRANSPORT_ERROR, FLAG_KEEPALIVE], [1, 2, 4, 8])
  t.equal(FLAG_CLOSE_AFTER_SEND & FLAG_OPEN_CONNECTION & FLAG_TRANSPORT_ERROR & FLAG_KEEPALIVE, 0)
})
