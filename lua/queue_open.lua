-- queue_open.lua: put a queued sale's waiting room into Redis unless it is already there.
--
-- Run when a manager creates a queued sale and when a restore loads it from MySQL. Never
-- overwrites: a waiting room that survived keeps its tickets and counters.
--
-- KEYS (all share the sale's hash tag, e.g. fg:{s:42}:q)
--   1  q  hash: the waiting room's settings and counters (see queue_admit.lua)
-- ARGV
--   1  opens_ms   2 starts_ms   3 ends_ms (the sale's; joining closes then)
--   4  admit_per_second   5 max_active (0: no cap)   6 paused ("1"/"0")
--   7  commitment (hex SHA-256 of the seed)
--   8  drawn ("1" when MySQL already holds the draw: a restore after Redis lost the room)
--   9  positions already given (the drawn tickets' count, when drawn)
-- Reply: 1 loaded now, 0 already present

if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'opens_ms', ARGV[1], 'starts_ms', ARGV[2], 'ends_ms', ARGV[3],
  'rate', ARGV[4], 'max_active', ARGV[5], 'paused', ARGV[6], 'commitment', ARGV[7],
  'drawn', ARGV[8], 'next_pos', ARGV[9], 'joined', 0, 'admitted', 0, 'dropped', 0,
  'expired', 0, 'credit', 0)
return 1
