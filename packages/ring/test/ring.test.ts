import t from 'tap'
import {
  Ring, RingError, RingErrorCode, FrameView, TransportKind, FrameFlags, FLAG_CLOSE_AFTER_SEND,
  FLAG_OPEN_CONNECTION, FRAME_HEADER_SIZE, RECORD_ALIGN, RING_CONTROL_SIZE, RING_REWIND_DIVISOR, createFrameMeta,
} from '@sipedge/ring'
import type { FrameMeta } from '@sipedge/ring'

function meta(over: Partial<FrameMeta> = {}): FrameMeta {
  return createFrameMeta({ transport: TransportKind.UDP, socketId: 1, connId: 0, family: 4,
    address: '192.0.2.1', port: 5060, recvTime: 1, flags: 0, ...over })
}
function bytes(n: number, seed = 0): Uint8Array {
  const b = new Uint8Array(n)
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7 + 11) & 0xff
  return b
}
function collect(ring: Ring, max?: number) {
  const out: Array<{ meta: FrameMeta; payload: Buffer }> = []
  ring.drain((m, p) => {
    out.push({ meta: { transport: m.transport, socketId: m.socketId, connId: m.connId, family: m.family,
      address: m.address, port: m.port, recvTime: m.recvTime, flags: m.flags }, payload: Buffer.from(p) })
  }, max)
  return out
}
function recordSize(len: number) { return (FRAME_HEADER_SIZE + len + RECORD_ALIGN - 1) & ~(RECORD_ALIGN - 1) }

t.test('allocate: power-of-two capacity, typed errors', async (t) => {
  t.equal(new Ring(Ring.allocate(1000)).capacity, 1024)
  t.equal(new Ring(Ring.allocate(4096)).capacity, 4096)
  t.equal(new Ring(Ring.allocate(1)).capacity, 256)
  t.equal(Ring.allocate(4096).byteLength, RING_CONTROL_SIZE + 4096)
  for (const bad of [0, -1, NaN, Infinity, 2 ** 31, '64' as unknown as number]) {
    t.throws(() => Ring.allocate(bad), { code: RingErrorCode.BAD_CAPACITY }, String(bad))
  }
  t.throws(() => new Ring(new SharedArrayBuffer(4096)), { code: 'ERR_RING_BAD_BUFFER' })
  t.throws(() => new Ring(new ArrayBuffer(4096) as unknown as SharedArrayBuffer), { code: 'ERR_RING_BAD_BUFFER' })
  t.throws(() => new Ring(new SharedArrayBuffer(8)), { code: 'ERR_RING_BAD_BUFFER' })
  const e = (() => { try { Ring.allocate(0) } catch (err) { return err } })()
  t.ok(e instanceof RingError)
  t.ok(e instanceof Error)
})

t.test('constructor has no side effect: a second instance reads the same state and stats', async (t) => {
  const sab = Ring.allocate(4096)
  const p = new Ring(sab)
  t.ok(p.tryPush(meta(), bytes(10)))
  const observer = new Ring(sab)
  t.same(observer.stats(), { pushed: 1, refused: 0, drained: 0, wakeups: 0, notifies: 0, used: recordSize(10), capacity: 4096, reach: recordSize(10) })
  const c = new Ring(sab)
  t.equal(collect(c).length, 1)
  t.equal(observer.stats().drained, 1)
  t.equal(observer.stats().used, 0)
})

