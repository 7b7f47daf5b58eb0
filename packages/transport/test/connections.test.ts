import t from 'tap'
import { ConnectionTable, StreamConn, TCP, TLS } from '@sipedge/transport'

t.test('ids are unique, non-zero, and found by id and by address key', async t => {
  const tab = new ConnectionTable()
  const a = new StreamConn(TCP, 0, '10.0.0.1', 5060, false)
  const b = new StreamConn(TLS, 0, '10.0.0.1', 5060, false)
  const c = new StreamConn(TCP, 0, '::1', 5062, true)
  for (const x of [a, b, c]) tab.add(x)
  t.equal(tab.size, 3)
  t.not(a.id, 0)
  t.equal(new Set([a.id, b.id, c.id]).size, 3)
  t.equal(tab.get(b.id), b)
  t.equal(tab.byKey(TCP, '10.0.0.1', 5060), a, 'key includes the transport')
  t.equal(tab.byKey(TLS, '10.0.0.1', 5060), b)
  t.equal(c.family, 6)
  tab.remove(a)
  t.equal(tab.get(a.id), undefined)
  t.equal(tab.byKey(TCP, '10.0.0.1', 5060), undefined)
  t.equal(tab.size, 2)
})

t.test('the newest connection to a peer owns the key; removing the older keeps it', async t => {
  const tab = new ConnectionTable()
  const old = new StreamConn(TCP, 0, '10.0.0.2', 5060, true)
  const neu = new StreamConn(TCP, 0, '10.0.0.2', 5060, true)
  tab.add(old)
  tab.add(neu)
  t.equal(tab.byKey(TCP, '10.0.0.2', 5060), neu)
  tab.remove(old)
  t.equal(tab.byKey(TCP, '10.0.0.2', 5060), neu)
})
