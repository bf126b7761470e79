-- stock_repair.lua: the stock counters of one sale for `flashgate-batch reconcile-stock`, read
-- in one step and repaired from MySQL only if nothing moved since that read.
--
-- `read` gives every counter as of one instant (a purchase or an order's end changes several
-- at once; reading them one by one could see half of it). `repair` is a compare-and-set of
-- absolute values: it writes only while stock, held and paid are still exactly what the check
-- read and the outbox is still empty, so a purchase, a cancellation, an expiry or a payment
-- that ran meanwhile is never overwritten, and running it twice changes nothing.
--
-- `held` is set only to the units of the open orders Redis itself holds (`holds`, with their
-- quantities in `orders`): each of those orders will later end through order_close.lua and
-- give back or move exactly its own units, so a `held` that disagreed with them would go
-- below zero (or leave units held forever) as they end. When MySQL's confirmed orders and
-- Redis's open orders disagree (an order MySQL rejected that Redis holds until its pay_by,
-- an order Redis lost), setting counters cannot repair it: refused.
--
-- KEYS (one sale's hash tag, e.g. fg:{s:42}:...)
--   1  sale    hash: total, held (units in open orders), paid (units in paid orders)
--   2  stock   string: units left
--   3  outbox  stream: the sale's events not yet relayed to Kafka
--   4  holds   sorted set: order id -> pay_by_ms of the open orders
--   5  orders  hash: order id -> user\nquantity\n... (the open orders' quantities)
-- ARGV
--   1  'read' | 'repair'
--   for 'repair':
--   2  stock as read   3  held as read   4  paid as read    ('' = absent)
--   5  stock to set    6  held to set    7  paid to set     (integers >= 0)
-- Replies
--   read    {loaded, total, stock, held, paid, outbox_len}
--             loaded: 1 when the sale hash exists, else 0; '' for an absent counter
--   repair  {'repaired'}      the three counters were set
--           {'already'}       they already hold the values to set (a retried call): nothing done
--           {'moved', stock, held, paid, outbox_len}
--                             a counter is not what was read, or the outbox is not empty:
--                             something ran since the read; nothing written
--           {'gone'}          the sale is no longer in Redis (cleaned up): nothing written
--           {'unbalanced', total}
--                             the values to set are negative or do not add up to the sale's
--                             total (stock + held + paid = total): refused, nothing written
--           {'records', units}
--                             the open orders in `holds` hold `units` units, not the held to
--                             set (-1: an open order has no record): refused, nothing written

local sale_key, stock_key, outbox_key, holds_key, orders_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]

local function counters()
  local fields = redis.call('HMGET', sale_key, 'total', 'held', 'paid')
  return fields[1] or '', redis.call('GET', stock_key) or '', fields[2] or '', fields[3] or ''
end

if ARGV[1] == 'read' then
  local total, stock, held, paid = counters()
  return {redis.call('EXISTS', sale_key), total, stock, held, paid, redis.call('XLEN', outbox_key)}
end

if ARGV[1] ~= 'repair' then
  return redis.error_reply('stock_repair.lua: unknown operation ' .. tostring(ARGV[1]))
end

if redis.call('EXISTS', sale_key) == 0 then
  return {'gone'}
end
local total, stock, held, paid = counters()
local new_stock, new_held, new_paid = ARGV[5], ARGV[6], ARGV[7]
if stock == new_stock and held == new_held and paid == new_paid then
  return {'already'}
end
local outbox_len = redis.call('XLEN', outbox_key)
if stock ~= ARGV[2] or held ~= ARGV[3] or paid ~= ARGV[4] or outbox_len > 0 then
  return {'moved', stock, held, paid, outbox_len}
end
local s, h, p = tonumber(new_stock), tonumber(new_held), tonumber(new_paid)
if not (s and h and p) or s < 0 or h < 0 or p < 0 or s + h + p ~= tonumber(total) then
  return {'unbalanced', total}
end
-- The open orders' units, in slices (unpack has a limit); an open order without its record
-- counts as no units, so the sum cannot match and nothing is written.
local open, units = redis.call('ZRANGE', holds_key, 0, -1), 0
for first = 1, #open, 1000 do
  local last = math.min(first + 999, #open)
  local records = redis.call('HMGET', orders_key, unpack(open, first, last))
  for i = 1, last - first + 1 do
    local quantity = records[i] and string.match(records[i], '^[^\n]*\n(%d+)')
    if not quantity then
      return {'records', -1}
    end
    units = units + tonumber(quantity)
  end
end
if units ~= h then
  return {'records', units}
end
redis.call('SET', stock_key, new_stock)
redis.call('HSET', sale_key, 'held', new_held, 'paid', new_paid)
return {'repaired'}
