-- sale_cleanup.lua: remove every key of a sale whose life is over, in one step.
--
-- A sale's life is over when it ended (by Redis's clock) at least the grace period ago and
-- nothing of it is still moving: no open order (`holds` empty), no ended order waiting for
-- MySQL to store its end and no refund in flight (`orders` holds only paid records, counted by
-- the sale's `paid_orders`: the persister removes every other record once MySQL holds its
-- end; paid ones stay so they can still be cancelled and refunded), no give-back still to do (`compensate` empty), no event waiting for the relay
-- (`outbox` empty). Then nothing can append to it any more (a purchase is refused after the
-- end, and only an open order can end), so removing its keys loses nothing; the sale's rows in
-- MySQL are the record. Stored idempotency answers are left to their TTL.
--
-- Checking and deleting in one script means an order ending between a check and the delete
-- is impossible. The gateway then drops the sale from the sweeper's set and the relay drops
-- its outbox (both on other slots, both harmless to repeat); restore brings back only sales
-- not over yet or with open orders in MySQL, so it never brings this one back.
--
-- KEYS (all share the sale's hash tag)
--   1 sale   2 stock   3 buyers   4 outbox   5 orders   6 holds   7 discounts   8 compensate
--   9.. (optional) more keys of the sale removed with it: its waiting room's (q, tickets,
--       users, seen, pre, late, line, active), which hold nothing the sale still needs
-- ARGV
--   1  grace period after the end, in ms
-- Replies
--   'cleaned'   the keys are gone now
--   'gone'      there was no sale hash (cleaned before, or never loaded)
--   'open'      not ended + grace yet
--   'busy'      ended, but an order, a give-back or an event is still in flight, or a restore
--               is still loading its open orders (`holds_loading`, load_holds.lua)

local sale_key, holds_key, orders_key, outbox_key, compensate_key =
  KEYS[1], KEYS[6], KEYS[5], KEYS[4], KEYS[8]
local grace_ms = tonumber(ARGV[1])

local ends_ms = redis.call('HGET', sale_key, 'ends_ms')
if not ends_ms then
  return 'gone'
end
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
if now_ms < tonumber(ends_ms) + grace_ms then
  return 'open'
end
if redis.call('HEXISTS', sale_key, 'holds_loading') == 1
    or redis.call('ZCARD', holds_key) > 0
    or redis.call('HLEN', orders_key)
      > tonumber(redis.call('HGET', sale_key, 'paid_orders') or '0')
    or redis.call('HLEN', compensate_key) > 0 or redis.call('XLEN', outbox_key) > 0 then
  return 'busy'
end
redis.call('DEL', unpack(KEYS))
return 'cleaned'
