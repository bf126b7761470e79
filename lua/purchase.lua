-- purchase.lua: admit one flash-sale purchase, atomically, in one round trip.
--
-- Checks, in order: whether this very call ran before (the order id is in `orders`), the
-- idempotency key (when given), that the sale exists, its status and window (judged by
-- Redis's own clock), the buyer's per-user limit, the stock, the outbox bound. On success:
-- decrements the stock, records the buyer, holds the order until its `pay_by` (admission +
-- the sale's payment window, by Redis's clock), appends the admitted order to the sale's
-- outbox stream, counts it, and stores the answer under the idempotency key.
--
-- Safe to run twice: the Redis client re-sends a call whose connection closed before the
-- reply came, and the gateway makes a fresh order id for every call, so an order id already
-- in `orders` means this call was admitted before: it answers `admitted` again with the same
-- order and takes nothing.
--
-- KEYS (all share the sale's hash tag, e.g. fg:{s:42}:...)
--   1  sale     hash: status, starts_ms, ends_ms, price, per_user_limit, total, window_ms
--               (payment window; absent: 600000), and the counters admitted, held, paid
--   2  stock    string: units left (stock + held + paid = total at every moment)
--   3  buyers   hash: user id -> units admitted; and the rate limits' TATs, one field per
--               limit named by rate_limit_field (lua/rate_limit.lua; never a user id)
--   4  outbox   stream of admitted orders, read by the relay
--   5  orders   hash: order id -> "user\nquantity\nadmitted_ms\npay_by_ms\nheld\n\n" of every
--               open order (status lookups before the order reaches MySQL; order_close.lua
--               ends it)
--   6  holds    sorted set: order id -> pay_by_ms of every open order (the expiry sweeper's)
--   7  idem     (optional) string: the stored answer for this user's Idempotency-Key
-- ARGV
--   1  user id
--   2  quantity (integer >= 1)
--   3  order id to use if admitted (unique per call, made by the gateway)
--   4  trace id
--   5  outbox bound: refuse with `overloaded` when the outbox holds this many entries
--   6  idempotency TTL in seconds
--   7  request fingerprint (the canonical request; compared on replay)
--   8  pass_ok: "1" when the gateway verified a `Queue-Pass` for this user and sale, else "0"
--      (a sale whose hash has `queued` = "1" admits only purchases with pass_ok = "1")
--   9  n: how many rate limits (absent: 0)
--   10.. per limit i (from 0): ARGV 10+3i its emission interval in µs, ARGV 11+3i its burst,
--       ARGV 12+3i whom it limits (`u:<user>`: per user per sale; `a:<address>`). They are
--       judged first, by the `judge` function the gateway puts in front of this script from
--       lua/rate_limit.lua; a refused purchase takes nothing. An allowed one is charged
--       whatever its answer, except `not_found` (no sale: no buyers hash to keep the TATs)
--       and a re-sent call (charged the first time).
-- Replies (array, first element is the code)
--   {'admitted', order_id, remaining}                   remaining: units left now
--   {'replay', code, order_id, quantity, admitted_ms, remaining}
--                                                       stored answer for the same key and
--                                                       request (remaining: of a `sold_out`)
--   {'idempotency_key_reused'}                          same key, another request
--   {'not_found'} | {'sale_not_active'} | {'limit_exceeded'} | {'overloaded'}
--   {'rate_limited', index, retry_us}                   limit `index` (from 1) refused; it
--                                                       allows this request in retry_us µs
--   {'queue_pass_required'}                             a queued sale, no verified pass
--   {'sold_out', remaining}

local limits = tonumber(ARGV[9] or '0') or 0
local sale_key, stock_key, buyers_key, outbox_key, orders_key, holds_key, idem_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local user, qty, order_id, trace_id = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
local outbox_max, idem_ttl, fingerprint = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local pass_ok = ARGV[8]

-- This call ran before (a re-send): the same answer, nothing taken again. (The record stays
-- until the order has ended and MySQL holds the end, seconds at least; a re-send comes within
-- the client's command timeout.)
if redis.call('HEXISTS', orders_key, order_id) == 1 then
  return {'admitted', order_id, tonumber(redis.call('GET', stock_key) or '0')}
end

-- Redis's clock, read once for the limits and the sale's window.
local now_us = clock_us()

-- The buyer's units and the rate limits' TATs, in one read. The limits come before anything
-- else: a refused purchase reads and takes nothing (no stock, no stored answer). After the
-- re-send check, so that a re-sent call is not charged twice.
local bought, refusal, charge = shopper_limits(buyers_key, user, ARGV, 10, limits, now_us)
if refusal then
  return refusal
end

local sale = redis.call('HMGET', sale_key, 'status', 'starts_ms', 'ends_ms', 'per_user_limit', 'price',
  'window_ms', 'queued')

-- Charges the limits and answers `reply`, when the sale exists (a buyers hash made for a sale
-- that is gone would have no owner to remove it).
local function charged(reply)
  if #charge > 0 and sale[1] then
    redis.call('HSET', buyers_key, unpack(charge))
  end
  return reply
end

-- Stored answers: fingerprint \n code \n order_id \n quantity \n admitted_ms [\n remaining]
-- (answers stored before `remaining` was kept have five lines).
if idem_key then
  local stored = redis.call('GET', idem_key)
  if stored then
    local fp, code, oid, q, at, left =
      string.match(stored, '^(.-)\n(.-)\n(.-)\n(.-)\n([^\n]*)\n?(.*)$')
    if fp ~= fingerprint then
      return charged({'idempotency_key_reused'})
    end
    return charged({'replay', code, oid, q, at, left})
  end
end

local function remember(code, oid, at, left)
  if idem_key then
    redis.call('SET', idem_key,
      fingerprint .. '\n' .. code .. '\n' .. oid .. '\n' .. qty .. '\n' .. at .. '\n' .. left,
      'EX', idem_ttl)
  end
end

if not sale[1] then
  return {'not_found'}
end

-- A sale behind a waiting room: only a shopper the queue admitted (the gateway verified the
-- signed pass) may buy. Not remembered: the same request may pass with a pass.
if sale[7] == '1' and pass_ok ~= '1' then
  return charged({'queue_pass_required'})
end

local now_ms = math.floor(now_us / 1000)
if sale[1] ~= 'active' or now_ms < tonumber(sale[2]) or now_ms >= tonumber(sale[3]) then
  -- Not remembered: the same request may succeed once the sale opens.
  return charged({'sale_not_active'})
end

if bought + qty > tonumber(sale[4]) then
  remember('limit_exceeded', '', 0, '')
  return charged({'limit_exceeded'})
end

local stock = tonumber(redis.call('GET', stock_key) or '0')
if stock < qty then
  remember('sold_out', '', 0, stock)
  return charged({'sold_out', stock})
end

if redis.call('XLEN', outbox_key) >= outbox_max then
  return charged({'overloaded'})
end

local remaining = redis.call('DECRBY', stock_key, qty)
-- The buyer's units and the limits' charge in one write.
redis.call('HSET', buyers_key, user, bought + qty, unpack(charge))
redis.call('HINCRBY', sale_key, 'admitted', qty)
redis.call('HINCRBY', sale_key, 'held', qty)
local pay_by = now_ms + tonumber(sale[6] or '600000')
redis.call('HSET', orders_key, order_id,
  user .. '\n' .. qty .. '\n' .. now_ms .. '\n' .. pay_by .. '\nheld\n\n')
redis.call('ZADD', holds_key, pay_by, order_id)
local price = sale[5]
redis.call('XADD', outbox_key, '*',
  'order_id', order_id, 'user_id', user, 'quantity', qty, 'unit_price', price,
  'admitted_ms', now_ms, 'pay_by_ms', pay_by, 'trace_id', trace_id)
remember('admitted', order_id, now_ms, '')
return {'admitted', order_id, remaining}
