// Helpers shared by the test suites of several packages (a devDependency only: no production
// source may import this package; packages/tests/test/import-rules.test.ts checks it).
export { startRedis, redisInstalled, DEFAULT_REDIS_PORTS } from './redis-server.js'
export type { RedisServer, RedisOptions, Teardown } from './redis-server.js'
