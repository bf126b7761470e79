-- points_use.lua: spend a user's points on an order, atomically, in one round trip.
--
-- The user's point cache (a hash) holds:
--   balance   points spendable now: the MySQL balance at `version` minus `pending`
--   version   the `point_balances.version` the entry reflects
--   pending   points spent (+) or given back (-) in Redis whose event is not persisted yet
--   tx:<txid> each pending change, signed as in `pending` (a use +amount, a refund -amount)
--   floor     (only while there is no `version`) the lowest version a rebuild may start from
-- `balance` never goes below zero here, whatever the concurrency: this script is the only
-- writer that takes points, and Redis runs it alone.
--
-- Expiry (`points.cache_ttl_secs`): a cache is only a copy of MySQL while nothing of it is
-- pending, and then it may go: the next read rebuilds it from MySQL (`lua/points_fill.lua`).
-- A `tx:<txid>` field, though, is a change MySQL does not hold yet; a rebuild without it would
-- give the points back to spend again. So a cache with any `tx:` field never expires: this
-- script and `lua/points_cancel.lua`, which add one, PERSIST the key; the writes that may
-- leave none (`lua/points_settle.lua` when the persister has written the last one,
-- `lua/points_fill.lua`) set the TTL again, counted from that write, whenever none is left.
-- No TTL can therefore run out under a pending change, however long Kafka or the persister
-- is away. (A `floor` left alone keeps its own short TTL, see points_settle.lua.)
--
-- Safe to run twice: the Redis client re-sends a call whose connection closed before the
-- reply came, and the gateway makes a fresh txid for every call, so a use record that exists
-- already was written by this call: it answers `used` again with the balance the first run
-- answered, and takes nothing.
--
-- KEYS (all share the bucket's hash tag, e.g. fg:{p:7}:...)
--   1  cache    the user's point cache (fg:{p:7}:pts:<user>)
--   2  record   hash of this use, for its cancellation (fg:{p:7}:puse:<txid>): user, amount,
--               order_id, status, at_ms, balance (the balance the use answered)
--   3  outbox   the bucket's stream of point events, read by the relay
--   4  idem     (optional) string: the stored answer for this user's Idempotency-Key
-- ARGV
--   1  user id
--   2  points to spend (integer >= 1)
--   3  txid to give the use (`use-<uuid>`, unique per call, made by the gateway)
--   4  order id
--   5  trace id
--   6  outbox bound: refuse with `overloaded` when the outbox holds this many entries
--   7  idempotency TTL in seconds
--   8  request fingerprint (compared on replay)
--   9  TTL of the use record in seconds
-- Replies (array, first element is the code)
--   {'used', txid, balance}
--   {'replay', txid, balance}                the stored answer for this key and request
--   {'idempotency_key_reused'}               same key, another request
--   {'miss'}                                 no cache: rebuild it from MySQL, then retry
--   {'insufficient_points', balance}
--   {'overloaded'}

local cache_key, record_key, outbox_key, idem_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local user, amount, txid, order_id, trace_id =
  ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5]
local outbox_max, idem_ttl, fingerprint, record_ttl =
  tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8], tonumber(ARGV[9])

-- This call ran before (a re-send): the same answer, nothing taken again.
local done = redis.call('HMGET', record_key, 'user', 'balance')
if done[1] == user then
  return {'used', txid, tonumber(done[2] or redis.call('HGET', cache_key, 'balance') or '0')}
end

-- Stored answers: fingerprint \n txid \n balance
if idem_key then
  local stored = redis.call('GET', idem_key)
  if stored then
    local fp, tid, bal = string.match(stored, '^(.-)\n(.-)\n(.-)$')
    if fp ~= fingerprint then
      return {'idempotency_key_reused'}
    end
    return {'replay', tid, bal}
  end
end

local cache = redis.call('HMGET', cache_key, 'balance', 'version')
if not cache[2] then
  return {'miss'}
end
local balance = tonumber(cache[1] or '0')
if balance < amount then
  -- Not remembered: the same request may succeed once the user has earned more.
  return {'insufficient_points', balance}
end
if redis.call('XLEN', outbox_key) >= outbox_max then
  return {'overloaded'}
end

local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
balance = redis.call('HINCRBY', cache_key, 'balance', -amount)
redis.call('HINCRBY', cache_key, 'pending', amount)
redis.call('HSET', cache_key, 'tx:' .. txid, amount)
-- A pending change: the cache must not expire until it is settled (see the header).
redis.call('PERSIST', cache_key)
redis.call('HSET', record_key, 'user', user, 'amount', amount, 'order_id', order_id,
  'status', 'used', 'at_ms', now_ms, 'balance', balance)
redis.call('EXPIRE', record_key, record_ttl)
redis.call('XADD', outbox_key, '*',
  'type', 'points.used', 'txid', txid, 'user_id', user, 'amount', amount,
  'order_id', order_id, 'at_ms', now_ms, 'trace_id', trace_id)
if idem_key then
  redis.call('SET', idem_key, fingerprint .. '\n' .. txid .. '\n' .. balance, 'EX', idem_ttl)
end
return {'used', txid, balance}
