// The auth module (docs/registrar.md "Digest authentication"): digest authentication for the
// domains under `auth.domains`. This file is the module's door: other modules import only from here.
export { parseDigest, digestResponse, challenge, ha1Of, hashHex, sameDigest, normalizeAlgorithm } from './digest.js'
export type { DigestAlgorithm, DigestCredentials } from './digest.js'
export { NonceCodec, NonceCounts } from './nonce.js'
export type { NonceCheck } from './nonce.js'
export { loadUsersFile, FileUsers, StoreUsers, AuthConfigError, isStoreSource } from './users.js'
export type { UserCredential, UserSource } from './users.js'

export { DigestAuth, RealmAuth, AuthCounters, createAuth } from './digest-auth.js'
export { AuthThrottle, MemoryCounters } from './throttle.js'
export type { AuthBan, ThrottleOptions } from './throttle.js'
export type { AuthKind, AuthResult, AuthOptions } from './digest-auth.js'
export { AuthModule, authModule, trustedSources } from './module.js'
