-- load_sale.lua: put a sale's state into Redis unless it is already there.
--
-- Used when a manager creates a sale and when the gateway restores sales from MySQL after a
-- Redis restart or failover. Never overwrites: a stock counter or buyer list that survived
-- keeps its live values (they include admissions MySQL has not seen yet), so nothing admitted
-- is counted twice.
--
-- The open (confirmed) orders MySQL holds come back as held orders, with their pay_by, so
-- they expire or are paid as if Redis had never lost them; `held` and `paid` count their
-- units, so stock + held + paid = total holds from the start.
--
-- KEYS
--   1  sale    hash (fg:{s:42}:sale)
--   2  stock   string
--   3  buyers  hash
--   4  orders  hash (records of open orders, see purchase.lua)
--   5  holds   sorted set (open orders by pay_by)
-- ARGV
--   1  status   2 starts_ms   3 ends_ms   4 price   5 per_user_limit   6 total
--   7  remaining stock   8 units already admitted (persisted)
--   9  payment window in ms   10 units held by open orders   11 units in paid orders
--   12 number N of buyers, then N pairs of (user id, units already bought)
--   then, to the end, the open orders in fives: order id, user id, units, admitted_ms, pay_by_ms
-- Reply
--   1 when loaded, 0 when the sale was already present

if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1],
  'status', ARGV[1], 'starts_ms', ARGV[2], 'ends_ms', ARGV[3], 'price', ARGV[4],
  'per_user_limit', ARGV[5], 'total', ARGV[6], 'admitted', ARGV[8], 'window_ms', ARGV[9],
  'held', ARGV[10], 'paid', ARGV[11])
redis.call('SET', KEYS[2], ARGV[7], 'NX')
local buyers = tonumber(ARGV[12])
if redis.call('EXISTS', KEYS[3]) == 0 then
  for i = 13, 12 + 2 * buyers, 2 do
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  end
end
for i = 13 + 2 * buyers, #ARGV, 5 do
  local order_id, pay_by = ARGV[i], ARGV[i + 4]
  if redis.call('HSETNX', KEYS[4], order_id, table.concat(
      {ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], pay_by, 'held', '', ''}, '\n')) == 1 then
    redis.call('ZADD', KEYS[5], pay_by, order_id)
  end
end
return 1
