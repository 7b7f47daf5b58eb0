// The Redis layout, the Lua scripts every multi-key change runs in, and the typed client
// that has them (registered by RedisBackend).
import type { Redis } from 'ioredis'

// Layout (P = key prefix, default 'sipedge:'); single Redis instance (scripts touch keys they
// compute, so Redis Cluster is not supported):
//   P loc:b:<aor>   hash d = msgpack bindings, v = write token (CAS), n = binding count; PEXPIREAT last expiry + grace
//   P loc:exp       zset aor -> earliest expiry of the AOR   (the sweep reads its head only)
//   P loc:idx       zset aor, all scores 0                    (ZRANGEBYLEX paging for the admin API)
//   P loc:stats     hash aors, bindings
//   P dlg:d:<id>    hash d = msgpack dialog, s = set, u = destination, a = counted (1/0), e = expiresAt, l = lastActivity
//   P dlg:exp       zset id -> expiresAt
//   P dlg:cnt       hash n, s:<set>, d:<destination>
//   P ban:k:<key>   string msgpack ban; PEXPIREAT until + grace
//   P ban:exp       zset key -> until
//   P cred:<realm>  hash user -> msgpack credential
//   P ctr:<key>     hash n = value, e = window end (epoch ms); PEXPIREAT e + min(grace, 60 s)
// Every multi-key change runs in one Lua script, so it is atomic; a location update is an
// optimistic read / compare-and-set (a random write token in field v) retried on conflict.

export const LOC_CAS = `
local cur = redis.call('HGET', KEYS[1], 'v') or ''
if cur ~= ARGV[2] then return -1 end
local oldn = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
local existed = redis.call('ZSCORE', KEYS[3], ARGV[1])
local n = tonumber(ARGV[4])
if n == 0 then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  if existed then redis.call('HINCRBY', KEYS[4], 'aors', -1) end
else
  redis.call('HSET', KEYS[1], 'd', ARGV[3], 'v', ARGV[7], 'n', n)
  redis.call('PEXPIREAT', KEYS[1], ARGV[6])
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
  redis.call('ZADD', KEYS[3], 0, ARGV[1])
  if not existed then redis.call('HINCRBY', KEYS[4], 'aors', 1) end
end
if n ~= oldn then redis.call('HINCRBY', KEYS[4], 'bindings', n - oldn) end
return 1
`

export const DLG_COMMON = `
local function add(field, delta)
  local n = redis.call('HINCRBY', KEYS[3], field, delta)
  if n <= 0 then redis.call('HDEL', KEYS[3], field) end
end
`

// KEYS: dialog, exp, cnt  ARGV: id, data, set, dest, active, expiresAt, pexpireat, lastActivity
export const DLG_PUT = DLG_COMMON + `
local old = redis.call('HMGET', KEYS[1], 's', 'u', 'a')
if old[3] == '1' then add('s:' .. old[1], -1); add('d:' .. old[2], -1) end
if not old[3] then add('n', 1) end
redis.call('HSET', KEYS[1], 'd', ARGV[2], 's', ARGV[3], 'u', ARGV[4], 'a', ARGV[5], 'e', ARGV[6], 'l', ARGV[8])
redis.call('PEXPIREAT', KEYS[1], ARGV[7])
redis.call('ZADD', KEYS[2], ARGV[6], ARGV[1])
if ARGV[5] == '1' then add('s:' .. ARGV[3], 1); add('d:' .. ARGV[4], 1) end
return 1
`

// KEYS: dialog, exp, cnt  ARGV: id
export const DLG_DEL = DLG_COMMON + `
local old = redis.call('HMGET', KEYS[1], 's', 'u', 'a')
redis.call('ZREM', KEYS[2], ARGV[1])
if not old[3] then return 0 end
if old[3] == '1' then add('s:' .. old[1], -1); add('d:' .. old[2], -1) end
add('n', -1)
redis.call('DEL', KEYS[1])
return 1
`

// KEYS: dialog, exp  ARGV: id, lastActivity, expiresAt or '', now, grace
export const DLG_TOUCH = `
local e = redis.call('HGET', KEYS[1], 'e')
if not e or tonumber(e) <= tonumber(ARGV[4]) then return 0 end
local ne = e
if ARGV[3] ~= '' then ne = ARGV[3] end
redis.call('HSET', KEYS[1], 'l', ARGV[2], 'e', ne)
redis.call('ZADD', KEYS[2], ne, ARGV[1])
redis.call('PEXPIREAT', KEYS[1], tonumber(ne) + tonumber(ARGV[5]))
return 1
`

// KEYS: exp, (unused), cnt  ARGV: now, max, key prefix  -> flat [id, d, e, l, ...]
export const DLG_SWEEP = DLG_COMMON + `
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  local k = ARGV[3] .. id
  local h = redis.call('HMGET', k, 'd', 's', 'u', 'a', 'e', 'l')
  redis.call('ZREM', KEYS[1], id)
  if h[4] then
    if h[4] == '1' then add('s:' .. h[2], -1); add('d:' .. h[3], -1) end
    add('n', -1)
    redis.call('DEL', k)
    out[#out + 1] = id
    out[#out + 1] = h[1]
    out[#out + 1] = h[5]
    out[#out + 1] = h[6]
  end
end
return out
`

// KEYS: exp  ARGV: now, max, key prefix  -> flat [key, data, ...]
export const BAN_SWEEP = `
local keys = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, key in ipairs(keys) do
  local k = ARGV[3] .. key
  local d = redis.call('GET', k)
  redis.call('ZREM', KEYS[1], key)
  redis.call('DEL', k)
  out[#out + 1] = key
  out[#out + 1] = d or ''
end
return out
`

// KEYS: counter  ARGV: now, window, by, pexpire margin  -> the new value
export const CTR_INCR = `
local now = tonumber(ARGV[1])
local e = tonumber(redis.call('HGET', KEYS[1], 'e') or '0')
if e > now then return redis.call('HINCRBY', KEYS[1], 'n', ARGV[3]) end
e = now + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'n', ARGV[3], 'e', e)
redis.call('PEXPIREAT', KEYS[1], e + tonumber(ARGV[4]))
return tonumber(ARGV[3])
`

export type Args = Array<string | number | Buffer>
export interface Scripts {
  sipedgeLocCas(...args: Args): Promise<number>
  sipedgeDlgPut(...args: Args): Promise<number>
  sipedgeDlgDel(...args: Args): Promise<number>
  sipedgeDlgTouch(...args: Args): Promise<number>
  sipedgeDlgSweepBuffer(...args: Args): Promise<Buffer[]>
  sipedgeBanSweepBuffer(...args: Args): Promise<Buffer[]>
  sipedgeCtrIncr(...args: Args): Promise<number>
}
export type Client = Redis & Scripts

/** Runs fn on the client, mapping an outage to ERR_STORE_UNAVAILABLE (RedisBackend.call). */
export type Call = <T>(fn: (c: Client) => Promise<T>) => Promise<T>
