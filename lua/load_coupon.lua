-- load_coupon.lua: put one persisted coupon back into Redis unless Redis already has it.
--
-- Redeem and cancel read a coupon from Redis; when Redis lost it (restart without data), the
-- gateway reads the coupon from MySQL and loads it with this script, then retries once. An
-- existing entry is never overwritten: it may hold changes MySQL has not seen yet.
--
-- The loaded hash expires a minute after the coupon (PEXPIREAT, Redis's clock), like a
-- claimed one: it is only needed while the coupon can change. One loaded after its expiry
-- (its policy may have been cleaned up, `lua/policy_cleanup.lua`) is kept a minute from now,
-- long enough for the retry that follows to answer `expired`, and then goes: a late redeem
-- never leaves a key without an owner.
--
-- KEYS
--   1  coupon  hash (fg:{c:7}:cpn:<coupon id>)
-- ARGV
--   1 user   2 status   3 expires_ms   4 seq   5 order_id   6 discount   7 issued_ms
-- Reply
--   1 when loaded, 0 when already present

-- How long a loaded coupon is kept past its expiry (or past now, if later): at least the
-- retry that follows the load.
local AFTER_EXPIRY_MS = 60000

if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'user', ARGV[1], 'status', ARGV[2], 'expires_ms', ARGV[3],
  'seq', ARGV[4], 'order_id', ARGV[5], 'discount', ARGV[6], 'issued_ms', ARGV[7])
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('PEXPIREAT', KEYS[1], math.max(tonumber(ARGV[3]), now_ms) + AFTER_EXPIRY_MS)
return 1
