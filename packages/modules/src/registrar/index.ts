// The registrar module (docs/registrar.md): registrar and location service behind the route
// actions `register` and `lookup`. This file is the module's door.
import { LocationRegistrar, type RegistrarOptions } from './registrar.js'

export { LocationRegistrar, RegistrarCounters, isLookupFailure } from './registrar.js'
export type { RegistrarOptions, RegistrarStores, LookupFailure } from './registrar.js'
export { aorOf, normalizeContact, parseDeltaSeconds, parseQ, contactValue } from './contact.js'
export { RegistrarModule, registrarModule, usesLocation, hopsOf } from './module.js'

/** A registrar over stores the caller opened and closes (tests, benchmarks). */
export function createRegistrar(opts: RegistrarOptions): LocationRegistrar {
  return new LocationRegistrar(opts)
}
