-- order_close.lua: every step of an admitted order after its admission — cancelled, expired,
-- paid, a payment started, a paid order's refund asked for and finished — one step per call.
--
-- An order is open (`held`, or `paying` while its charge is in flight) from its admission
-- until it ends; it ends exactly once. This script is the only place an order changes state,
-- and it changes it only from the states each step starts from, so a retry, a second gateway,
-- the sweeper, the saga and a shopper racing each other can never give the same units back
-- twice: whoever comes second finds the order moved on and is told how.
--
--   held ──pay_start──▶ paying ──pay──▶ paid ──cancel──▶ refunding ──refunded──▶ cancelled
--     │                   │ (cancel: payment_declined, the shopper, a manager)
--     ├──cancel/expire────┴──────────────▶ cancelled / expired (units, coupon, points back)
--     └──pay (a manager's mark-paid, or nothing to charge)──▶ paid
--
-- Cancelled or expired: the units go back to the stock, the buyer's per-user count goes down
-- (they may buy again), the order leaves `holds`, and `<prefix>:restock` is published so every
-- gateway forgets its sold-out mark. When coupons or points were reserved on the order, their
-- references are copied to `compensate`, from where the gateway gives them back (each give-back
-- is idempotent, keyed by this order). Paid: the units move from held to paid.
-- Either way the end is appended to the sale's outbox (the relay sends it to the orders topic,
-- keyed by sale id like the admission) and the record keeps the end until the persister has
-- stored it in MySQL (`order_forget.lua`); a paid record stays until the sale's cleanup (the
-- sale hash counts them in `paid_orders`), so a paid order can still be cancelled.
--
-- Payments: `pay_start` moves a held order to `paying`, records the amount to charge (the unit
-- price × quantity less the discounts reserved on the order, never below zero) in the record's
-- last field, moves its hold to pay_by + the payments grace (the sweeper expires it only then),
-- and appends `payment.requested` to the outbox (relayed to the payments topic, worked by the
-- saga). Nothing to charge: paid at once (reason `nothing_to_charge`). `cancel` of a paid order
-- (a manager any time, its shopper before the sale's ends_ms) makes it `refunding` and appends
-- `payment.refund_requested`; `refunded` (the saga, once the provider refunded) ends it
-- cancelled and gives everything back; the units stay counted paid until then.
--
-- No outbox bound: each order moves a bounded number of times, so the entries waiting in an
-- outbox are a small multiple of the sale's stock.
--
-- Judged by Redis's clock: `expire` refuses before the order's deadline (its pay_by; pay_by +
-- grace while paying), `pay` and `pay_start` at or after it. `expire_due` expires, in this
-- one step, the open orders whose deadline has passed, oldest first, up to a count: the
-- sweeper keeps up with a sale's whole rush expiring at once (one call per batch, not one per
-- order), and a batch of 100 keeps Redis busy for a few ms only.
--
-- KEYS (all share the sale's hash tag)
--   1  sale        hash: held, paid, paid_orders counters, price, ends_ms (see purchase.lua)
--   2  stock       string: units left
--   3  buyers      hash: user id -> units admitted
--   4  outbox      stream of the sale's order events
--   5  orders      hash: order id -> user\nqty\nadmitted_ms\npay_by_ms\nstate\nat_ms\nreason
--                  state: held | paying | paid | refunding | cancelled | expired; the last
--                  field is the amount being charged while paying, the reason otherwise
--                  (records from before payment windows: user\nqty, read as held, no pay_by)
--   6  holds       sorted set: order id -> deadline (pay_by; pay_by + grace while paying)
--   7  discounts   hash of the order's discount reservations (order_discount.lua); the field
--                  `<order id>` totals them, `<order id>\nrefs` lists their references
--   8  compensate  hash: order id -> due_ms\nuser\nref\nref... of give-backs still to do
--   9  idem        (optional) string: the caller's Idempotency-Key on this sale (see the end)
-- ARGV
--   1  'cancel' | 'expire' | 'pay' | 'pay_start' | 'refunded', or 'expire_due' (below)
--   2  order id (for 'expire_due': how many due orders to expire at most)
--   3  the caller's user id, or '' for a manager, the sweeper, the saga (any owner)
--   4  reason, one line
--   5  trace id
--   6  restock channel
--   7  the sale id (the restock message)
--   8  how long after the end the sweeper's own pass over its give-backs is due, in ms
--   9  the Idempotency-Key's TTL in seconds (read with KEYS 9)
--   10 pay_start: the payments grace, in ms
--   11 pay_start: the shopper's payment token
-- Replies (state, at_ms, reason, user, quantity, admitted_ms, pay_by_ms follow the code)
--   {'closed', ...}          done now (ended, or for pay_start: the payment started)
--   {'already', ...}         it had ended that way before (a second cancel, a re-send), or a
--                            payment is already in flight (pay_start)
--   {'replayed', ...}        pay_start under the key of a payment it started before
--   {'refunding', ...}       cancel of a paid order: its refund is asked for (or was)
--   {'final', ...}           it had ended another way (paid, expired, cancelled)
--   {'not_due', ...}         expire: the deadline not reached
--   {'window_closed', ...}   pay, pay_start: the deadline passed
--   {'not_found'}            no such open or recently ended order (of this user)
--   {'expired', n, due, id...}  expire_due: n orders expired of the `due` found (a full
--                            batch means more may be due: call again), then the n expired
--                            orders' ids (the sweeper logs each under the pass's trace id)
--   {'idempotency_key_reused'}  the key names another request

