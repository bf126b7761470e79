-- order_forget.lua: once MySQL holds an order's end, forget the order's record in Redis, so a
-- sale's `orders` hash shrinks as its orders reach MySQL (and the sale can be cleaned up once
-- it is empty). The persister runs it after the batch's transaction committed and the end was
-- announced on the lifecycle topic; until then the record answers status lookups.
--
-- Only a cancelled or expired record goes. An open one (`held`, `paying`: it holds units and is
-- watched by the expiry sweeper) and an old two-field record (read as held) are never touched,
-- whatever the caller asks. A `paid` (or `refunding`) record is kept, with its discount
-- fields, until the sale's cleanup: a paid order can still be cancelled and refunded, which
-- gives its units, coupon and points back (order_close.lua). A cancelled or expired order's
-- discount fields are left to its compensation, which releases them. Safe to run twice and in
-- any order with every other script of the sale: a forgotten record is simply absent.
--
-- KEYS (share the sale's hash tag)
--   1  orders     hash (fg:{s:42}:orders): order id ->
--                   'user\nqty\nadmitted_ms\npay_by_ms\nstate\nat_ms\nreason'
--                   state: held | paying | paid | refunding | cancelled | expired
--   2  discounts  hash (fg:{s:42}:discounts): not touched any more (a paid order's fields
--                 stay with its record; the sale's cleanup removes both); still passed, so
--                 persisters of either version run the same call
-- ARGV
--   1..n  order ids
-- Reply
--   one code per order id, in ARGV order:
--   'forgotten'  its record was cancelled or expired and is gone
--   'held'       its record is open: untouched
--   'kept'       its record is paid (or being refunded): kept until the sale's cleanup
--   'absent'     no record (forgotten before, e.g. by a replayed batch)

local orders = KEYS[1]

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

local final = {cancelled = true, expired = true}
local kept = {paid = true, refunding = true}
local out = {}
for i = 1, #ARGV do
  local order_id = ARGV[i]
  local record = redis.call('HGET', orders, order_id)
  local state = record and state_of(record)
  if not record then
    out[i] = 'absent'
  elseif kept[state] then
    out[i] = 'kept'
  elseif not final[state] then
    out[i] = 'held'
  else
    redis.call('HDEL', orders, order_id)
    out[i] = 'forgotten'
  end
end
return out
