// Loading feature modules: the declarations are checked once at start (unique names, known
// configuration sections, dependencies present and enabled, no cycle, one module per route
// action), ordered so that a module is created after everything it requires, and created with
// the stores the host opened for them. Errors carry a stable code and name every module involved.
import type { FrozenConfig } from '@sipedge/config'
import { createProxy, type Proxy, type ProxyOptions } from './core.js'
import type { CoreApi, LoadedModule, ModuleContext, ModuleDeclaration, ModuleInstance } from './module.js'

/** Stable codes of ModuleError (docs/errors.md "proxy (module loading)"). */
export const MODULE_ERROR_CODES = [
  'ERR_MODULE_DUPLICATE', 'ERR_MODULE_UNKNOWN_DEPENDENCY', 'ERR_MODULE_MISSING_DEPENDENCY', 'ERR_MODULE_CYCLE',
  'ERR_MODULE_CONFIG_SECTION', 'ERR_MODULE_ACTION_CONFLICT', 'ERR_MODULE_ACTION_MISSING', 'ERR_MODULE_ACTIONS_UNDECLARED',
] as const
export type ModuleErrorCode = typeof MODULE_ERROR_CODES[number]

export class ModuleError extends Error {
  override readonly name = 'ModuleError'
  constructor(readonly code: ModuleErrorCode, message: string) {
    super(message)
  }
}

/** Route action types the core itself implements. */
export const CORE_ACTIONS: ReadonlySet<string> = new Set(['forward', 'reject'])


/**
 * Checks the declarations against the configuration and returns the enabled ones in creation
 * order (dependencies first; otherwise the order given). Throws ModuleError.
 */
export function planModules(declarations: readonly ModuleDeclaration[], config: FrozenConfig): ModuleDeclaration[] {
  const byName = new Map<string, ModuleDeclaration>()
  for (const d of declarations) {
    if (byName.has(d.name)) throw new ModuleError('ERR_MODULE_DUPLICATE', `two modules are named "${d.name}"`)
    byName.set(d.name, d)
  }
  const cfg = config as unknown as Record<string, unknown>
  for (const d of declarations) {
    if (d.configSection !== null && !(d.configSection in cfg)) {
      throw new ModuleError('ERR_MODULE_CONFIG_SECTION', `module "${d.name}" reads configuration section "${d.configSection}", which the schema does not have`)
    }
    for (const dep of [...d.requires, ...d.uses]) {
      if (!byName.has(dep)) throw new ModuleError('ERR_MODULE_UNKNOWN_DEPENDENCY', `module "${d.name}" depends on module "${dep}", which does not exist`)
    }
  }
  const enabled = declarations.filter(d => d.enabled(config))
  const on = new Set(enabled.map(d => d.name))
  for (const d of enabled) {
    for (const dep of d.requires) {
      if (!on.has(dep)) {
        throw new ModuleError('ERR_MODULE_MISSING_DEPENDENCY', `module "${d.name}" requires module "${dep}", which this configuration does not enable`)
      }
    }
  }
  // One module per action type; every action the routes use has an implementation.
  const actionOwner = new Map<string, string>()
  for (const d of enabled) {
    for (const a of d.actions) {
      const prev = actionOwner.get(a) ?? (CORE_ACTIONS.has(a) ? 'core' : undefined)
      if (prev !== undefined) throw new ModuleError('ERR_MODULE_ACTION_CONFLICT', `route action "${a}" is implemented by both "${prev}" and "${d.name}"`)
      actionOwner.set(a, d.name)
    }
  }
  for (const r of config.routes) {
    const type = r.action.type
    if (CORE_ACTIONS.has(type) || actionOwner.has(type)) continue
    const owner = declarations.find(d => d.actions.includes(type))
    throw new ModuleError('ERR_MODULE_ACTION_MISSING', owner === undefined
      ? `route ${r.name ?? '#' + r.index} uses action "${type}", which no module implements`
      : `route ${r.name ?? '#' + r.index} uses action "${type}" of module "${owner.name}", which this configuration does not enable`)
  }
  // Dependencies first (depth-first, cycle check); `uses` orders too when both are enabled.
  const order: ModuleDeclaration[] = []
  const state = new Map<string, 1 | 2>()
  const visit = (d: ModuleDeclaration, path: string[]): void => {
    const s = state.get(d.name)
    if (s === 2) return
    if (s === 1) throw new ModuleError('ERR_MODULE_CYCLE', `module dependency cycle: ${[...path, d.name].join(' -> ')}`)
    state.set(d.name, 1)
    for (const dep of [...d.requires, ...d.uses]) if (on.has(dep)) visit(byName.get(dep)!, [...path, d.name])
    state.set(d.name, 2)
    order.push(d)
  }
  for (const d of enabled) visit(d, [])
  return order
}

