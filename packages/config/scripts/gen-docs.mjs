#!/usr/bin/env node
// Regenerates docs/configuration.md from the schema (build first: `pnpm run docs` does).
import { writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { renderConfigDocs } from '@sipedge/config'

const out = fileURLToPath(new URL('../../../docs/configuration.md', import.meta.url))
writeFileSync(out, renderConfigDocs())
console.log(`wrote ${out}`)
