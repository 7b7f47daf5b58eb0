// HMAC-SHA256 in JavaScript (src/hmac.ts) against RFC 4231's test vectors and node:crypto: the
// signed Via branch, the dialog and flow tokens and the auth nonces all depend on it giving
// exactly HMAC-SHA256, so a token minted by an older build (or another node of an HA pair) still
// verifies.
import t from 'tap'
import fc from 'fast-check'
import { createHmac } from 'node:crypto'
import { HmacSha256, BranchSigner } from '@sipedge/proxy'

const hex = (s: string): Buffer => Buffer.from(s, 'hex')

t.test('RFC 4231 test cases 1-7', async t => {
  const cases: Array<{ key: Buffer; data: Buffer; mac: string; bytes?: number }> = [
    { key: Buffer.alloc(20, 0x0b), data: Buffer.from('Hi There'), mac: 'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7' },
    { key: Buffer.from('Jefe'), data: Buffer.from('what do ya want for nothing?'), mac: '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843' },
    { key: Buffer.alloc(20, 0xaa), data: Buffer.alloc(50, 0xdd), mac: '773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe' },
    { key: hex('0102030405060708090a0b0c0d0e0f10111213141516171819'), data: Buffer.alloc(50, 0xcd), mac: '82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b' },
    { key: Buffer.alloc(20, 0x0c), data: Buffer.from('Test With Truncation'), mac: 'a3b6167473100ee06e0c796c2955552b', bytes: 16 },
    { key: Buffer.alloc(131, 0xaa), data: Buffer.from('Test Using Larger Than Block-Size Key - Hash Key First'), mac: '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54' },
    { key: Buffer.alloc(131, 0xaa), data: Buffer.from('This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.'), mac: '9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2' },
  ]
  for (const [i, c] of cases.entries()) {
    const h = new HmacSha256(c.key)
    // bytes given as bytes (the data of cases 3 and 4 is not UTF-8 text)
    t.equal(h.macBytes(c.data, '', c.bytes).toString('hex'), c.mac, `case ${i + 1}, macBytes`)
    if (c.data.every(b => b < 0x80)) t.equal(h.mac(c.data.toString('latin1'), c.bytes).toString('hex'), c.mac, `case ${i + 1}, mac`)
  }
})

t.test('equals node:crypto for any key, text and length (block and padding boundaries)', async t => {
  fc.assert(fc.property(
    fc.uint8Array({ minLength: 0, maxLength: 200 }),
    fc.oneof(fc.string({ maxLength: 300 }), fc.string({ unit: 'binary', maxLength: 120 }), fc.string({ minLength: 50, maxLength: 130 })),
    fc.integer({ min: 1, max: 32 }),
    (key, text, bytes) => {
      const want = createHmac('sha256', key).update(text).digest().subarray(0, bytes)
      return new HmacSha256(key).mac(text, bytes).equals(want)
    }), { numRuns: 3000 })
  // every message length from 0 to 200 bytes: the padding lands in one or two blocks
  const h = new HmacSha256(Buffer.from('k'))
  for (let n = 0; n <= 200; n++) {
    const m = 'x'.repeat(n)
    t.ok(h.mac(m).equals(createHmac('sha256', 'k').update(m).digest()), `length ${n}`)
  }
})

t.test('macBytes equals node:crypto over bytes then text; lone surrogates as Buffer encodes them', async t => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 100 }), fc.uint8Array({ maxLength: 100 }), fc.string({ maxLength: 80 }), (key, data, text) => {
    const want = createHmac('sha256', key).update(data).update(text).digest()
    return new HmacSha256(key).macBytes(data, text).equals(want)
  }), { numRuns: 1000 })
  const lone = 'a\ud800b\udfffc'
  t.ok(new HmacSha256(Buffer.from('k')).mac(lone).equals(createHmac('sha256', 'k').update(lone).digest()))
})

t.test('a message longer than the scratch buffer; calls interleaved across keys', async t => {
  const a = new HmacSha256(Buffer.from('key a'))
  const b = new HmacSha256(Buffer.from('key b'))
  const long = 'é'.repeat(5000) + '\u{1F600}'.repeat(700)
  t.ok(a.mac(long).equals(createHmac('sha256', 'key a').update(long).digest()), 'long text (grows the scratch)')
  t.ok(b.mac('short').equals(createHmac('sha256', 'key b').update('short').digest()), 'short after long')
  t.ok(a.mac('short').equals(createHmac('sha256', 'key a').update('short').digest()), 'the other key, same text')
})

t.test('output length outside 1-32 is refused', async t => {
  const h = new HmacSha256(Buffer.from('k'))
  t.throws(() => h.mac('x', 0), RangeError)
  t.throws(() => h.mac('x', 33), RangeError)
  t.throws(() => h.mac('x', 1.5), RangeError)
})

t.test('BranchSigner: a branch MAC is HMAC-SHA256 of id|address|port, 6 bytes, and survives a rekey', async t => {
  const s = new BranchSigner('shared secret')
  const want = createHmac('sha256', 'shared secret').update('z9hG4bKabc|127.0.0.5|5070').digest().subarray(0, 6).toString('base64url')
  t.equal(s.sign('z9hG4bKabc', '127.0.0.5', 5070), want)
  t.ok(s.verify('z9hG4bKabc', '127.0.0.5', 5070, want))
  t.notOk(s.verify('z9hG4bKabc', '127.0.0.5', 5071, want), 'another port')
  s.rekey('new secret')
  t.ok(s.verify('z9hG4bKabc', '127.0.0.5', 5070, want), 'the previous key still verifies')
  t.not(s.sign('z9hG4bKabc', '127.0.0.5', 5070), want, 'the new key signs')
})
