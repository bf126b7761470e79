-- points_cancel.lua: give back one use of points, at most once.
--
-- The cache layout is described in points_use.lua. The refund is pending like a use, with the
-- opposite sign, until the persister has written it; like a use, it takes the cache's TTL
-- away until then (PERSIST; why in points_use.lua).
--
-- Safe to run twice: the Redis client re-sends a call whose connection closed before the
-- reply came. Every call carries an id of its own (ARGV 9), kept on the use record with the
-- balance the cancellation answered; a call whose id is there already answers `cancelled`
-- again, the same, and gives nothing back twice. Another call finds it `already_cancelled`.
--
-- KEYS (all share the bucket's hash tag)
--   1  cache    the user's point cache
--   2  record   hash of the use (fg:{p:7}:puse:<use txid>): user, amount, order_id, status,
--               and once cancelled: cancelled_ms, cancel_call, cancel_balance
--   3  outbox   the bucket's stream of point events
-- ARGV
--   1  user id (must be the use's)
--   2  the use's txid
--   3  the refund's txid (`refund-<uuid of the use>`)
--   4  trace id
--   5  outbox bound
--   6  TTL of the use record in seconds
--   7  the use's amount as MySQL holds it, when Redis no longer has the record ('' if not known)
--   8  the use's order id as MySQL holds it ('' if not known)
--   9  call id (unique per call, made by the gateway)
-- Replies
--   {'cancelled', amount, balance}
--   {'already_cancelled', amount}
--   {'not_found'}       no such use of this user in Redis (look in MySQL, pass ARGV 7-8)
--   {'miss'}            no cache: rebuild it from MySQL, then retry
--   {'overloaded'}

local cache_key, record_key, outbox_key = KEYS[1], KEYS[2], KEYS[3]
local user, use_txid, refund_txid, trace_id = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local outbox_max, record_ttl = tonumber(ARGV[5]), tonumber(ARGV[6])
local call_id = ARGV[9]

local record = redis.call('HMGET', record_key, 'user', 'amount', 'status', 'cancel_call',
  'cancel_balance')
if not record[1] then
  if ARGV[7] == '' then
    return {'not_found'}
  end
  record = {user, ARGV[7], 'used'}
  redis.call('HSET', record_key, 'user', user, 'amount', ARGV[7], 'order_id', ARGV[8],
    'status', 'used', 'at_ms', 0)
  redis.call('EXPIRE', record_key, record_ttl)
end
if record[1] ~= user then
  return {'not_found'}
end
local amount = tonumber(record[2])
if record[3] == 'cancelled' then
  -- This call ran before (a re-send): the same answer.
  if call_id and call_id ~= '' and record[4] == call_id then
    return {'cancelled', amount, tonumber(record[5])}
  end
  return {'already_cancelled', amount}
end
if not redis.call('HGET', cache_key, 'version') then
  return {'miss'}
end
if redis.call('XLEN', outbox_key) >= outbox_max then
  return {'overloaded'}
end

local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local balance = redis.call('HINCRBY', cache_key, 'balance', amount)
redis.call('HSET', record_key, 'status', 'cancelled', 'cancelled_ms', now_ms,
  'cancel_call', call_id or '', 'cancel_balance', balance)
redis.call('HINCRBY', cache_key, 'pending', -amount)
redis.call('HSET', cache_key, 'tx:' .. refund_txid, -amount)
redis.call('PERSIST', cache_key)
redis.call('XADD', outbox_key, '*',
  'type', 'points.refunded', 'txid', refund_txid, 'use_txid', use_txid, 'user_id', user,
  'amount', amount, 'at_ms', now_ms, 'trace_id', trace_id)
return {'cancelled', amount, balance}
