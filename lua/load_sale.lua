-- load_sale.lua: put a sale's state into Redis unless it is already there.
--
-- Used when a manager creates a sale and when the gateway restores sales from MySQL after a
-- Redis restart or failover. Never overwrites: a stock counter or buyer list that survived
-- keeps its live values (they include admissions MySQL has not seen yet), so nothing admitted
-- is counted twice.
--
-- The open (confirmed) orders MySQL holds come back as held orders, with their pay_by, so
-- they expire or are paid as if Redis had never lost them; `held` and `paid` count their
-- units from the start (stock + held + paid = total). The orders themselves are not passed
-- here, nor the buyers' counts made from them: a sale may have hundreds of thousands, far
-- too many for one call (it would also block Redis for as long). When MySQL holds orders of
-- the sale, this script marks it `holds_loading` = 1 and the gateway then loads them a page
-- at a time with load_holds.lua, whose last page clears the mark (see there). Until then the
-- sale has no `status` (it waits in `loading_status`), so purchase.lua answers `not_found`
-- for it: nobody buys against per-user counts half loaded. Finding the sale present with the
-- mark still set means a gateway died while loading: the caller resumes.
--
-- KEYS (all share the sale's hash tag)
--   1  sale    hash (fg:{s:42}:sale)
--   2  stock   string
--   3  buyers  hash
-- ARGV
--   1  status   2 starts_ms   3 ends_ms   4 price   5 per_user_limit   6 total
--   7  remaining stock   8 units already admitted (persisted)
--   9  payment window in ms   10 units held by open orders   11 units in paid orders
--   12 open (confirmed) orders in MySQL   13 paid orders in MySQL
--   14 queued: "1" for a sale behind a waiting room (purchase.lua then wants a pass); absent
--      or "0" otherwise
-- Reply
--   1  loaded now (its orders are to be loaded when ARGV 12 or 13 is not 0)
--   0  the sale was already present, with all its orders loaded
--   2  the sale was already present and its orders are still loading (resume)
-- The sale hash also gets `loaded_ms`: when it was put into Redis, by Redis's clock (orders
-- admitted from then on were held by purchase.lua itself; load_holds.lua leaves them alone).

if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('HGET', KEYS[1], 'holds_loading') == '1' then
    return 2
  end
  return 0
end
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('HSET', KEYS[1],
  'starts_ms', ARGV[2], 'ends_ms', ARGV[3], 'price', ARGV[4],
  'per_user_limit', ARGV[5], 'total', ARGV[6], 'admitted', ARGV[8], 'window_ms', ARGV[9],
  'held', ARGV[10], 'paid', ARGV[11], 'loaded_ms', now_ms)
if ARGV[14] == '1' then
  redis.call('HSET', KEYS[1], 'queued', 1)
end
if tonumber(ARGV[12]) + tonumber(ARGV[13]) > 0 then
  redis.call('HSET', KEYS[1], 'loading_status', ARGV[1], 'holds_loading', 1)
  -- A buyer list that survived already counts these orders.
  if redis.call('EXISTS', KEYS[3]) == 0 then
    redis.call('HSET', KEYS[1], 'buyers_loading', 1)
  end
else
  redis.call('HSET', KEYS[1], 'status', ARGV[1])
end
redis.call('SET', KEYS[2], ARGV[7], 'NX')
return 1
