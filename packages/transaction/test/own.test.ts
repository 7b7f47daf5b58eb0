import t from 'tap'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { ownBytes, ownString } from '../src/own.js'

t.test('ownString: the same characters; a non-latin1 string is returned as it is', async t => {
  const s = 'SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-abcdef0123456789;rport'
  const b = s.slice(s.indexOf('=') + 1, s.indexOf(';rport'))
  t.equal(ownString(b), b)
  t.equal(ownString(''), '')
  t.equal(ownString('z9hG4bK-é-ÿ'), 'z9hG4bK-é-ÿ', 'latin1 characters survive')
  t.equal(ownString('z9hG4bK-€-雪'), 'z9hG4bK-€-雪', 'characters above U+00FF: the input is kept, not a mangled copy')
})

t.test('ownBytes: one store of exactly the bytes, from a buffer or a gather list', async t => {
  const pooled = Buffer.from('INVITE sip:a@example.com SIP/2.0\r\n')
  t.ok(pooled.buffer.byteLength > pooled.length, 'precondition: Buffer.from cuts small buffers from a shared slab')
  const one = ownBytes(pooled)
  t.ok(one.equals(pooled))
  t.equal(one.buffer.byteLength, one.length)
  one[0] = 0x78
  t.equal(pooled[0], 0x49, 'a copy, not a view')
  const list = ownBytes([Buffer.from('ab'), new Uint8Array([0x63]), Buffer.alloc(0), Buffer.from('d')])
  t.equal(list.toString(), 'abcd')
  t.equal(list.buffer.byteLength, 4)
  t.equal(ownBytes([]).length, 0)
})

// V8 keeps a parameter cut out of a header value as a sliced string, which holds the whole value:
// the branch of every server transaction (kept 32 s after its final) held its top Via. Only V8
// itself can tell the representation: the probe prints it with %DebugPrint.
t.test('a server transaction keeps its branch as a string of its own, not a slice of the Via', async t => {
  const probe = fileURLToPath(new URL('./fixtures/branch-probe.mjs', import.meta.url))
  for (const [method, machine, transport] of [['REGISTER', 'non-INVITE', 'udp'], ['INVITE', 'INVITE', 'udp'], ['INVITE', 'INVITE', 'tcp']]) {
    const r = spawnSync(process.execPath, ['--allow-natives-syntax', probe, method!, transport!], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' }, timeout: 60_000 })
    t.equal(r.status, 0, r.stderr)
    t.equal(r.stderr, '', `${method}: same branch, and a retransmission still finds its transaction`)
    const kinds = [...r.stdout.matchAll(/^ - type: (\w+)$/gm)].map(m => m[1])
    t.equal(kinds.length, 2, r.stdout.replace(/\n/g, ' / ').slice(-3000))
    t.equal(kinds[0], 'SLICED_ONE_BYTE_STRING_TYPE', `precondition: the parser hands out the ${method}'s branch as a slice`)
    t.match(kinds[1], /^(SEQ_)?ONE_BYTE_(INTERNALIZED_)?STRING_TYPE$/, `the ${machine} server transaction over ${transport} keeps a flat string`)
  }
})

t.test('no copy where the transaction ends with its request: a non-INVITE over TCP (Timer J = 0)', async t => {
  const probe = fileURLToPath(new URL('./fixtures/branch-probe.mjs', import.meta.url))
  const r = spawnSync(process.execPath, ['--allow-natives-syntax', probe, 'REGISTER', 'tcp'], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' }, timeout: 60_000 })
  t.equal(r.status, 0, r.stderr)
  t.equal(r.stderr, '', 'same branch, and a retransmission still finds its transaction')
  const kinds = [...r.stdout.matchAll(/^ - type: (\w+)$/gm)].map(m => m[1])
  t.same(kinds, ['SLICED_ONE_BYTE_STRING_TYPE', 'SLICED_ONE_BYTE_STRING_TYPE'], 'the parser\'s slice is kept as it is')
})
