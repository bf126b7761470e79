-- load_policy.lua: put a coupon policy's state into Redis unless it is already there.
--
-- Used when a manager creates a policy and when the gateway restores policies from MySQL
-- after a Redis restart or failover. Never overwrites live counters (they include claims
-- MySQL has not seen yet).
--
-- KEYS
--   1  policy     hash (fg:{c:7}:policy)
--   2  remaining  string
--   3  holders    hash
-- ARGV
--   1  status   2 starts_ms   3 ends_ms   4 per_user_limit   5 total   6 valid_for_ms (0: fixed)
--   7  expires_ms (0: relative)   8 redeem_until_ms (when the last coupon expires)
--   9  coupons left   10 coupons already issued (persisted)
--   11.. pairs of (user id, coupons already held)
-- Reply
--   1 when loaded, 0 when the policy was already present

if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1],
  'status', ARGV[1], 'starts_ms', ARGV[2], 'ends_ms', ARGV[3], 'per_user_limit', ARGV[4],
  'total', ARGV[5], 'valid_for_ms', ARGV[6], 'expires_ms', ARGV[7],
  'redeem_until_ms', ARGV[8], 'issued', ARGV[10])
redis.call('SET', KEYS[2], ARGV[9], 'NX')
if redis.call('EXISTS', KEYS[3]) == 0 then
  for i = 11, #ARGV, 2 do
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  end
end
return 1
