// Renders docs/configuration.md from the schema. A test keeps the checked-in file identical;
// regenerate with `pnpm --filter @sipedge/config run docs`.
import { configSchema } from './sections.js'
import { ObjS } from './schema.js'
import type { Schema } from './schema.js'

interface Row { path: string; schema: Schema }

function walk(prefix: string, s: Schema, out: Row[]): void {
  for (const c of s.children()) {
    const path = prefix + c.suffix
    // list items and map values that are mappings are documented through their keys only
    if (c.suffix === '[]' || (c.suffix.startsWith('.<') && c.schema.children().length > 0)) {
      walk(path, c.schema, out)
      continue
    }
    out.push({ path: path.replace(/^\./, ''), schema: c.schema })
    walk(path, c.schema, out)
  }
}

const esc = (s: string): string => s.replace(/\|/g, '\\|')

function entry(r: Row): string {
  const s = r.schema
  const lines = [`### \`${r.path}\``, '']
  lines.push(`- Type: ${esc(s.typeDoc())}${s.isNullable ? ' or null' : ''}`)
  if (s.isRequired) lines.push('- Required')
  else {
    const d = s.showDefault()
    if (d !== undefined) lines.push(`- Default: ${d}`)
  }
  const range = s.rangeDoc()
  if (range) lines.push(`- Allowed: ${esc(range)}`)
  lines.push('')
  if (s.description) lines.push(s.description, '')
  if (s.docNote) lines.push(s.docNote, '')
  return lines.join('\n')
}

const INTRO = `# Configuration reference

<!-- Generated from packages/config/src/sections.ts by \`pnpm --filter @sipedge/config run docs\`. Do not edit by hand: a test checks that this file matches the schema. -->

sipedge reads one YAML file (\`sipedge --config FILE\`; \`sipedge check-config FILE\` only validates it).
Every key is optional unless marked *Required*; missing keys take the default shown.
Unknown keys are errors (with a "did you mean" hint), and so are keys that were renamed (the new
name is given). All problems in a file are reported together as \`FILE:LINE:COL: KEY: message\`.

## Value formats

- **duration**: a number with a unit: \`500ms\`, \`5s\`, \`2m\`, \`1h\`, \`1d\`, or a sum such as \`1h30m\`.
  A bare number is seconds, as in SIP's own Expires headers (\`min_expires: 60\` is one minute).
- **size**: a whole number of bytes (\`65535\`) or a number with a unit: \`B\`, \`KiB\`, \`MiB\`, \`GiB\`
  (powers of 1024) or \`KB\`, \`MB\`, \`GB\` (powers of 1000).
- **listen spec**: \`PROTO:ADDR:PORT\` with PROTO one of \`udp\`, \`tcp\`, \`tls\`, \`ws\`, \`wss\` and ADDR an IPv4
  address or a bracketed IPv6 address (\`tls:[::]:5061\`), or a mapping \`{ proto, address, port, tls, advertise }\`.
- **SIP URI**: \`sip:\` or \`sips:\` URI, e.g. \`sip:10.0.0.5:5060;transport=tcp\`.
- **store URL**: \`lmdb:PATH\` (embedded, persistent), \`redis://[USER:PASS@]HOST[:PORT][/DB]\` or \`rediss://…\`
  (shared by several nodes).
- **One or many**: where the type says "X or list of X", a single value is the same as a one-element list.
- Relative paths are relative to the working directory of the process.

## Example

\`\`\`yaml
workers: 2
listen:
  - udp:127.0.0.1:5060
  - tcp:127.0.0.1:5060
domains: [example.com]
registrar:
  store: lmdb:./var/location
dispatcher:
  sets:
    apps:
      algorithm: hash-callid
      probe: { method: OPTIONS, interval: 5s }
      destinations:
        - sip:127.0.0.2:5070
        - sip:127.0.0.3:5070
routes:
  - match: { method: REGISTER, domain: example.com }
    action: register
  - match: { source: apps }
    action: lookup
  - match: { method: [INVITE, SUBSCRIBE, MESSAGE, OPTIONS, REFER, NOTIFY, INFO] }
    action: { dispatch: apps }
metrics:
  listen: 127.0.0.1:9090
\`\`\`
`

export function renderConfigDocs(): string {
  const root = configSchema as ObjS
  const parts: string[] = [INTRO]
  parts.push('## Renamed keys', '', 'These old names are rejected with a pointer to the new key.', '', '| Old key | Use instead |', '|---|---|')
  const renamed = collectRenamed('', root)
  for (const [from, to] of renamed) parts.push(`| \`${from}\` | \`${to}\` |`)
  parts.push('')
  for (const [key, s] of Object.entries(root.fields)) {
    parts.push(`## \`${key}\``, '')
    if (s.children().length === 0) {
      parts.push(entry({ path: key, schema: s }))
      continue
    }
    if (s instanceof ObjS) {
      if (s.description) parts.push(s.description, '')
    } else parts.push(entry({ path: key, schema: s }))
    const rows: Row[] = []
    walk(key, s, rows)
    for (const r of rows) parts.push(entry(r))
  }
  return parts.join('\n').replace(/\n{3,}/g, '\n\n').trimEnd() + '\n'
}

function collectRenamed(prefix: string, s: Schema): Array<[string, string]> {
  const out: Array<[string, string]> = []
  const o = s as unknown as Partial<ObjS>
  if (Array.isArray(o.renamed)) for (const r of o.renamed) out.push([prefix === '' ? r.key : `${prefix}.${r.key}`, r.use])
  for (const c of s.children()) out.push(...collectRenamed((prefix + c.suffix).replace(/^\./, ''), c.schema))
  return out
}
