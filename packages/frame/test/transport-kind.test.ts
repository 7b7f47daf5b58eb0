// The one table between transport kind numbers (frame header) and names (config, Via).
import t from 'tap'
import { TransportKind, UDP, TCP, TLS, WS, WSS, TRANSPORT_NAMES, nameOf, kindOf, isStreamKind } from '@sipedge/frame'

t.test('kinds are the numbers the frame header has always carried', async t => {
  t.same(TransportKind, { UDP: 1, TCP: 2, TLS: 3, WS: 4, WSS: 5 })
  t.same([UDP, TCP, TLS, WS, WSS], [1, 2, 3, 4, 5])
  t.same(TRANSPORT_NAMES, ['udp', 'tcp', 'tls', 'ws', 'wss'])
  t.ok(Object.isFrozen(TRANSPORT_NAMES))
})

t.test('nameOf and kindOf are inverse; unknowns are undefined / 0', async t => {
  for (let i = 0; i < TRANSPORT_NAMES.length; i++) {
    const name = TRANSPORT_NAMES[i]!
    t.equal(kindOf(name), i + 1, name)
    t.equal(nameOf(i + 1), name)
  }
  for (const k of [0, 6, 255, -1, 1.5]) t.equal(nameOf(k), undefined, String(k))
  for (const n of ['', 'UDP', 'sctp', 'toString', '__proto__']) t.equal(kindOf(n), 0, n)
})

t.test('stream kinds', async t => {
  t.same([UDP, TCP, TLS, WS, WSS, 0].map(isStreamKind), [false, true, true, true, true, false])
})
