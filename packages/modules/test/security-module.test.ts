// The security module's byte-level User-Agent test (security/module.ts).
import t from 'tap'
import { PatternSet, compilePatterns, containsFolded } from '../dist/index.js'

t.test('containsFolded: ASCII case-insensitive substring on bytes, bounded by the range', async t => {
  const [p] = compilePatterns(['Friendly-Scanner'])
  const b = Buffer.from('User-Agent: xxFRIENDLY-scannerxx\r\n')
  t.ok(containsFolded(b, 12, b.length - 2, p!))
  t.notOk(containsFolded(b, 12, 20, p!), 'the match must lie inside [start, end)')
  t.notOk(containsFolded(Buffer.from('friendly-scanne'), 0, 15, p!), 'a prefix is not a match')
  t.ok(containsFolded(Buffer.from('friendly-scanner'), 0, 16, p!), 'exactly at the end')
  const [u] = compilePatterns(['ÄB'])
  t.ok(containsFolded(Buffer.from('xÄb'), 0, 4, u!), 'ASCII letters fold, other bytes compare as they are')
  t.notOk(containsFolded(Buffer.from('xäb'), 0, 4, u!))
  t.same(compilePatterns(['', 'a']).length, 1, 'empty patterns are skipped')
})

t.test('PatternSet: one pass, any of the patterns, same answers as containsFolded', async t => {
  const list = ['friendly-scanner', 'sipvicious', 'sipcli', 'VaxSIPUserAgent', 'pplsip', 'sundayddr', 'iWar', 'sip-scan', 'sip']
  const set = new PatternSet(list)
  const pats = compilePatterns(list)
  const samples = ['Linphone/5.2 (belle-sip/5.2)', 'friendly-scanner', 'xx SIPCLI/v1', 'iwa', 'IWAR', 'pplsi', 'a vaxsipuseragent b', 'sundayddr', 'sip-sca', '']
  for (const s of samples) {
    const b = Buffer.from('UA: ' + s + '\r\n')
    const want = pats.some(p => containsFolded(b, 4, 4 + Buffer.byteLength(s), p))
    t.equal(set.matches(b, 4, 4 + Buffer.byteLength(s)), want, JSON.stringify(s))
  }
  t.equal(new PatternSet([]).size, 0)
})
