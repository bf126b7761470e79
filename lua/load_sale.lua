-- load_sale.lua: put a sale's state into Redis unless it is already there.
--
-- Used when a manager creates a sale and when the gateway restores sales from MySQL after a
-- Redis restart or failover. Never overwrites: a stock counter or buyer list that survived
-- keeps its live values (they include admissions MySQL has not seen yet), so nothing admitted
-- is counted twice.
--
-- KEYS
--   1  sale    hash (fg:{s:42}:sale)
--   2  stock   string
--   3  buyers  hash
-- ARGV
--   1  status   2 starts_ms   3 ends_ms   4 price   5 per_user_limit   6 total
--   7  remaining stock   8 units already admitted (persisted)
--   9.. pairs of (user id, units already bought)
-- Reply
--   1 when loaded, 0 when the sale was already present

if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1],
  'status', ARGV[1], 'starts_ms', ARGV[2], 'ends_ms', ARGV[3], 'price', ARGV[4],
  'per_user_limit', ARGV[5], 'total', ARGV[6], 'admitted', ARGV[8])
redis.call('SET', KEYS[2], ARGV[7], 'NX')
if redis.call('EXISTS', KEYS[3]) == 0 then
  for i = 9, #ARGV, 2 do
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  end
end
return 1
