-- load_sale.lua: put a sale's state into Redis unless it is already there.
--
-- Used when a manager creates a sale and when the gateway restores sales from MySQL after a
-- Redis restart or failover. Never overwrites: a stock counter or buyer list that survived
-- keeps its live values (they include admissions MySQL has not seen yet), so nothing admitted
-- is counted twice.
--
-- The open (confirmed) orders MySQL holds come back as held orders, with their pay_by, so
-- they expire or are paid as if Redis had never lost them. `held` and `paid` count their
-- units from the start (stock + held + paid = total), but the orders themselves are not
-- passed here: a sale may have hundreds of thousands, far too many for one call. When there
-- are some, this script marks the sale `holds_loading` = 1 and the gateway then loads them a
-- page at a time with load_holds.lua, which clears the mark with the last page (see there for
-- what the fields `holds_after` and `holds_before_ms` are for). Finding the sale present with
-- the mark still set means a gateway died while loading them: the caller resumes.
--
-- KEYS (all share the sale's hash tag)
--   1  sale    hash (fg:{s:42}:sale)
--   2  stock   string
--   3  buyers  hash
-- ARGV
--   1  status   2 starts_ms   3 ends_ms   4 price   5 per_user_limit   6 total
--   7  remaining stock   8 units already admitted (persisted)
--   9  payment window in ms   10 units held by open orders   11 units in paid orders
--   12 number of open orders still to be loaded by load_holds.lua (0: none)
--   13 number N of buyers, then N pairs of (user id, units already bought)
-- Reply
--   1  loaded now (and, when ARGV 12 > 0, its holds are to be loaded)
--   0  the sale was already present, with every hold loaded
--   2  the sale was already present and its holds are still loading (resume)

if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('HGET', KEYS[1], 'holds_loading') == '1' then
    return 2
  end
  return 0
end
redis.call('HSET', KEYS[1],
  'status', ARGV[1], 'starts_ms', ARGV[2], 'ends_ms', ARGV[3], 'price', ARGV[4],
  'per_user_limit', ARGV[5], 'total', ARGV[6], 'admitted', ARGV[8], 'window_ms', ARGV[9],
  'held', ARGV[10], 'paid', ARGV[11])
if tonumber(ARGV[12]) > 0 then
  -- Orders admitted from now on are held by purchase.lua itself: load_holds.lua loads only
  -- the ones admitted before this moment (Redis's clock, the one that stamped them).
  local time = redis.call('TIME')
  local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  redis.call('HSET', KEYS[1], 'holds_loading', 1, 'holds_before_ms', now_ms)
end
redis.call('SET', KEYS[2], ARGV[7], 'NX')
local buyers = tonumber(ARGV[13])
if redis.call('EXISTS', KEYS[3]) == 0 then
  -- HSET many pairs per call (each call's arguments stay well inside Lua's stack).
  local chunk = 500
  for first = 14, 13 + 2 * buyers, 2 * chunk do
    local last = math.min(first + 2 * chunk - 1, 13 + 2 * buyers)
    redis.call('HSET', KEYS[3], unpack(ARGV, first, last))
  end
end
return 1
