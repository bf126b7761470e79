-- redeem_coupon.lua: apply a coupon to one order, at most once, atomically.
--
-- Of any number of concurrent redeems of one coupon exactly one finds it `issued` and wins;
-- the others see `redeemed`. The change is numbered (`seq`) and appended to the policy's
-- outbox as `coupon.redeemed`, so MySQL applies the coupon's changes in order and ignores
-- replays. The gateway computes the discount (from the policy and the order) before calling.
--
-- Safe to run twice: the Redis client re-sends a call whose connection closed before the
-- reply came. A coupon redeemed already on this same order with this same discount was
-- redeemed by this call (or by an identical one): it answers `redeemed` with the same seq
-- and time, and changes nothing; `already_redeemed` is only for another order or discount.
--
-- KEYS (all share the policy's hash tag)
--   1  coupon  hash: user, status, expires_ms, seq, order_id, discount, redeemed_ms
--   2  outbox  stream of the policy's coupon events
-- ARGV
--   1  user id (must hold the coupon)
--   2  order id
--   3  discount, integer minor units
--   4  trace id
--   5  outbox bound
-- Replies
--   {'redeemed', seq, at_ms}
--   {'not_found'}                       no such coupon, or not this user's
--   {'already_redeemed', order_id}      redeemed before, on another order or with another
--                                       discount
--   {'expired'} | {'overloaded'}

local coupon_key, outbox_key = KEYS[1], KEYS[2]
local user, order_id, discount, trace_id = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local outbox_max = tonumber(ARGV[5])

local coupon = redis.call('HMGET', coupon_key,
  'user', 'status', 'expires_ms', 'order_id', 'discount', 'seq', 'redeemed_ms')
if not coupon[1] or coupon[1] ~= user then
  return {'not_found'}
end
if coupon[2] == 'redeemed' then
  if coupon[4] == order_id and tonumber(coupon[5]) == tonumber(discount) then
    return {'redeemed', tonumber(coupon[6]), tonumber(coupon[7] or '0')}
  end
  return {'already_redeemed', coupon[4]}
end

local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
if now_ms >= tonumber(coupon[3]) then
  return {'expired'}
end
if redis.call('XLEN', outbox_key) >= outbox_max then
  return {'overloaded'}
end

local seq = redis.call('HINCRBY', coupon_key, 'seq', 1)
redis.call('HSET', coupon_key, 'status', 'redeemed', 'order_id', order_id, 'discount', discount,
  'redeemed_ms', now_ms)
redis.call('XADD', outbox_key, '*',
  'type', 'coupon.redeemed', 'coupon_id', string.match(coupon_key, ':cpn:(.*)$'),
  'user_id', user, 'order_id', order_id, 'discount', discount, 'seq', seq, 'at_ms', now_ms,
  'trace_id', trace_id)
return {'redeemed', seq, now_ms}