local sale_key, stock_key, buyers_key, outbox_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local orders_key, holds_key, discounts_key, compensate_key = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local op, order_id, caller, reason, trace_id = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local channel, sale_id, settle_ms = ARGV[6], ARGV[7], tonumber(ARGV[8])
local grace_ms, token = tonumber(ARGV[10] or '0') or 0, ARGV[11] or ''

local targets = {
  cancel = 'cancelled', expire = 'expired', pay = 'paid', pay_start = 'paying',
  refunded = 'cancelled',
}
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

-- Ends `order_id` as `op` asks (for `caller`, '' for any owner); the reply, as above.
local function close(op, order_id, caller)
  local target, end_reason = targets[op], reason
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
  local function store()
    redis.call('HSET', orders_key, order_id, table.concat(
      {user, qty, admitted_ms, pay_by, state, at_ms, why}, '\n'))
  end
  local units = tonumber(qty)
  -- The buyer's units back in stock and their count down; the order's coupon and points
  -- references to `compensate` (a cancel, an expiry, a refunded paid order).
  local function give_back()
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

  -- A paid order: a cancel asks for its refund (the manager's any time, the shopper's while
  -- the sale runs); `refunded` (the saga, once the provider refunded) ends it cancelled.
  if state == 'paid' and op == 'cancel' then
    local ends_ms = tonumber(redis.call('HGET', sale_key, 'ends_ms') or '0')
    if caller ~= '' and now_ms >= ends_ms then
      return reply('final')
    end
    state, at_ms, why = 'refunding', tostring(now_ms), reason
    store()
    redis.call('HINCRBY', sale_key, 'paid_orders', -1)
    redis.call('XADD', outbox_key, '*',
      'type', 'payment.refund_requested', 'order_id', order_id, 'user_id', user,
      'reason', reason, 'at_ms', now_ms, 'trace_id', trace_id)
    return reply('refunding')
  end
  if state == 'refunding' then
    if op == 'cancel' then
      return reply('refunding')
    end
    if op ~= 'refunded' then
      return reply('final')
    end
    redis.call('HINCRBY', sale_key, 'paid', -units)
    give_back()
    state, at_ms = 'cancelled', tostring(now_ms)
    store()
    redis.call('XADD', outbox_key, '*',
      'type', 'order.cancelled', 'order_id', order_id, 'user_id', user, 'quantity', qty,
      'reason', why, 'at_ms', now_ms, 'trace_id', trace_id)
    return reply('closed')
  end
  if op == 'refunded' then
    return reply(state == 'cancelled' and 'already' or 'final')
  end

  if state ~= 'held' and state ~= 'paying' then
    if state == target then
      return reply('already')
    end
    return reply('final')
  end
  if op == 'pay_start' and state == 'paying' then
    return reply('already')
  end
  -- While a charge is in flight the order stays open past its pay_by, until its hold's
  -- score: pay_by + the payments grace.
  local deadline = tonumber(pay_by ~= '' and pay_by or '0')
  if state == 'paying' then
    deadline = tonumber(redis.call('ZSCORE', holds_key, order_id) or deadline)
  end
  if op == 'expire' and (pay_by == '' or now_ms < deadline) then
    return reply('not_due')
  end
  if (op == 'pay' or op == 'pay_start') and pay_by ~= '' and now_ms >= deadline then
    return reply('window_closed')
  end

  if op == 'pay_start' then
    local price = tonumber(redis.call('HGET', sale_key, 'price') or '0')
    local discount = tonumber(redis.call('HGET', discounts_key, order_id) or '0')
    local amount = price * units - discount
    if amount < 0 then
      amount = 0
    end
    if amount > 0 then
      state, at_ms, why = 'paying', tostring(now_ms), string.format('%d', amount)
      store()
      local give_up_ms = deadline + grace_ms
      redis.call('ZADD', holds_key, give_up_ms, order_id)
      redis.call('XADD', outbox_key, '*',
        'type', 'payment.requested', 'order_id', order_id, 'user_id', user,
        'amount', why, 'payment_token', token, 'pay_by_ms', pay_by,
        'give_up_ms', give_up_ms, 'at_ms', now_ms, 'trace_id', trace_id)
      return reply('closed')
    end
    -- Nothing to charge: paid at once, no provider involved.
    target, end_reason = 'paid', 'nothing_to_charge'
  end

  redis.call('ZREM', holds_key, order_id)
  redis.call('HINCRBY', sale_key, 'held', -units)
  if target == 'paid' then
    redis.call('HINCRBY', sale_key, 'paid', units)
    redis.call('HINCRBY', sale_key, 'paid_orders', 1)
  else
    give_back()
  end

  state, at_ms, why = target, tostring(now_ms), end_reason
  store()
  redis.call('XADD', outbox_key, '*',
    'type', 'order.' .. target, 'order_id', order_id, 'user_id', user, 'quantity', qty,
    'reason', end_reason, 'at_ms', now_ms, 'trace_id', trace_id)
  return reply('closed')
