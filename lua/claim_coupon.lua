-- claim_coupon.lua: claim one first-come coupon of a policy, atomically, in one round trip.
--
-- Checks, in order: whether this very call ran before (the coupon exists), the idempotency
-- key (when given), that the policy exists, its status and claim window (judged by Redis's
-- own clock), the user's per-user limit, the coupons left, the outbox bound. On success: takes
-- one coupon, counts it for the user, stores the coupon (for redeem and cancel), appends
-- `coupon.issued` to the policy's outbox, and stores the answer under the idempotency key.
--
-- Safe to run twice: the Redis client re-sends a call whose connection closed before the
-- reply came, and the gateway makes a fresh coupon id for every call, so a coupon that exists
-- already was issued by this call: it answers `issued` again and takes nothing.
--
-- The coupon hash expires by itself (PEXPIREAT, Redis's clock) `keep_ms` after the coupon
-- does: from its expiry on no script changes it (redeem and cancel refuse), the relay never
-- reads it, and a list shows MySQL's record instead. So its owner is its TTL, and a policy
-- handing out coupons for months keeps only the unexpired ones (`lua/policy_cleanup.lua`
-- removes the policy's other keys once it is over).
--
-- KEYS (all share the policy's hash tag, e.g. fg:{c:7}:...)
--   1  policy     hash: status, starts_ms, ends_ms, per_user_limit, valid_for_ms, expires_ms,
--                 issued
--   2  remaining  string: coupons left to claim
--   3  holders    hash: user id -> coupons claimed; and the rate limits' TATs, one field per
--                 limit named by rate_limit_field (lua/rate_limit.lua; never a user id)
--   4  outbox     stream of coupon events, read by the relay
--   5  coupon     hash of the coupon to issue (fg:{c:7}:cpn:<coupon id>); its `claim_no`
--                 is kept for the answer to a re-sent call; it expires `keep_ms` after the
--                 coupon
--   6  idem       (optional) string: the stored answer for this user's Idempotency-Key
-- ARGV
--   1  user id
--   2  coupon id to use if issued (unique per call, made by the gateway)
--   3  trace id
--   4  outbox bound: refuse with `overloaded` when the outbox holds this many entries
--   5  idempotency TTL in seconds
--   6  keep_ms: how long the coupon hash outlives the coupon's expiry, ms (absent: 0)
--   7  n: how many rate limits (absent: 0)
--   8.. per limit i (from 0): ARGV 8+3i its emission interval in µs, ARGV 9+3i its burst,
--       ARGV 10+3i whom it limits (`u:<user>`: per user per policy; `a:<address>`). Judged
--       first, by the `judge` function the gateway puts in front of this script from
--       lua/rate_limit.lua; a refused claim takes nothing. An allowed one is charged whatever
--       its answer, except `not_found` (no policy: no holders hash to keep the TATs) and a
--       re-sent call (charged the first time).
-- Replies (array, first element is the code)
--   {'issued', coupon_id, expires_ms, claim_no, remaining}   remaining: coupons left now
--   {'replay', code, coupon_id, expires_ms}    the stored answer for this key
--   {'not_found'} | {'policy_not_active'} | {'already_claimed'} | {'exhausted'} | {'overloaded'}
--   {'rate_limited', index, retry_us}          limit `index` (from 1) refused; it allows
--                                              this claim in retry_us µs

local limits = tonumber(ARGV[7] or '0') or 0
local policy_key, remaining_key, holders_key, outbox_key, coupon_key, idem_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local user, coupon_id, trace_id = ARGV[1], ARGV[2], ARGV[3]
local outbox_max, idem_ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local keep_ms = tonumber(ARGV[6] or '0') or 0

-- This call ran before (a re-send): the same answer, nothing taken again.
local issued = redis.call('HMGET', coupon_key, 'user', 'expires_ms', 'claim_no')
if issued[1] == user then
  local claim_no = issued[3] or redis.call('HGET', holders_key, user) or '1'
  return {'issued', coupon_id, tonumber(issued[2]), tonumber(claim_no),
    tonumber(redis.call('GET', remaining_key) or '0')}
end

-- Redis's clock, read once for the limits and the claim window.
local now_us = clock_us()

-- The user's coupons and the rate limits' TATs, in one read. The limits come before anything
-- else: a refused claim takes nothing (no coupon, no stored answer). After the re-send check,
-- so that a re-sent call is not charged twice.
local held, refusal, charge = shopper_limits(holders_key, user, ARGV, 8, limits, now_us)
if refusal then
  return refusal
end

local policy = redis.call('HMGET', policy_key,
  'status', 'starts_ms', 'ends_ms', 'per_user_limit', 'valid_for_ms', 'expires_ms')

-- Charges the limits and answers `reply`, when the policy exists (a holders hash made for a
-- policy that is gone would have no owner to remove it).
local function charged(reply)
  if #charge > 0 and policy[1] then
    redis.call('HSET', holders_key, unpack(charge))
  end
  return reply
end

-- Stored answers: code \n coupon_id \n expires_ms
if idem_key then
  local stored = redis.call('GET', idem_key)
  if stored then
    local code, cid, exp = string.match(stored, '^(.-)\n(.-)\n(.-)$')
    return charged({'replay', code, cid, exp})
  end
end

local function remember(code, cid, exp)
  if idem_key then
    redis.call('SET', idem_key, code .. '\n' .. cid .. '\n' .. exp, 'EX', idem_ttl)
  end
end

if not policy[1] then
  return {'not_found'}
end

local now_ms = math.floor(now_us / 1000)
if policy[1] ~= 'active' or now_ms < tonumber(policy[2]) or now_ms >= tonumber(policy[3]) then
  -- Not remembered: the same request may succeed once the policy opens or resumes.
  return charged({'policy_not_active'})
end

if held >= tonumber(policy[4]) then
  remember('already_claimed', '', 0)
  return charged({'already_claimed'})
end

if tonumber(redis.call('GET', remaining_key) or '0') < 1 then
  remember('exhausted', '', 0)
  return charged({'exhausted'})
end

if redis.call('XLEN', outbox_key) >= outbox_max then
  return charged({'overloaded'})
end

local valid_for = tonumber(policy[5])
local expires_ms = tonumber(policy[6])
if valid_for > 0 then
  expires_ms = now_ms + valid_for
end
local remaining = redis.call('DECR', remaining_key)
-- The user's count and the limits' charge in one write.
local claim_no = held + 1
redis.call('HSET', holders_key, user, claim_no, unpack(charge))
redis.call('HINCRBY', policy_key, 'issued', 1)
redis.call('HSET', coupon_key, 'user', user, 'status', 'issued', 'expires_ms', expires_ms,
  'seq', 1, 'order_id', '', 'discount', 0, 'issued_ms', now_ms, 'claim_no', claim_no)
redis.call('PEXPIREAT', coupon_key, expires_ms + keep_ms)
redis.call('XADD', outbox_key, '*',
  'type', 'coupon.issued', 'coupon_id', coupon_id, 'user_id', user, 'claim_no', claim_no,
  'at_ms', now_ms, 'expires_ms', expires_ms, 'trace_id', trace_id)
remember('issued', coupon_id, expires_ms)
return {'issued', coupon_id, expires_ms, claim_no, remaining}
