-- order_forget.lua: once MySQL holds an order's end, forget the order's record in Redis, so a
-- sale's `orders` hash shrinks as its orders reach MySQL (and the sale can be cleaned up once
-- it is empty). The persister runs it after the batch's transaction committed and the end was
-- announced on the lifecycle topic; until then the record answers status lookups.
--
-- Only a final record goes: cancelled, expired or paid. A `held` record (an open order: it
-- holds units and is watched by the expiry sweeper) and an old two-field record (read as held)
-- are never touched, whatever the caller asks. A paid order's discount fields go with it: its
-- coupon and points stay spent, so nothing will release them. A cancelled or expired order's
-- are left to its compensation, which releases them. Safe to run twice and in any order with
-- every other script of the sale: a forgotten record is simply absent.
--
-- KEYS (share the sale's hash tag)
--   1  orders     hash (fg:{s:42}:orders): order id ->
--                   'user\nqty\nadmitted_ms\npay_by_ms\nstate\nat_ms\nreason'
--                   state: held | cancelled | expired | paid
--   2  discounts  hash (fg:{s:42}:discounts), per order (see order_discount.lua):
--                   <order id>              total reserved on the order
--                   <order id>\nrefs        its references, joined by '\n'
--                   <order id>\n<reference> one reservation
-- ARGV
--   1..n  order ids
-- Reply
--   one code per order id, in ARGV order:
--   'forgotten'  its record was final and is gone (with a paid order's discount fields)
--   'held'       its record is open: untouched
--   'absent'     no record (forgotten before, e.g. by a replayed batch)

local orders, discounts = KEYS[1], KEYS[2]

-- The fifth '\n'-separated field of `record`, or nil when it has fewer (an old record).
local function state_of(record)
  local start = 1
  for _ = 1, 4 do
    local newline = string.find(record, '\n', start, true)
    if not newline then
      return nil
    end
    start = newline + 1
  end
  local stop = string.find(record, '\n', start, true)
  return string.sub(record, start, stop and stop - 1 or -1)
end

local final = {cancelled = true, expired = true, paid = true}
local out = {}
for i = 1, #ARGV do
  local order_id = ARGV[i]
  local record = redis.call('HGET', orders, order_id)
  local state = record and state_of(record)
  if not record then
    out[i] = 'absent'
  elseif not final[state] then
    out[i] = 'held'
  else
    redis.call('HDEL', orders, order_id)
    if state == 'paid' then
      local refs_field = order_id .. '\nrefs'
      local refs = redis.call('HGET', discounts, refs_field)
      if refs then
        for reference in string.gmatch(refs, '[^\n]+') do
          redis.call('HDEL', discounts, order_id .. '\n' .. reference)
        end
      end
      redis.call('HDEL', discounts, order_id, refs_field)
    end
    out[i] = 'forgotten'
  end
end
return out
