-- points_settle.lua: after the persister committed point changes to MySQL, bring the users'
-- caches in step. The cache layout is described in points_use.lua.
--
-- For each user, the commit moved the balance row from version `from` to `to` (the same when
-- only refused changes were recorded) and left `balance`; `txids` are the Redis-made changes
-- it settled (written, found already written, or refused): they stop being pending.
--   - entry at `to` or later: it already counts them in its MySQL part, so their pending
--     amounts were counted twice and come back to `balance`;
--   - entry at `from`: it takes the new balance and version (balance = MySQL - pending);
--   - no entry, or an entry older than `from` (another consumer's change is still on its way):
--     the entry is dropped, and `floor` keeps a rebuild from starting before `to`. The gateway
--     rebuilds it from MySQL on the next read.
-- Every branch is safe to run twice and in any order with other commits' calls.
--
-- Expiry: an entry kept (`current`, `applied`) with no pending change left expires `cache_ttl`
-- from now (the user's next read after that rebuilds it from MySQL); one with pending changes
-- left does not expire until they are settled too. A cache never expires under a pending
-- change (why in points_use.lua), and this is the write that lets it go once nothing is.
--
-- KEYS
--   1..n  point caches of ONE bucket (one Redis Cluster slot)
-- ARGV
--   1     how long a left-over `floor` is kept, in milliseconds
--   2     cache_ttl: how long a cache with nothing pending is kept, in milliseconds
--   then for each key, in KEYS order: from, to, balance, count, count txids
-- Reply
--   one code per key: 'current' | 'applied' | 'dropped' | 'absent'

local floor_ttl, cache_ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local pos = 3
local out = {}

-- Fields of `key` that are pending changes (`tx:<txid>`): all but the four named ones.
local function pending_changes(key)
  local named = 0
  for _, field in ipairs({'balance', 'version', 'pending', 'floor'}) do
    named = named + redis.call('HEXISTS', key, field)
  end
  return redis.call('HLEN', key) - named
end

-- A kept entry: it may expire once nothing of it is pending, and not before.
local function keep(key)
  if pending_changes(key) > 0 then
    redis.call('PERSIST', key)
  else
    redis.call('PEXPIRE', key, cache_ttl)
  end
end
for i = 1, #KEYS do
  local key = KEYS[i]
  local from, to, db = tonumber(ARGV[pos]), tonumber(ARGV[pos + 1]), tonumber(ARGV[pos + 2])
  local count = tonumber(ARGV[pos + 3])
  pos = pos + 4
  local released = 0
  for _ = 1, count do
    local field = 'tx:' .. ARGV[pos]
    pos = pos + 1
    local value = redis.call('HGET', key, field)
    if value then
      redis.call('HDEL', key, field)
      released = released + tonumber(value)
    end
  end
  if released ~= 0 then
    redis.call('HINCRBY', key, 'pending', -released)
  end
  local version = redis.call('HGET', key, 'version')
  if version and tonumber(version) >= to then
    if released ~= 0 then
      redis.call('HINCRBY', key, 'balance', released)
    end
    keep(key)
    out[i] = 'current'
  elseif version and tonumber(version) == from then
    local pending = tonumber(redis.call('HGET', key, 'pending') or '0')
    redis.call('HSET', key, 'balance', db - pending, 'version', to)
    keep(key)
    out[i] = 'applied'
  else
    if version then
      redis.call('HDEL', key, 'balance', 'version')
      out[i] = 'dropped'
    else
      out[i] = 'absent'
    end
    if to > tonumber(redis.call('HGET', key, 'floor') or '0') then
      redis.call('HSET', key, 'floor', to)
    end
    -- Only `floor` (and a zero `pending`) left: nothing in flight, let it go after a while.
    if redis.call('HLEN', key) <= 2 then
      redis.call('PEXPIRE', key, floor_ttl)
    end
  end
end
return out
