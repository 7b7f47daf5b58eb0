// Keeps docs/errors.md (section "## sip") in sync with ErrorCodes, and checks the error shape.
import t from 'tap'
import fs from 'node:fs'
import { ErrorCodes, SipParseError, isSipParseError, tryParseMessage } from '@sipedge/sip'

t.test('docs/errors.md lists every ERR_SIP_* code', async t => {
  const doc = fs.readFileSync(new URL('../../../docs/errors.md', import.meta.url), 'utf8')
  const start = doc.indexOf('## sip')
  t.ok(start >= 0, 'has a sip section')
  const rest = doc.slice(start + 6)
  const next = rest.search(/\n## /)
  const section = next < 0 ? rest : rest.slice(0, next)
  const documented = new Set(section.match(/ERR_SIP_[A-Z_]+/g) ?? [])
  for (const code of Object.keys(ErrorCodes)) t.ok(documented.has(code), code + ' documented')
  for (const code of documented) t.ok(code in ErrorCodes, code + ' exists')
})

t.test('error shape survives a thread hop as a plain object', async t => {
  const e = tryParseMessage(Buffer.from('INVITE sip:a@b SIP/7.0\r\n\r\n'))
  t.ok(isSipParseError(e))
  const plain = structuredClone((e as SipParseError).toJSON())
  const back = SipParseError.from(plain)
  t.equal(back.code, 'ERR_SIP_BAD_VERSION'); t.equal(back.status, 505); t.equal(back.reason, 'Version Not Supported')
  t.ok(back instanceof Error)
})