end

-- The sweeper's batch: every open order whose deadline has passed, up to ARGV 2 of them.
if op == 'expire_due' then
  local due = redis.call('ZRANGEBYSCORE', holds_key, '-inf', now_ms, 'LIMIT', 0,
    tonumber(order_id))
  local expired, reply = 0, {'expired', 0, #due}
  for _, id in ipairs(due) do
    local code = close('expire', id, '')[1]
    if code == 'closed' then
      expired = expired + 1
      reply[3 + expired] = id
    elseif code ~= 'not_due' then
      -- A hold without an open record (never written so by these scripts): drop it, or it
      -- would stay first in line and stop every later expiry.
      redis.call('ZREM', holds_key, id)
    end
  end
  if expired > 0 then
    redis.call('PUBLISH', channel, sale_id)
  end
  reply[2] = expired
  return reply
end

if not targets[op] then
  return redis.error_reply('order_close: unknown operation ' .. tostring(op))
end

-- The Idempotency-Key names this end of this order ('end\n<op>\n<order id>'); a payment
-- started under it is stored so ('...\nclosed'): asked again, it answers `replayed` with the
-- order as it is now (pending, or paid since), not a refusal of a second payment. Every other
-- answer is the same on every call, so it needs no storing.
local idem_key = KEYS[9]
local asked = 'end\n' .. op .. '\n' .. order_id
local stored = idem_key and redis.call('GET', idem_key)
if stored and stored ~= asked and stored ~= asked .. '\nclosed' then
  return {'idempotency_key_reused'}
end

local answer = close(op, order_id, caller)
if stored == asked .. '\nclosed' and answer[1] ~= 'not_found' then
  answer[1] = 'replayed'
elseif idem_key and not stored then
  local value = asked
  if op == 'pay_start' and answer[1] == 'closed' then
    value = asked .. '\nclosed'
  end
  redis.call('SET', idem_key, value, 'EX', tonumber(ARGV[9]))
end
if answer[1] == 'closed' and (answer[2] == 'cancelled' or answer[2] == 'expired') then
  redis.call('PUBLISH', channel, sale_id)
end
return answer
