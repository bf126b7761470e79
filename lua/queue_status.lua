-- queue_status.lua: a waiting room's public settings and live counts, read in one step.
--
-- KEYS (all share the sale's hash tag)
--   1 q   2 pre   3 late   4 line   5 active      (as in queue_join.lua and queue_admit.lua)
-- ARGV: none
-- Replies
--   {'status', joined, admitted, dropped, expired, waiting, active, rate, paused, drawn,
--    commitment, max_active}
--        waiting: tickets not admitted, dropped or expired yet (drawn or not); active: passes
--        outstanding
--   {'gone'}   no waiting room

local q = redis.call('HMGET', KEYS[1], 'joined', 'admitted', 'dropped', 'expired', 'rate',
  'paused', 'drawn', 'commitment', 'max_active')
if not q[1] then
  return {'gone'}
end
local waiting = redis.call('ZCARD', KEYS[2]) + redis.call('ZCARD', KEYS[3])
  + redis.call('ZCARD', KEYS[4])
return {'status', q[1], q[2], q[3], q[4], waiting, redis.call('ZCARD', KEYS[5]), q[5], q[6],
  q[7], q[8], q[9]}