t.test('header round trip: every field, IPv4 and IPv6', async (t) => {
  const ring = new Ring(Ring.allocate(64 * 1024))
  const cases: FrameMeta[] = [
    meta(),
    meta({ transport: TransportKind.WSS, socketId: 0xffffffff, connId: 0x80000001, family: 4, address: '255.255.255.255',
      port: 65535, recvTime: performance.timeOrigin + performance.now(), flags: 0xffffffff }),
    meta({ transport: TransportKind.TCP, socketId: 0, connId: 0, family: 4, address: '0.0.0.0', port: 0, recvTime: 0, flags: 0 }),
    meta({ transport: TransportKind.TLS, socketId: 3, connId: 42, family: 6, address: '2001:db8::1', port: 5061,
      recvTime: -1.25, flags: FLAG_CLOSE_AFTER_SEND }),
    meta({ transport: TransportKind.WS, connId: 7, family: 6, address: '::ffff:10.0.0.1', port: 80, flags: FLAG_OPEN_CONNECTION }),
    meta({ family: 6, address: '::1' }),
    meta({ family: 6, address: '::' }),
    meta({ family: 6, address: 'fe80::1:2:3:4' }),
    meta({ family: 6, address: '2001:db8:0:1:1:1:1:1' }),
    meta({ family: 6, address: '1:2:3:4:5:6:7:8' }),
    meta({ family: 6, address: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff' }),
    meta({ family: 6, address: '2001:db8::a:0:0:1' }),
    meta({ family: 6, address: '1::' }),
    meta({ recvTime: Number.MAX_VALUE }),
  ]
  for (const m of cases) t.ok(ring.tryPush(m, bytes(5)))
  const got = collect(ring)
  t.equal(got.length, cases.length)
  for (let i = 0; i < cases.length; i++) t.same(got[i]!.meta, cases[i], cases[i]!.address)
  t.equal(FrameFlags.CLOSE_AFTER_SEND, FLAG_CLOSE_AFTER_SEND)
  t.equal(FrameFlags.OPEN_CONNECTION, FLAG_OPEN_CONNECTION)
  t.same(TransportKind, { UDP: 1, TCP: 2, TLS: 3, WS: 4, WSS: 5 })
})

t.test('address normalisation and errors', async (t) => {
  const ring = new Ring(Ring.allocate(64 * 1024))
  const norm: Array<[4 | 6, string, string]> = [
    [6, '2001:DB8::0001', '2001:db8::1'],
    [6, '2001:db8:0:0:0:0:0:1', '2001:db8::1'],
    [6, '0:0:0:0:0:0:0:1', '::1'],
    [6, 'fe80::1%eth0', 'fe80::1'],
    [6, '::ffff:0a00:0001', '::ffff:10.0.0.1'],
    [6, '::1.2.3.4', '::1.2.3.4'],
    [6, '1:0:0:2:0:0:0:3', '1:0:0:2::3'],
    [6, '1:0:0:2:0:0:3:4', '1::2:0:0:3:4'],
    [6, '', '::'],
    [4, '', '0.0.0.0'],
    [4, '010.001.0.9', '10.1.0.9'],
  ]
  for (const [family, address] of norm) t.ok(ring.tryPush(meta({ family, address }), bytes(0)))
  const got = collect(ring)
  for (let i = 0; i < norm.length; i++) t.equal(got[i]!.meta.address, norm[i]![2], norm[i]![1])

  const bad: Array<[number, string]> = [
    [4, '1.2.3'], [4, '1.2.3.4.5'], [4, '256.1.1.1'], [4, '1..2.3'], [4, '1.2.3.4 '], [4, 'a.b.c.d'],
    [4, '::1'], [4, '1.2.3.1000'], [6, '1.2.3.4'], [6, ':::'], [6, '1::2::3'], [6, '1:2:3:4:5:6:7:8:9'],
    [6, '12345::'], [6, '1:2:3:4:5:6:7'], [6, 'g::1'], [6, '1:'], [6, ':1'], [6, '1:2:3:4:5:6:7::8'],
    [6, '::1.2.3'], [6, '1:2:3:4:5:6:7:1.2.3.4'], [5, '1.2.3.4'],
  ]
  for (const [family, address] of bad) {
    t.throws(() => ring.tryPush(meta({ family: family as 4 | 6, address }), bytes(1)),
      { code: RingErrorCode.BAD_ADDRESS }, `${family} ${address}`)
  }
  t.equal(ring.stats().pushed, norm.length, 'nothing published by a push that threw')
  t.equal(ring.stats().used, 0)
  // after errors, the IPv6 cache does not hand out a stale parse
  t.ok(ring.tryPush(meta({ family: 6, address: '2001:db8::7' }), bytes(1)))
  t.throws(() => ring.tryPush(meta({ family: 6, address: '2001:db8::7::' }), bytes(1)), { code: 'ERR_RING_BAD_ADDRESS' })
  t.ok(ring.tryPush(meta({ family: 6, address: '2001:db8::7' }), bytes(1)))
  t.same(collect(ring).map((f) => f.meta.address), ['2001:db8::7', '2001:db8::7'])
})

t.test('address strings from real sockets round-trip unchanged', async (t) => {
  const dgram = await import('node:dgram')
  const seen: Array<[4 | 6, string]> = []
  async function roundTrip(type: 'udp4' | 'udp6', bindAddr: string, sendType: 'udp4' | 'udp6', to: string) {
    const rx = dgram.createSocket({ type, ipv6Only: false })
    await new Promise<void>((res) => rx.bind(0, bindAddr, () => res()))
    const tx = dgram.createSocket(sendType)
    const got = new Promise<dgram.RemoteInfo>((res) => rx.once('message', (_m, rinfo) => res(rinfo)))
    tx.send('x', rx.address().port, to)
    const rinfo = await Promise.race([got, new Promise<never>((_r, rej) => setTimeout(() => rej(new Error('no datagram')), 2000).unref())])
    rx.close(); tx.close()
    seen.push([rinfo.family === 'IPv6' ? 6 : 4, rinfo.address])
  }
  await roundTrip('udp4', '127.0.0.1', 'udp4', '127.0.0.1')
  try { await roundTrip('udp6', '::', 'udp4', '127.0.0.1') } catch { t.comment('no dual-stack IPv6 here') }
  try { await roundTrip('udp6', '::1', 'udp6', '::1') } catch { t.comment('no IPv6 loopback here') }
  const ring = new Ring(Ring.allocate(4096))
  for (const [family, address] of seen) ring.tryPush(meta({ family, address }), bytes(1))
  t.same(collect(ring).map((f) => [f.meta.family, f.meta.address]), seen, JSON.stringify(seen))
})

t.test('frames of every size from 0 to the maximum; larger throws ERR_RING_FRAME_TOO_LARGE', async (t) => {
  const ring = new Ring(Ring.allocate(4096))
  t.equal(ring.maxPayload, 2048 - FRAME_HEADER_SIZE)
  t.equal(Ring.maxPayloadFor(4096), ring.maxPayload)
  let bad = 0
  for (let n = 0; n <= ring.maxPayload; n++) {
    const p = bytes(n, n)
    if (!ring.tryPush(meta({ port: n }), p)) { bad++; continue }
    const got = collect(ring)
    if (got.length !== 1 || got[0]!.meta.port !== n || !got[0]!.payload.equals(p)) bad++
  }
  t.equal(bad, 0, 'every size round-trips')
  for (const n of [ring.maxPayload + 1, 4096, 1 << 20]) {
    t.throws(() => ring.tryPush(meta(), bytes(n)), { code: RingErrorCode.FRAME_TOO_LARGE, name: 'RingError' }, String(n))
    t.throws(() => ring.tryPush(meta(), [bytes(n - 1), bytes(1)]), { code: 'ERR_RING_FRAME_TOO_LARGE' }, `gather ${n}`)
  }
  t.equal(ring.stats().refused, 0, 'too large is not "full"')
})

t.test('wrap-around: a tiny ring forced through every wrap position', async (t) => {
  // 256-byte ring, records of 64 and 128 bytes: head visits every aligned offset with every
  // record size, so each combination of "fits exactly", "needs a wrap marker" and "wraps
  // right after a marker" happens. Interleave pushes and partial drains to move the tail too.
  const ring = new Ring(Ring.allocate(256))
  t.equal(ring.capacity, 256)
  const sizes = [0, 1, 15, 16, 17, 40, 79, 80]
  t.equal(Math.max(...sizes), ring.maxPayload)
  let seq = 0
  let expect = 0
  let bad = 0
  const positions = new Set<string>()
  const check = (m: FrameView, p: Buffer) => {
    const want = bytes(sizes[expect % sizes.length]!, expect)
    if (m.socketId !== expect || !p.equals(want)) bad++
    expect++
  }
  for (let round = 0; round < 2000; round++) {
    const n = sizes[seq % sizes.length]!
    const before = ring.stats().used
    if (ring.tryPush(meta({ socketId: seq }), bytes(n, seq))) {
      positions.add(`${before}:${n}`)
      seq++
    } else {
      t.ok(ring.drain(check, 1 + (round % 3)) > 0, 'a refused push means data is there')
    }
    if (round % 5 === 0) ring.drain(check, 1)
  }
  ring.drain(check)
  t.equal(bad, 0, 'every frame intact and in order')
  t.equal(expect, seq)
  t.ok(positions.size >= 12, `many (occupancy, size) combinations: ${positions.size}`)
  const st = ring.stats()
  t.equal(st.pushed, seq)
  t.equal(st.drained, seq)
  t.equal(st.used, 0)

  // exhaustive: for each start offset (64-byte steps) and each record size, push one frame and drain it
  // (the early rewind of an empty ring is off here, or head could not be parked at every offset)
  const r2 = new Ring(Ring.allocate(256))
  r2._rewindAt = Infinity
  let ok = 0
  for (let start = 0; start < 256; start += RECORD_ALIGN) {
    for (const n of [0, 16, 17, 80]) {
      // move head/tail to `start` with 0-size frames (64 bytes each)
      while ((r2 as unknown as { head: number }).head % 256 !== start) { r2.tryPush(meta(), bytes(0)); r2.drain(() => {}) }
      const p = bytes(n, start + n)
      t.ok(r2.tryPush(meta({ port: start }), p), `push ${n} at ${start}`)
      const got = collect(r2)
      if (got.length === 1 && got[0]!.payload.equals(p) && got[0]!.meta.port === start) ok++
    }
  }
  t.equal(ok, 16)
})

t.test('full ring refuses (counted), never blocks, and recovers after drain', async (t) => {
  const ring = new Ring(Ring.allocate(1024))
  const rec = recordSize(100)
  let pushed = 0
  while (pushed < 100 && ring.tryPush(meta({ socketId: pushed }), bytes(100))) pushed++
  t.equal(pushed, Math.floor(1024 / rec))
  t.notOk(ring.tryPush(meta(), bytes(100)))
  t.notOk(ring.tryPush(meta(), bytes(ring.maxPayload)))
  let st = ring.stats()
  t.equal(st.refused, 3, "the loop's last try and two more")
  t.equal(st.pushed, pushed)
  t.equal(st.used, pushed * rec)
  t.equal(ring.freeBytes(), 1024 - pushed * rec)
  // drain one: room for exactly one more
  t.equal(ring.drain(() => {}, 1), 1)
  t.ok(ring.tryPush(meta({ socketId: 99 }), bytes(100)))
  t.notOk(ring.tryPush(meta(), bytes(100)))
  const ids: number[] = []
  ring.drain((m) => { ids.push(m.socketId) })
  t.same(ids, [...Array.from({ length: pushed - 1 }, (_v, i) => i + 1), 99])
  st = ring.stats()
  t.equal(st.refused, 4)
  t.equal(st.used, 0)
  t.ok(ring.tryPush(meta(), bytes(ring.maxPayload)), 'largest frame fits an empty ring at any offset')
})

t.test('gather write: list of parts is one frame', async (t) => {
  const ring = new Ring(Ring.allocate(4096))
  const parts = [Buffer.from('INVITE sip:a@b SIP/2.0\r\n'), new Uint8Array(0), Buffer.from('Via: x\r\n'), bytes(33)]
  t.ok(ring.tryPush(meta(), parts))
  t.ok(ring.tryPush(meta(), []))
  const got = collect(ring)
  t.same(got[0]!.payload, Buffer.concat(parts))
  t.equal(got[1]!.payload.length, 0)
})

t.test('drain: batch limit, one reused FrameView, Buffer views into the ring', async (t) => {
  const ring = new Ring(Ring.allocate(8192))
  for (let i = 0; i < 10; i++) ring.tryPush(meta({ socketId: i }), bytes(20, i))
  const views = new Set<FrameView>()
  const ids: number[] = []
  t.equal(ring.drain((m, p) => {
    views.add(m)
    ids.push(m.socketId)
    t.ok(Buffer.isBuffer(p))
    t.equal(p.buffer, ring.sab, 'payload is a view into the ring, not a copy')
    t.equal(m.length, p.length)
  }, 4), 4)
  t.equal(ring.drain(() => {}, 0), 0)
  t.equal(ring.drain((m) => { views.add(m); ids.push(m.socketId) }), 6)
  t.equal(views.size, 1)
  t.ok([...views][0] instanceof FrameView)
  t.same(ids, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
  t.equal(ring.drain(() => {}), 0)
  t.equal(ring.stats().drained, 10)
})

t.test('FrameView as meta forwards a frame to another ring with its address bytes', async (t) => {
  const a = new Ring(Ring.allocate(4096))
  const b = new Ring(Ring.allocate(4096))
  const m = meta({ family: 6, address: '2001:db8::42', port: 5062, connId: 9, flags: 3, recvTime: 77 })
  a.tryPush(m, bytes(30))
  a.drain((v, p) => { t.ok(b.tryPush(v, p)) })
  const got = collect(b)
  t.same(got[0]!.meta, m)
  t.same(got[0]!.payload, Buffer.from(bytes(30)))
  // copyAddress gives the raw bytes
  b.tryPush(meta({ address: '192.0.2.33' }), bytes(0))
  const raw = new Uint8Array(16)
  b.drain((v) => v.copyAddress(raw))
  t.same([...raw], [192, 0, 2, 33, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
})

t.test('a throwing callback consumes its frame and does not wedge the ring', async (t) => {
  const ring = new Ring(Ring.allocate(4096))
  for (let i = 0; i < 3; i++) ring.tryPush(meta({ socketId: i }), bytes(8))
  t.throws(() => ring.drain((m) => { if (m.socketId === 1) throw new Error('boom') }), /boom/)
  const rest: number[] = []
  ring.drain((m) => { rest.push(m.socketId) })
  t.same(rest, [2])
  t.equal(ring.stats().drained, 3)
  t.equal(ring.stats().used, 0)
})

t.test('drain inside drain is refused with ERR_RING_REENTRANT_DRAIN', async (t) => {
  const ring = new Ring(Ring.allocate(4096))
  ring.tryPush(meta(), bytes(1))
  ring.tryPush(meta(), bytes(1))
  let inner: unknown
  ring.drain(() => { try { ring.drain(() => {}) } catch (e) { inner = e } }, 1)
  t.match(inner, { code: RingErrorCode.REENTRANT_DRAIN })
  t.equal(ring.drain(() => {}), 1, 'ring still usable')
})

t.test('corrupt record is reported, not looped on', async (t) => {
  const sab = Ring.allocate(4096)
  const ring = new Ring(sab)
  ring.tryPush(meta(), bytes(10))
  new Int32Array(sab)[RING_CONTROL_SIZE >> 2] = 100000 // length field beyond the maximum
  t.throws(() => ring.drain(() => {}), { code: RingErrorCode.CORRUPT })
})

t.test('lazy address: decoded on access, cached per frame and across equal frames', async (t) => {
  const ring = new Ring(Ring.allocate(4096))
  ring.tryPush(meta({ address: '198.51.100.7' }), bytes(1))
  ring.tryPush(meta({ address: '198.51.100.7' }), bytes(1))
  ring.tryPush(meta({ family: 6, address: '198.51.100.7'.length ? '2001:db8::5' : '' }), bytes(1))
  const addrs: string[] = []
  ring.drain((m) => { addrs.push(m.address); t.equal(m.address, addrs[addrs.length - 1]) })
  t.same(addrs, ['198.51.100.7', '198.51.100.7', '2001:db8::5'])
  t.equal(addrs[0], addrs[1])
})

t.test('rewind: a consumer that keeps up sees every frame in the first eighth of the ring', async (t) => {
  // 4 MiB (the default ring_size): 20,000 SIP-sized frames pushed and drained one by one would go
  // round the ring twice; with the rewind only the first 512 KiB (+ one record) is ever written.
  const cap = 4 * 1024 * 1024
  const p = new Ring(Ring.allocate(cap))
  const c = new Ring(p.sab)
  let bad = 0, got = 0, bytesPushed = 0
  for (let i = 0; i < 20_000; i++) {
    const n = 300 + (i * 37) % 700
    const payload = bytes(n, i)
    if (!p.tryPush(meta({ socketId: i }), payload)) { bad++; continue }
    bytesPushed += recordSize(n)
    c.drain((m, b) => { if (m.socketId !== got || !b.equals(bytes(n, got))) bad++; got++ })
  }
  t.equal(bad, 0, 'every frame intact, in order, none refused')
  t.equal(got, 20_000)
  t.ok(bytesPushed > 2 * cap, `the frames add up to more than two laps (${bytesPushed} bytes)`)
  const st = p.stats()
  t.ok(st.reach <= cap / RING_REWIND_DIVISOR + recordSize(1000), `reach ${st.reach} stays within an eighth of ${cap} and a record`)
  t.equal(st.used, 0)

  // the same with the rewind off: the producer goes round the whole ring (what the pages cost before)
  const q = new Ring(Ring.allocate(cap))
  q._rewindAt = Infinity
  for (let i = 0; i < 20_000; i++) { q.tryPush(meta(), bytes(300 + (i * 37) % 700)); q.drain(() => {}) }
  t.ok(q.stats().reach > cap - recordSize(1000), `without the rewind the reach is the capacity (${q.stats().reach})`)
})

t.test('rewind: only an empty ring is rewound; a backlog still uses the whole capacity', async (t) => {
  const cap = 64 * 1024
  const ring = new Ring(Ring.allocate(cap))
  const rec = recordSize(400)
  // go past the rewind point with the consumer keeping up, then stop draining: the backlog grows
  // forward from where the head is and fills the ring as before (nothing is refused early)
  let sent = 0, expect = 0, bad = 0
  const check = (m: FrameView, b: Buffer) => { if (m.socketId !== expect || !b.equals(bytes(400, expect))) bad++; expect++ }
  while (((ring as unknown as { head: number }).head & (cap - 1)) < cap / RING_REWIND_DIVISOR - rec) {
    t.ok(ring.tryPush(meta({ socketId: sent }), bytes(400, sent))); sent++
    ring.drain(check)
  }
  const before = sent
  while (ring.tryPush(meta({ socketId: sent }), bytes(400, sent))) sent++
  t.equal(sent - before, Math.floor(cap / rec), 'a stalled consumer: the whole capacity holds frames')
  t.ok(ring.stats().reach > cap - rec, `the backlog went all the way round (reach ${ring.stats().reach})`)
  ring.drain(check)
  t.equal(bad, 0)
  t.equal(expect, sent)

  // right after a rewind the skipped end is still counted until the consumer reads the marker:
  // the room is then the offset the rewind happened at, at least an eighth of the ring
  const r2 = new Ring(Ring.allocate(cap))
  let n2 = 0
  while (((r2 as unknown as { head: number }).head & (cap - 1)) < cap / RING_REWIND_DIVISOR) { r2.tryPush(meta(), bytes(400)); r2.drain(() => {}); n2++ }
  const at = (r2 as unknown as { head: number }).head & (cap - 1)
  let more = 0
  while (r2.tryPush(meta(), bytes(400))) more++
  t.ok((r2 as unknown as { head: number }).head !== 0, 'pushed')
  t.equal(more, Math.floor(at / rec), `after a rewind at ${at} the stalled consumer has ${at} bytes of room`)
  t.ok(more * rec >= cap / RING_REWIND_DIVISOR - rec, 'at least an eighth of the ring')
  let d = 0
  r2.drain(() => { d++ })
  t.equal(d, more, 'all delivered once the consumer runs')
  t.ok(r2.tryPush(meta(), bytes(400)), 'and the room is back')
  t.ok(n2 > 0)
})

t.test('rewind: random pushes, partial drains and sizes keep every frame intact (several capacities)', async (t) => {
  let seed = 12345
  const rnd = (k: number): number => { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; return (seed >>> 8) % k }
  for (const cap of [256, 1024, 4096, 64 * 1024]) {
    const ring = new Ring(Ring.allocate(cap))
    const sizes: number[] = []
    let seq = 0, expect = 0, bad = 0, rewound = 0
    const check = (m: FrameView, b: Buffer) => { if (m.socketId !== expect || !b.equals(bytes(sizes[expect]!, expect))) bad++; expect++ }
    for (let round = 0; round < 20_000; round++) {
      const n = rnd(4) === 0 ? rnd(ring.maxPayload + 1) : rnd(Math.min(600, ring.maxPayload + 1))
      const h0 = (ring as unknown as { head: number }).head
      const empty = ring.stats().used === 0
      if (ring.tryPush(meta({ socketId: seq }), bytes(n, seq))) {
        sizes.push(n); seq++
        if (empty && (h0 & (cap - 1)) >= cap / RING_REWIND_DIVISOR && recordSize(n) <= (h0 & (cap - 1))) {
          rewound++
          if ((((ring as unknown as { head: number }).head) & (cap - 1)) !== recordSize(n) % cap) bad++
        }
      } else {
        t.ok(ring.stats().used > 0 || n > ring.maxPayload, 'refused only with data waiting')
        ring.drain(check, 1 + rnd(3))
      }
      if (rnd(3) === 0) ring.drain(check, 1 + rnd(4))
    }
    ring.drain(check)
    t.equal(bad, 0, `cap ${cap}: every frame intact and in order, rewinds land at offset 0`)
    t.equal(expect, seq)
    t.ok(rewound > 10, `cap ${cap}: the empty ring was rewound (${rewound} times)`)
    t.ok(ring.stats().reach <= cap)
  }
})
