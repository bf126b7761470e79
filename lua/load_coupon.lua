-- load_coupon.lua: put one persisted coupon back into Redis unless Redis already has it.
--
-- Redeem and cancel read a coupon from Redis; when Redis lost it (restart without data), the
-- gateway reads the coupon from MySQL and loads it with this script, then retries once. An
-- existing entry is never overwritten: it may hold changes MySQL has not seen yet.
--
-- KEYS
--   1  coupon  hash (fg:{c:7}:cpn:<coupon id>)
-- ARGV
--   1 user   2 status   3 expires_ms   4 seq   5 order_id   6 discount   7 issued_ms
-- Reply
--   1 when loaded, 0 when already present

if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'user', ARGV[1], 'status', ARGV[2], 'expires_ms', ARGV[3],
  'seq', ARGV[4], 'order_id', ARGV[5], 'discount', ARGV[6], 'issued_ms', ARGV[7])
return 1
