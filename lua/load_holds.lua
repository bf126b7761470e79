-- load_holds.lua: hold again one page of the open orders of a sale Redis lost.
--
-- load_sale.lua puts the sale back with `held` already counting every open (confirmed) order
-- MySQL holds, and marks it `holds_loading` = 1; the gateway then reads those orders from
-- MySQL a page at a time, in order id order, and passes each page here. Each order gets its
-- record in `orders` (`user\nunits\nadmitted_ms\npay_by_ms\nheld\n\n`, as purchase.lua writes
-- it) and its entry in `holds` (by pay_by), so it expires or is paid as if Redis had never
-- lost it. The last page clears the mark.
--
-- While the mark is set, an order whose page is not loaded yet has no record: order_close.lua
-- answers `not_found` for it, and the gateway answers a cancel or a payment of it with 503
-- "the order's hold cannot be reached right now; retry shortly" (the order is open in MySQL).
-- A retry succeeds once its page is in, seconds later at most. The orders of a loaded page
-- end as usual from then on.
--
-- Safe to repeat, and several gateways may load the same sale at once (all of them restoring
-- at start, or one resuming after another died mid-way):
--   * A page acts only while the mark is set: once the last page is in, a late page (a slow
--     gateway, a re-sent call) changes nothing, so an order that has ended since and whose
--     record the persister removed (order_forget.lua) is never held again.
--   * Each page says which order id it was read after (ARGV 1), and the sale keeps where
--     loading stands (`holds_after`, the last order id loaded). A page read after anything
--     else — one loaded already by another gateway, or this very call re-sent after its reply
--     was lost — changes nothing and is answered `moved` with where loading stands; the
--     caller goes on from there. So every order of MySQL's list is loaded at most once, and an
--     order that ended after its page was loaded is never held again by a copy of that page.
--   * An order admitted at or after the moment the sale came back (`holds_before_ms`, set by
--     load_sale.lua) is skipped: purchase.lua held it (and counted it in `held`) on admission;
--     if it has ended and been forgotten since MySQL's page was read, it stays ended.
--   * HSETNX: an order that already has a record keeps it, and its hold is added only when
--     the record is new (`held` is not touched here: load_sale.lua counted these orders).
-- A gateway that dies mid-way leaves the mark set; the next restore finds it (load_sale.lua
-- replies 2) and goes on after `holds_after`.
--
-- KEYS (all share the sale's hash tag)
--   1  sale    hash: holds_loading, holds_after, holds_before_ms (and the rest, see purchase.lua)
--   2  orders  hash: order id -> user\nunits\nadmitted_ms\npay_by_ms\nheld\n\n
--   3  holds   sorted set: order id -> pay_by_ms
-- ARGV
--   1  the order id this page was read after ('' for the first page)
--   2  1 when this is the last page (MySQL had no more), else 0
--   3.. the page's open orders in fives, in order id order: order id, user id, units,
--       admitted_ms, pay_by_ms
-- Replies
--   {'loaded', n}      the page is in; n orders got a record and a hold now
--   {'moved', after}   loading stands after `after`, not where this page starts: nothing done
--   {'done'}           no holds are loading (finished, or the sale is not in Redis): nothing done

local sale_key, orders_key, holds_key = KEYS[1], KEYS[2], KEYS[3]
local after, last = ARGV[1], ARGV[2] == '1'

local state = redis.call('HMGET', sale_key, 'holds_loading', 'holds_after', 'holds_before_ms')
if state[1] ~= '1' then
  return {'done'}
end
local stands = state[2] or ''
if stands ~= after then
  return {'moved', stands}
end
local before_ms = tonumber(state[3] or '0')

local created = 0
for i = 3, #ARGV, 5 do
  local order_id, admitted_ms, pay_by = ARGV[i], ARGV[i + 3], ARGV[i + 4]
  if tonumber(admitted_ms) < before_ms and redis.call('HSETNX', orders_key, order_id,
      table.concat({ARGV[i + 1], ARGV[i + 2], admitted_ms, pay_by, 'held', '', ''}, '\n')) == 1
  then
    redis.call('ZADD', holds_key, pay_by, order_id)
    created = created + 1
  end
end

if last then
  redis.call('HDEL', sale_key, 'holds_loading', 'holds_after', 'holds_before_ms')
elseif #ARGV >= 3 then
  redis.call('HSET', sale_key, 'holds_after', ARGV[#ARGV - 4])
end
return {'loaded', created}
