-- read_counters.lua: what is left of a sale or coupon policy and how much it has given out,
-- read in one step, so the two always add up (two separate reads taken during a rush can
-- straddle an admission and count it twice or not at all).
--
-- KEYS (both share the owner's hash tag)
--   1 left    the string of units or coupons left (a sale's stock, a policy's remaining)
--   2 state   the owner's state hash
-- ARGV
--   1 field   the counter of the state hash (`admitted`, `issued`)
-- Replies
--   {left, counted}   each nil where Redis does not hold it

return {redis.call('GET', KEYS[1]), redis.call('HGET', KEYS[2], ARGV[1])}
