-- sale_counters.lua (flashgate-loadtest, read-only): a sale's counters read at one instant.
--
-- The load test checks that stock + held + paid = total at every moment while purchases,
-- payments, cancellations and expiries run; two separate reads could straddle a purchase and
-- see a sum that never existed, so the sampler reads them all in one script. Writes nothing.
--
-- KEYS (all share the sale's hash tag, e.g. fg:{s:42}:...)
--   1  sale    hash: total, admitted, held, paid (and the rest, see lua/purchase.lua)
--   2  stock   string: units left
--   3  outbox  stream of the sale's order events, read by the relay
--   4  holds   sorted set: order id -> pay_by_ms of every open order
-- ARGV: none
-- Replies
--   {}                                                        the sale is not in Redis
--   {stock, total, held, paid, admitted, outbox length, open orders}   integers; a counter
--                                                             the sale hash lacks is 0

local sale_key, stock_key, outbox_key, holds_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if redis.call('EXISTS', sale_key) == 0 then
  return {}
end
local fields = redis.call('HMGET', sale_key, 'total', 'held', 'paid', 'admitted')
return {
  tonumber(redis.call('GET', stock_key) or '0'),
  tonumber(fields[1] or '0'),
  tonumber(fields[2] or '0'),
  tonumber(fields[3] or '0'),
  tonumber(fields[4] or '0'),
  redis.call('XLEN', outbox_key),
  redis.call('ZCARD', holds_key),
}
