-- order_discount.lua: reserve or release a discount on one order, so that the coupons and
-- points applied to an order never sum past its amount.
--
-- A coupon is redeemed on its policy's hash tag and points are spent on their bucket's, while
-- the order belongs to its sale's: no single script may touch them all (Redis Cluster). So the
-- gateway first RESERVES the discount here, on the sale's hash tag, where every discount of
-- the order is counted; only then does it run redeem_coupon.lua or points_use.lua, and it
-- RELEASES the reservation when that script refuses, and when the redemption or use is
-- cancelled. Redis runs this script alone, so of any number of concurrent reservations on one
-- order only as many as its amount covers succeed.
--
-- A gateway that stops between the reservation and the redeem or use (or before a release)
-- leaves room reserved that no discount uses: the order can then take less discount than its
-- amount, never more. That is the side to err on; nothing here ever over-discounts.
--
-- Each reservation has a reference (`cpn:<coupon id>` or `pts:<use txid>`) and a holder (the
-- token of the request that made it). A reservation is counted once per (order, reference):
-- reserving a reference that is held answers with the reservation as it stands and changes
-- nothing (a second run of the same request answers as the first), and a release by a holder
-- frees only its own reservation, so a refused request cannot free the room of a concurrent
-- one that succeeded with the same reference.
--
-- An order that has ended with its units given back (cancelled, expired: its record in
-- `orders` says so) takes no new reservation: `order_close.lua` copies the order's references
-- when it ends it, and the gateway gives back what they name; a reservation made after that
-- copy would never be given back, so it is refused (`closed`). A reservation made before it
-- is in the copy, even if its redeem or use lands later: the sweeper's pass over the
-- give-backs comes after any request in flight has finished.
--
-- KEYS (share the sale's hash tag)
--   1  discounts  hash (fg:{s:42}:discounts):
--                   <order id>              total reserved on the order, integer minor units
--                   <order id>\n<reference> '<amount>\n<holder>' of one reservation
--                   <order id>\nrefs        the order's references, joined by '\n'
--                 A release deletes its field and its reference, and the order's total with
--                 its last unit. A paid order's fields go when MySQL holds its end
--                 (order_forget.lua); a cancelled or expired one's once the sweeper has given
--                 its coupon and points back; any left go with the sale's other keys.
--   2  orders     hash: order id -> the order's record (purchase.lua); its 5th line is the
--                 state (absent in records from before the lifecycle: held)
-- ARGV
--   1  'reserve' or 'release'
--   2  order id
--   3  reference
--   4  holder: the request's token; on release, '' frees the reservation whoever holds it
--   reserve only:
--   5  amount asked for, integer minor units >= 0 (at most 2^53, exact in Lua)
--   6  the order's amount (unit price x quantity), integer minor units >= 0 (at most 2^53)
--   7  mode  'exact'  all of the amount or nothing (points)
--             'cap'    as much of the amount as is left; refused only when nothing is left
--                      (coupons: a coupon worth more than what is left gives what is left)
--             'adopt'  like 'exact', and a reservation that is held becomes this holder's
--                      (a request that succeeded on a reservation made by another request)
-- Replies
--   {'reserved', granted, total, holder}  held (now or before); holder: whose it is
--   {'exceeds', total, left}              refused: the order has `left` of its amount free
--   {'closed', state}                     refused: the order is no longer open to discounts
--                                         (cancelled, expired, paid, or its payment started:
--                                         the amount charged must not change under it)
--   {'released', amount, total}
--   {'not_held', total}                   nothing released: none, or another holder's

local key, orders_key = KEYS[1], KEYS[2]
local op, order_id, reference, holder = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local field = order_id .. '\n' .. reference
local refs_field = order_id .. '\nrefs'

-- The order's references without `reference` (nil when it is not listed).
local function refs_without()
  local refs = redis.call('HGET', key, refs_field)
  if not refs then
    return nil
  end
  local kept, found = {}, false
  for ref in string.gmatch(refs, '[^\n]+') do
    if ref == reference then
      found = true
    else
      kept[#kept + 1] = ref
    end
  end
  if not found then
    return nil
  end
  return kept
end

local total = tonumber(redis.call('HGET', key, order_id) or '0')
local held = redis.call('HGET', key, field)
local held_amount, held_by
if held then
  held_amount, held_by = string.match(held, '^(%d+)\n(.*)$')
end

if op == 'release' then
  if not held or (holder ~= '' and holder ~= held_by) then
    return {'not_held', total}
  end
  redis.call('HDEL', key, field)
  local kept = refs_without()
  if kept then
    if #kept == 0 then
      redis.call('HDEL', key, refs_field)
    else
      redis.call('HSET', key, refs_field, table.concat(kept, '\n'))
    end
  end
  if held_amount ~= '0' then
    total = redis.call('HINCRBY', key, order_id, '-' .. held_amount)
    if total <= 0 then
      redis.call('HDEL', key, order_id)
    end
  end
  return {'released', tonumber(held_amount), total}
end

if op ~= 'reserve' then
  return redis.error_reply('order_discount: unknown operation ' .. tostring(op))
end

local asked, order_amount, mode = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]

if held then
  if mode == 'adopt' and held_by ~= holder then
    redis.call('HSET', key, field, held_amount .. '\n' .. holder)
    held_by = holder
  end
  return {'reserved', tonumber(held_amount), total, held_by}
end

local record = redis.call('HGET', orders_key, order_id)
if record then
  local state = string.match(record, '^[^\n]*\n[^\n]*\n[^\n]*\n[^\n]*\n([^\n]*)')
  if state and state ~= '' and state ~= 'held' then
    return {'closed', state}
  end
end

local left = order_amount - total
if left < 0 then
  left = 0
end
local granted = asked
if asked > left then
  if mode ~= 'cap' or left == 0 then
    return {'exceeds', total, left}
  end
  granted = left
end

local granted_text = string.format('%d', granted)
redis.call('HSET', key, field, granted_text .. '\n' .. holder)
local refs = redis.call('HGET', key, refs_field)
redis.call('HSET', key, refs_field, refs and (refs .. '\n' .. reference) or reference)
if granted > 0 then
  total = redis.call('HINCRBY', key, order_id, granted_text)
end
return {'reserved', granted, total, holder}
