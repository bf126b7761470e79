-- order_close.lua: end one open order — cancelled, expired or paid — in one step.
--
-- An order is open (`held`) from its admission until it ends; it ends exactly once. This
-- script is the only place an order ends, and it ends it only if the order is still held, so
-- a retry, a second gateway, the sweeper and a shopper racing each other can never give the
-- same units back twice: whoever comes second finds the order ended and is told how.
--
-- Cancelled or expired: the units go back to the stock, the buyer's per-user count goes down
-- (they may buy again), the order leaves `holds`, and `<prefix>:restock` is published so every
-- gateway forgets its sold-out mark. When coupons or points were reserved on the order, their
-- references are copied to `compensate`, from where the gateway gives them back (each give-back
-- is idempotent, keyed by this order). Paid: the units move from held to paid.
-- Either way the end is appended to the sale's outbox (the relay sends it to the orders topic,
-- keyed by order id like the admission) and the record keeps the end until the persister has
-- stored it in MySQL (`order_forget.lua`).
--
-- No outbox bound: each order ends once, so the ends waiting in an outbox are never more than
-- the open orders, and those are never more than the sale's stock.
--
-- Judged by Redis's clock: `expire` refuses before the order's pay_by, `pay` at or after it.
-- `expire_due` expires, in this one step, the open orders whose pay_by has passed, oldest
-- first, up to a count: the sweeper keeps up with a sale's whole rush expiring at once (one
-- call per batch, not one per order), and a batch of 100 keeps Redis busy for a few ms only.
--
-- KEYS (all share the sale's hash tag)
--   1  sale        hash: held, paid counters (and the rest, see purchase.lua)
--   2  stock       string: units left
--   3  buyers      hash: user id -> units admitted
--   4  outbox      stream of the sale's order events
--   5  orders      hash: order id -> user\nqty\nadmitted_ms\npay_by_ms\nstate\nat_ms\nreason
--                  (records from before payment windows: user\nqty, read as held, no pay_by)
--   6  holds       sorted set: order id -> pay_by_ms of the open orders
--   7  discounts   hash of the order's discount reservations (order_discount.lua); the field
--                  `<order id>\nrefs` lists its references
--   8  compensate  hash: order id -> due_ms\nuser\nref\nref... of give-backs still to do
--   9  idem        (optional) string: the caller's Idempotency-Key on this sale; it names
--                  this end of this order for its TTL, and another request under the same
--                  key is refused (the answer itself needs no storing: every end answers
--                  the same on every call)
-- ARGV
--   1  'cancel' | 'expire' | 'pay', or 'expire_due' (the sweeper's batch, below)
--   2  order id (for 'expire_due': how many due orders to expire at most)
--   3  the caller's user id, or '' for a manager, the sweeper or the back office (any owner)
--   4  reason, one line
--   5  trace id
--   6  restock channel
--   7  the sale id (the restock message)
--   8  how long after the end the sweeper's own pass over its give-backs is due, in ms
--   9  (with KEYS 9) the Idempotency-Key's TTL in seconds
-- Replies (state, at_ms, reason, user, quantity, admitted_ms, pay_by_ms follow the code)
--   {'closed', ...}          ended now
--   {'already', ...}         it had ended that way before (a second cancel, a re-send)
--   {'final', ...}           it had ended another way (paid, expired, cancelled)
--   {'not_due', ...}         expire: pay_by not reached
--   {'window_closed', ...}   pay: pay_by passed
--   {'not_found'}            no such open or recently ended order (of this user)
--   {'expired', n, due}      expire_due: n orders expired of the `due` found (a full batch
--                            means more may be due: call again)
--   {'idempotency_key_reused'}  the key names another request

local sale_key, stock_key, buyers_key, outbox_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local orders_key, holds_key, discounts_key, compensate_key = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local op, order_id, caller, reason, trace_id = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local channel, sale_id, settle_ms = ARGV[6], ARGV[7], tonumber(ARGV[8])

local targets = {cancel = 'cancelled', expire = 'expired', pay = 'paid'}
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

-- Ends `order_id` as `op` asks (for `caller`, '' for any owner); the reply, as above.
local function close(op, order_id, caller)
  local target = targets[op]
  local record = redis.call('HGET', orders_key, order_id)
  if not record then
    return {'not_found'}
  end
  local user, qty, admitted_ms, pay_by, state, at_ms, why =
    string.match(record, '^(.-)\n(.-)\n(.-)\n(.-)\n(.-)\n(.-)\n(.*)$')
  if not user then
    user, qty = string.match(record, '^(.-)\n(.*)$')
    admitted_ms, pay_by, state, at_ms, why = '', '', 'held', '', ''
  end
  if caller ~= '' and caller ~= user then
    return {'not_found'}
  end

  local function reply(code)
    return {code, state, at_ms, why, user, qty, admitted_ms, pay_by}
  end

  if state ~= 'held' then
    if state == target then
      return reply('already')
    end
    return reply('final')
  end
  if op == 'expire' and (pay_by == '' or now_ms < tonumber(pay_by)) then
    return reply('not_due')
  end
  if op == 'pay' and pay_by ~= '' and now_ms >= tonumber(pay_by) then
    return reply('window_closed')
  end

  local units = tonumber(qty)
  redis.call('ZREM', holds_key, order_id)
  redis.call('HINCRBY', sale_key, 'held', -units)
  if target == 'paid' then
    redis.call('HINCRBY', sale_key, 'paid', units)
  else
    redis.call('INCRBY', stock_key, units)
    if redis.call('HINCRBY', buyers_key, user, -units) <= 0 then
      redis.call('HDEL', buyers_key, user)
    end
    local refs = redis.call('HGET', discounts_key, order_id .. '\nrefs')
    if refs and refs ~= '' then
      redis.call('HSET', compensate_key, order_id,
        (now_ms + settle_ms) .. '\n' .. user .. '\n' .. refs)
    end
  end

  state, at_ms, why = target, tostring(now_ms), reason
  redis.call('HSET', orders_key, order_id, table.concat(
    {user, qty, admitted_ms, pay_by, state, at_ms, why}, '\n'))
  redis.call('XADD', outbox_key, '*',
    'type', 'order.' .. target, 'order_id', order_id, 'user_id', user, 'quantity', qty,
    'reason', reason, 'at_ms', now_ms, 'trace_id', trace_id)
  return reply('closed')
end

-- The sweeper's batch: every open order whose pay_by has passed, up to ARGV 2 of them.
if op == 'expire_due' then
  local due = redis.call('ZRANGEBYSCORE', holds_key, '-inf', now_ms, 'LIMIT', 0,
    tonumber(order_id))
  local expired = 0
  for _, id in ipairs(due) do
    local code = close('expire', id, '')[1]
    if code == 'closed' then
      expired = expired + 1
    elseif code ~= 'not_due' then
      -- A hold without an open record (never written so by these scripts): drop it, or it
      -- would stay first in line and stop every later expiry.
      redis.call('ZREM', holds_key, id)
    end
  end
  if expired > 0 then
    redis.call('PUBLISH', channel, sale_id)
  end
  return {'expired', expired, #due}
end

if not targets[op] then
  return redis.error_reply('order_close: unknown operation ' .. tostring(op))
end

local idem_key = KEYS[9]
if idem_key then
  local asked = 'end\n' .. op .. '\n' .. order_id
  local stored = redis.call('GET', idem_key)
  if stored and stored ~= asked then
    return {'idempotency_key_reused'}
  end
  if not stored then
    redis.call('SET', idem_key, asked, 'EX', tonumber(ARGV[9]))
  end
end

local answer = close(op, order_id, caller)
if answer[1] == 'closed' and op ~= 'pay' then
  redis.call('PUBLISH', channel, sale_id)
end
return answer
