-- policy_cleanup.lua: remove the keys of a coupon policy whose life is over, in one step and by
-- Redis's clock.
--
-- A policy is over once its last coupon has expired (`redeem_until_ms`): every script that
-- changes a coupon refuses from then on (a claim at `ends_ms`, which is never later; a
-- redemption or its cancellation at the coupon's expiry), so after that only the relay still
-- reads the outbox. Its keys go once the policy has been over for the grace period AND its
-- outbox is empty (every coupon event reached Kafka): nothing is left to send and nothing can
-- be written any more. Restore loads only policies whose coupons can still change, so it
-- never brings a removed one back.
--
-- Coupon hashes (fg:{c:7}:cpn:<id>) are not listed here: each carries its own expiry from the
-- moment it is written (`lua/claim_coupon.lua`: the coupon's expiry plus the same grace;
-- `lua/load_coupon.lua`: a minute past it), so they are gone by the time the policy is,
-- without a list of them to keep, and a policy that hands out coupons for months keeps only
-- the unexpired ones. Stored idempotency answers keep their own TTL.
--
-- Several gateways may run this at once: the first removes, the others find it `gone`.
--
-- KEYS (all share the policy's hash tag)
--   1  policy     hash: redeem_until_ms (or expires_ms / ends_ms + valid_for_ms)
--   2  remaining  string
--   3  holders    hash
--   4  outbox     stream
-- ARGV
--   1  grace period in ms after `redeem_until_ms`
-- Reply
--   'busy'     the outbox holds entries: not yet
--   'open'     not over by the grace yet (or the policy's end cannot be read): not yet
--   'cleaned'  the keys were removed now
--   'gone'     the policy hash was not there (already removed); what was left is removed

local policy_key, remaining_key, holders_key, outbox_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local grace_ms = tonumber(ARGV[1])

if redis.call('XLEN', outbox_key) > 0 then
  return 'busy'
end

local policy = redis.call('HMGET', policy_key,
  'status', 'redeem_until_ms', 'expires_ms', 'ends_ms', 'valid_for_ms')
if not policy[1] then
  -- No policy hash: nothing can claim, and the load script writes all three keys together.
  redis.call('DEL', remaining_key, holders_key, outbox_key)
  return 'gone'
end

local until_ms = tonumber(policy[2] or '')
if not until_ms then
  local fixed = tonumber(policy[3] or '0') or 0
  if fixed > 0 then
    until_ms = fixed
  elseif policy[4] then
    until_ms = (tonumber(policy[4]) or 0) + (tonumber(policy[5] or '0') or 0)
  end
end
if not until_ms or until_ms <= 0 then
  return 'open'
end

local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
if now_ms < until_ms + grace_ms then
  return 'open'
end

redis.call('DEL', policy_key, remaining_key, holders_key, outbox_key)
return 'cleaned'
