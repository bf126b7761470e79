-- points_cache_read.lua: read many users' point caches in one round trip, for the nightly
-- reconciliation (`flashgate-batch reconcile-points`). Read-only.
--
-- KEYS
--   1..n  point cache hashes of ONE bucket (fg:{p:7}:pts:<user>), so the call stays on one
--         Redis Cluster slot
-- ARGV
--   none
-- Reply
--   a flat array, three strings per key in KEYS order: balance, version, pending;
--   all three empty ('') when the key has no cache entry (or no version)

local out = {}
for i = 1, #KEYS do
  local v = redis.call('HMGET', KEYS[i], 'balance', 'version', 'pending')
  if v[2] then
    out[#out + 1] = v[1] or '0'
    out[#out + 1] = v[2]
    out[#out + 1] = v[3] or '0'
  else
    out[#out + 1] = ''
    out[#out + 1] = ''
    out[#out + 1] = ''
  end
end
return out
