// Every feature module's declaration is consistent with the rest of the product: its metric
// names are documented series, its configuration section exists, and the default configuration
// loads with every module (the same check the worker host runs at start).
import t from 'tap'
import { readFileSync } from 'node:fs'
import { defaultConfig, type FrozenConfig } from '@sipedge/config'
import { planModules } from '@sipedge/proxy'
import { MODULES } from '@sipedge/modules'

const metricsDoc = readFileSync(new URL('../../../docs/metrics.md', import.meta.url), 'utf8')

t.test('declared metrics are documented series', async t => {
  for (const m of MODULES) {
    for (const name of m.metrics) t.match(metricsDoc, new RegExp('\\b' + name + '\\b'), `${m.name}: ${name} in docs/metrics.md`)
  }
})

t.test('configuration sections exist and the default configuration plans', async t => {
  const config = defaultConfig() as FrozenConfig
  for (const m of MODULES) if (m.configSection !== null) t.ok(m.configSection in config, `${m.name}: section ${m.configSection}`)
  const planned = planModules(MODULES, config).map(d => d.name)
  t.ok(planned.indexOf('dispatcher') < planned.indexOf('dialog'), 'dialog after the dispatcher it requires')
})
