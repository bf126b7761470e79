-- points_fill.lua: rebuild a user's point cache from MySQL after a miss, unless another
-- request rebuilt it first. The cache layout is described in points_use.lua.
--
-- The gateway read the pending txids of the entry, then in ONE MySQL snapshot the balance row
-- and which of those txids the ledger already holds. Those are part of the MySQL balance, so
-- they stop being pending; the others stay pending.
--
-- The rebuilt cache expires `ttl` seconds from now if nothing of it is pending; with pending
-- changes left it does not expire (PERSIST) until the persister settles them (why in
-- points_use.lua). An entry found present is the answer and is not touched.
--
-- KEYS
--   1  the user's point cache (fg:{p:7}:pts:<user>)
-- ARGV
--   1  the MySQL balance (0 when the user has no row)
--   2  the row's version (0 when there is no row)
--   3  ttl: how long the cache is kept with nothing pending, in seconds
--   4.. txids the ledger holds, of those that were pending
-- Replies
--   {'filled', balance}
--   {'present', balance}   an entry exists already: it is the answer
--   {'stale'}              the snapshot is older than a change the persister already announced
--                          (`floor`): read MySQL again

local key = KEYS[1]
local current = redis.call('HMGET', key, 'balance', 'version', 'floor')
if current[2] then
  return {'present', tonumber(current[1] or '0')}
end
local version, ttl = tonumber(ARGV[2]), tonumber(ARGV[3])
if current[3] and version < tonumber(current[3]) then
  return {'stale'}
end
for i = 4, #ARGV do
  local field = 'tx:' .. ARGV[i]
  local value = redis.call('HGET', key, field)
  if value then
    redis.call('HDEL', key, field)
    redis.call('HINCRBY', key, 'pending', -tonumber(value))
  end
end
local pending = tonumber(redis.call('HGET', key, 'pending') or '0')
local balance = tonumber(ARGV[1]) - pending
redis.call('HSET', key, 'balance', balance, 'version', version, 'pending', pending)
redis.call('HDEL', key, 'floor')
-- balance, version and pending; any other field is a pending change.
if redis.call('HLEN', key) > 3 then
  redis.call('PERSIST', key)
else
  redis.call('EXPIRE', key, ttl)
end
return {'filled', balance}