export interface CreateModulesOptions<Stores> {
  core: CoreApi
  config: FrozenConfig
  /** Opens (or returns the already open) stores behind a URL. */
  openStores?(url: string): Promise<Stores>
  /** An optional store failed to open (the module runs without it). */
  onStoreError?(module: string, url: string, err: unknown): void
}

/** Creates the planned modules in order; required stores are opened first. */
export async function createModules<Stores>(planned: readonly ModuleDeclaration[], o: CreateModulesOptions<Stores>): Promise<LoadedModule[]> {
  const loaded: LoadedModule[] = []
  const byName = new Map<string, ModuleInstance>()
  for (let slot = 0; slot < planned.length; slot++) {
    const d = planned[slot]!
    const want = d.store?.(o.config) ?? null
    let stores: Stores | null = null
    if (want !== null && want.required) {
      if (o.openStores === undefined) throw new ModuleError('ERR_MODULE_MISSING_DEPENDENCY', `module "${d.name}" needs a store (${want.url}) and the host opens none`)
      stores = await o.openStores(want.url)
    }
    const ctx: ModuleContext<Stores> = {
      config: o.config,
      core: o.core,
      slot,
      stores,
      module: <T extends ModuleInstance>(name: string): T | undefined => {
        if (!d.requires.includes(name) && !d.uses.includes(name)) {
          throw new ModuleError('ERR_MODULE_UNKNOWN_DEPENDENCY', `module "${d.name}" asked for module "${name}" without declaring it`)
        }
        return byName.get(name) as T | undefined
      },
    }
    const instance = await (d as ModuleDeclaration<ModuleInstance, Stores>).create(ctx)
    const provided = Object.keys(instance.actions ?? {})
    if (provided.length !== d.actions.length || provided.some(a => !d.actions.includes(a))) {
      throw new ModuleError('ERR_MODULE_ACTIONS_UNDECLARED', `module "${d.name}" declares actions [${d.actions.join(', ')}] but provides [${provided.join(', ')}]`)
    }
    byName.set(d.name, instance)
    loaded.push({ name: d.name, declaration: d, instance, slot })
    if (want !== null && !want.required && o.openStores !== undefined && instance.storeReady !== undefined) {
      // Opened in the background: the module works without it meanwhile (e.g. the dialog mirror).
      o.openStores(want.url).then(s => instance.storeReady!(s), (err: unknown) => o.onStoreError?.(d.name, want.url, err))
    }
  }
  return loaded
}

/**
 * What every host does: check the declarations, build the core, create the enabled modules with
 * their stores and install them. Resolves with the running core.
 */
export async function startProxy<Stores>(opts: ProxyOptions, declarations: readonly ModuleDeclaration[], o: Omit<CreateModulesOptions<Stores>, 'core' | 'config'> = {}): Promise<Proxy> {
  const planned = planModules(declarations, opts.config)
  const core = createProxy(opts)
  try {
    core.install(await createModules(planned, { ...o, core, config: opts.config }))
  } catch (err) {
    core.layer.close()
    throw err
  }
  return core
}
