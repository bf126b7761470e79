-- load_holds.lua: load one page of the orders of a sale Redis lost: hold its open orders
-- again and count every order for its buyer.
--
-- load_sale.lua puts the sale back with `held` and `paid` already counting MySQL's open
-- (confirmed) and paid orders, and marks it `holds_loading` = 1; the gateway then reads those
-- orders from MySQL a page at a time, in order id order, and passes each page here. Each open
-- order gets its record in `orders` (`user\nunits\nadmitted_ms\npay_by_ms\nheld\n\n`, as
-- purchase.lua writes it) and its entry in `holds` (by pay_by), so it expires or is paid as if
-- Redis had never lost it. When load_sale.lua found no buyer list (`buyers_loading` = 1),
-- every order, open or paid, adds its units to its buyer's count. The last page clears the
-- marks and opens the sale: `status` comes back from `loading_status` (unless a manager set
-- one meanwhile), and purchases are admitted again.
--
-- While the mark is set, an open order whose page is not loaded yet has no record:
-- order_close.lua answers `not_found` for it, and the gateway answers a cancel or a payment
-- of it with 503 "the order's hold cannot be reached right now; retry shortly" (the order is
-- open in MySQL). A retry succeeds once its page is in, seconds later at most. The orders of
-- a loaded page end as usual from then on (an end lowers its buyer's count, which its page
-- raised). A purchase of the sale is answered `not_found` until the last page.
--
-- Safe to repeat, and several gateways may load the same sale at once (all of them restoring
-- at start, or one resuming after another died mid-way):
--   * A page acts only while the mark is set: once the last page is in, a late page (a slow
--     gateway, a re-sent call) changes nothing, so an order that has ended since and whose
--     record the persister removed (order_forget.lua) is never held again.
--   * Each page says which order id it was read after (ARGV 1), and the sale keeps where
--     loading stands (`holds_after`, the last order id loaded). A page read after anything
--     else (loaded already by another gateway, or this very call re-sent after its reply was
--     lost) changes nothing and is answered `moved` with where loading stands; the caller
--     goes on from there. So every order of MySQL's list is loaded once: held once, counted
--     once for its buyer, and never held again by a copy of its page after it ended.
--   * An order admitted at or after the moment the sale came back (`loaded_ms`, set by
--     load_sale.lua) is left alone: purchase.lua held and counted it on admission (possible
--     only if a manager set the status while loading); if it has ended and been forgotten
--     since MySQL's page was read, it stays ended.
--   * An open order that already has a record keeps it (whatever its state) and gets no
--     hold here; only one without a record gets a record and a hold.
-- A gateway that dies mid-way leaves the mark set (and the sale closed); the next restore
-- finds it (load_sale.lua replies 2) and goes on after `holds_after`.
--
-- KEYS (all share the sale's hash tag)
--   1  sale    hash: holds_loading, holds_after, buyers_loading, loading_status, loaded_ms,
--              status (and the rest, see purchase.lua)
--   2  orders  hash: order id -> user\nunits\nadmitted_ms\npay_by_ms\nheld\n\n
--   3  holds   sorted set: order id -> pay_by_ms
--   4  buyers  hash: user id -> units
-- ARGV
--   1  the order id this page was read after ('' for the first page)
--   2  1 when this is the last page (MySQL had no more), else 0
--   3.. the page's orders in sixes, in order id order: order id, user id, units,
--       admitted_ms, pay_by_ms, 'held' (open: held again) or 'paid' (counts for its buyer)
-- Replies
--   {'loaded', n}      the page is in; n open orders got a record and a hold now
--   {'moved', after}   loading stands after `after`, not where this page starts: nothing done
--   {'done'}           no orders are loading (finished, or the sale is not in Redis):
--                      nothing done

local sale_key, orders_key, holds_key, buyers_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local after, last = ARGV[1], ARGV[2] == '1'

local state = redis.call('HMGET', sale_key, 'holds_loading', 'holds_after', 'loaded_ms',
  'buyers_loading')
if state[1] ~= '1' then
  return {'done'}
end
local stands = state[2] or ''
if stands ~= after then
  return {'moved', stands}
end
local loaded_ms, count_buyers = tonumber(state[3] or '0'), state[4] == '1'

-- A few calls per chunk rather than a write per order (each write of a script is replicated
-- and appended to the AOF on its own); chunks keep each call's arguments inside Lua's stack.
local chunk = 500
local created = 0
local loadable = {}
for i = 3, #ARGV, 6 do
  if tonumber(ARGV[i + 3]) < loaded_ms then
    loadable[#loadable + 1] = i
  end
end
for first = 1, #loadable, chunk do
  local last_of_chunk = math.min(first + chunk - 1, #loadable)
  local open_ids, users, units = {}, {}, {}
  for j = first, last_of_chunk do
    local i = loadable[j]
    if ARGV[i + 5] == 'held' then
      open_ids[#open_ids + 1] = i
    end
    local user = ARGV[i + 1]
    if not units[user] then
      users[#users + 1] = user
      units[user] = 0
    end
    units[user] = units[user] + tonumber(ARGV[i + 2])
  end

  if #open_ids > 0 then
    local ids = {}
    for k, i in ipairs(open_ids) do
      ids[k] = ARGV[i]
    end
    local present = redis.call('HMGET', orders_key, unpack(ids))
    local records, scores = {}, {}
    for k, i in ipairs(open_ids) do
      if not present[k] then
        local order_id, pay_by = ARGV[i], ARGV[i + 4]
        records[#records + 1] = order_id
        records[#records + 1] = table.concat(
          {ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], pay_by, 'held', '', ''}, '\n')
        scores[#scores + 1] = pay_by
        scores[#scores + 1] = order_id
      end
    end
    if #records > 0 then
      redis.call('HSET', orders_key, unpack(records))
      redis.call('ZADD', holds_key, unpack(scores))
      created = created + #scores / 2
    end
  end

  if count_buyers then
    -- Read, add, write in one step: the same as HINCRBY for each buyer.
    local counts = redis.call('HMGET', buyers_key, unpack(users))
    local fields = {}
    for k, user in ipairs(users) do
      fields[#fields + 1] = user
      fields[#fields + 1] = tonumber(counts[k] or '0') + units[user]
    end
    redis.call('HSET', buyers_key, unpack(fields))
  end
end

if last then
  local loading_status = redis.call('HGET', sale_key, 'loading_status')
  if loading_status then
    redis.call('HSETNX', sale_key, 'status', loading_status)
  end
  redis.call('HDEL', sale_key, 'holds_loading', 'holds_after', 'buyers_loading',
    'loading_status')
elseif #ARGV >= 3 then
  redis.call('HSET', sale_key, 'holds_after', ARGV[#ARGV - 5])
end
return {'loaded', created}
