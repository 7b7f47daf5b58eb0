import t from 'tap'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { configSchema, renderConfigDocs } from '@sipedge/config'

const docsPath = fileURLToPath(new URL('../../../docs/configuration.md', import.meta.url))

t.test('docs/configuration.md is generated from the schema', async t => {
  const onDisk = readFileSync(docsPath, 'utf8')
  t.ok(onDisk === renderConfigDocs(), 'docs/configuration.md is out of date: run `pnpm --filter @sipedge/config run docs`')
})

t.test('every key has a description', async t => {
  const docs = renderConfigDocs()
  const missing: string[] = []
  const walk = (prefix: string, s: typeof configSchema): void => {
    for (const c of s.children()) {
      const p = (prefix + c.suffix).replace(/^\./, '')
      if (c.suffix !== '[]' && !c.suffix.startsWith('.<') && c.schema.description === '') missing.push(p)
      walk(p, c.schema as typeof configSchema)
    }
  }
  walk('', configSchema)
  t.same(missing, [])
  for (const key of ['workers', 'listen', 'limits.ring_size', 'timers.timer_b', 'dispatcher.sets.<name>.algorithm', 'routes[].action.reject.code', 'routes[].match.user_prefix', 'pike.domains.<domain>.max_requests', 'logging.rotate.size'])
    t.match(docs, `### \`${key}\``, key)
})
