-- cancel_redemption.lua: undo a coupon's redemption (its order was cancelled), atomically.
--
-- The coupon goes back to `issued` and can be redeemed again until it expires. The change is
-- numbered like a redemption and appended to the policy's outbox as
-- `coupon.redemption_cancelled`. Refused once the coupon has expired: by then the relay may no
-- longer watch the policy's outbox, and an expired coupon cannot be used again anyway.
--
-- Safe to run twice: the Redis client re-sends a call whose connection closed before the
-- reply came. Every call carries an id of its own (ARGV 4), kept on the coupon with what the
-- cancellation answered; a call whose id is there already answers the same again and changes
-- nothing. Another call finds the coupon `not_redeemed`, as before.
--
-- KEYS (all share the policy's hash tag)
--   1  coupon  hash: user, status, expires_ms, seq, order_id, discount, and of the last
--              cancellation: cancel_call, cancelled_order, cancelled_seq, cancelled_ms
--   2  outbox  stream of the policy's coupon events
-- ARGV
--   1  user id (must hold the coupon)
--   2  trace id
--   3  outbox bound
--   4  call id (unique per call, made by the gateway; the give-back of an ended order uses
--      one id per order, so every attempt of it is the same call)
--   5  (optional) the order the redemption must be on, '' for any: the give-back of an ended
--      order must not undo a redemption the coupon has since made on another order
-- Replies
--   {'cancelled', order_id, seq, at_ms}
--   {'not_found'} | {'not_redeemed'} | {'expired'} | {'overloaded'}

local coupon_key, outbox_key = KEYS[1], KEYS[2]
local user, trace_id, outbox_max, call_id = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]

local coupon = redis.call('HMGET', coupon_key, 'user', 'status', 'expires_ms', 'order_id',
  'cancel_call', 'cancelled_order', 'cancelled_seq', 'cancelled_ms')
if not coupon[1] or coupon[1] ~= user then
  return {'not_found'}
end
-- This call ran before (a re-send): the same answer.
if call_id and call_id ~= '' and coupon[5] == call_id then
  return {'cancelled', coupon[6], tonumber(coupon[7]), tonumber(coupon[8])}
end
if coupon[2] ~= 'redeemed' or (ARGV[5] and ARGV[5] ~= '' and coupon[4] ~= ARGV[5]) then
  return {'not_redeemed'}
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
redis.call('HSET', coupon_key, 'status', 'issued', 'order_id', '', 'discount', 0,
  'cancel_call', call_id or '', 'cancelled_order', coupon[4], 'cancelled_seq', seq,
  'cancelled_ms', now_ms)
redis.call('XADD', outbox_key, '*',
  'type', 'coupon.redemption_cancelled', 'coupon_id', string.match(coupon_key, ':cpn:(.*)$'),
  'user_id', user, 'order_id', coupon[4], 'discount', 0, 'seq', seq, 'at_ms', now_ms,
  'trace_id', trace_id)
return {'cancelled', coupon[4], seq, now_ms}
