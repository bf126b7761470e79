-- points_cache_fix.lua: repair one user's point cache after the reconciliation found it wrong
-- (or repaired the balance row under it), only if nothing moved since the check. An absolute,
-- conditional set: running it twice, or after the gateway updated the entry, changes nothing.
-- The entry's TTL is left as it is: the set changes none of its pending changes, so whether it
-- may expire (only with none pending, see points_use.lua) is unchanged.
--
-- KEYS
--   1  the user's point cache hash (fg:{p:7}:pts:<user>)
-- ARGV
--   1  the version the entry must still have (the balance row's version that was checked)
--   2  the correct MySQL balance
--   3  the balance row's version now (the version the repaired entry reflects)
-- Reply
--    2  entry deleted (nothing pending: the gateway rebuilds it from MySQL on the next read)
--    1  entry set: balance = ARGV[2] - pending, version = ARGV[3]
--    0  no entry: nothing to repair
--   -1  the entry's version is no longer ARGV[1]: an update is in flight, left alone

local version = redis.call('HGET', KEYS[1], 'version')
if not version then
  return 0
end
if version ~= ARGV[1] then
  return -1
end
local pending = tonumber(redis.call('HGET', KEYS[1], 'pending') or '0') or 0
-- balance, version and pending only: nothing else (pending changes, a floor) to keep.
if pending == 0 and redis.call('HLEN', KEYS[1]) <= 3 then
  redis.call('DEL', KEYS[1])
  return 2
end
redis.call('HSET', KEYS[1], 'balance', tonumber(ARGV[2]) - pending, 'version', ARGV[3])
return 1
