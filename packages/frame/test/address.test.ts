// The frame header's address codec: 16 bytes in network order, libuv's text form on the way back.
import t from 'tap'
import { encodeAddress, decodeAddress } from '@sipedge/frame'

function roundTrip(family: 4 | 6, address: string): string | null {
  const out = new Uint8Array(20).fill(0xee)
  if (!encodeAddress(family, address, out, 2)) return null
  t.equal(out[0], 0xee, 'nothing written before the offset')
  t.equal(out[18], 0xee, 'nothing written past 16 bytes')
  return decodeAddress(family, out, 2)
}

t.test('IPv4: network order in the first 4 bytes, the rest zero', async t => {
  const out = new Uint8Array(16).fill(0xff)
  t.equal(encodeAddress(4, '192.0.2.33', out, 0), true)
  t.same([...out], [192, 0, 2, 33, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
  t.equal(decodeAddress(4, out, 0), '192.0.2.33')
  t.equal(roundTrip(4, ''), '0.0.0.0', "'' is the unspecified address")
  t.equal(roundTrip(4, '010.001.0.9'), '10.1.0.9')
  t.equal(roundTrip(4, '255.255.255.255'), '255.255.255.255')
})

t.test('IPv6: all 16 bytes; text as libuv prints it', async t => {
  const out = new Uint8Array(16)
  t.equal(encodeAddress(6, '2001:db8::1', out, 0), true)
  t.same([...out], [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
  const cases: Array<[string, string]> = [
    ['2001:DB8::0001', '2001:db8::1'],
    ['2001:db8:0:0:0:0:0:1', '2001:db8::1'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['fe80::1%eth0', 'fe80::1'],
    ['::ffff:0a00:0001', '::ffff:10.0.0.1'],
    ['::1.2.3.4', '::1.2.3.4'],
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3'],
    ['1:0:0:2:0:0:3:4', '1::2:0:0:3:4'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    ['1::', '1::'],
    ['', '::'],
  ]
  for (const [input, text] of cases) t.equal(roundTrip(6, input), text, input)
})

t.test('what is not a literal of the family: false', async t => {
  const bad: Array<[number, string]> = [
    [4, '1.2.3'], [4, '1.2.3.4.5'], [4, '256.1.1.1'], [4, '1..2.3'], [4, '1.2.3.4 '], [4, 'a.b.c.d'],
    [4, '::1'], [6, '1.2.3.4'], [6, ':::'], [6, '1::2::3'], [6, '1:2:3:4:5:6:7:8:9'], [6, '12345::'],
    [6, '1:2:3:4:5:6:7'], [6, 'g::1'], [6, '1:'], [6, ':1'], [6, '::1.2.3'], [5, '1.2.3.4'], [0, ''],
  ]
  for (const [family, address] of bad) t.equal(encodeAddress(family, address, new Uint8Array(16), 0), false, `${family} ${address}`)
  // the one-entry IPv6 cache never hands out a stale parse after a failure
  t.equal(roundTrip(6, '2001:db8::7'), '2001:db8::7')
  t.equal(encodeAddress(6, '2001:db8::7::', new Uint8Array(16), 0), false)
  t.equal(roundTrip(6, '2001:db8::7'), '2001:db8::7')
  t.equal(decodeAddress(5, new Uint8Array(16), 0), '', 'unknown family decodes to the empty string')
})
