-- rate_limit.lua: rate limits by GCRA (the generic cell rate algorithm), judged by Redis's
-- clock so that every gateway shares one budget per limit.
--
-- Each limit keeps one TAT (theoretical arrival time, microseconds of Redis's clock). A request
-- costs one emission interval T = 1 s / rate; it is allowed when the new TAT, max(TAT, now) +
-- T, is no further ahead of now than burst * T. All the limits of one call are judged before
-- any is charged: a request refused by one takes nothing from the others. A TAT in the past
-- is a full bucket, the same as none.
--
-- Two uses of the prelude (the text above the line `-- end of prelude`):
-- (1) This file on its own (EVALSHA), for the routes whose action has no script of its own
--     (reads, admin): each limit's TAT is a key of its own, e.g. fg:{u:ann}:rl:read, that
--     expires by itself when its TAT passes (its TTL is its owner).
-- (2) Put by the gateway in front of lua/purchase.lua and lua/claim_coupon.lua, so that those
--     pay no second round trip. There the TATs are fields of the hash the script reads and
--     writes anyway for the shopper (the sale's buyers, the policy's holders), named
--     rate_limit_field(who): a purchase reads them with the shopper's count in one HMGET
--     (shopper_limits) and writes them with it in one HSET, so the limit adds no call of its own to the purchase
--     (a key per shopper and purchase did: creating, expiring and replicating it cost Redis
--     a fifth of the purchase).
--
-- judge(tats, args, first_arg, stride, count, now): `count` limits, limit i (from 0) with its TAT
-- (digits, or false/nil for none) at tats[i + 1], its emission interval in microseconds at
-- args[first_arg + stride * i] and its burst at args[first_arg + stride * i + 1] (stride 2 on
-- its own; 3 in the scripts, whose third argument per limit names it); `now` is Redis's
-- clock in microseconds. Returns the verdict and the new TATs (nil when refused):
--   {'ok', remaining, next_us}: requests still allowed at once under the tightest limit, and
--                               microseconds until it allows one more
--   {'rate_limited', index, retry_us}: the first limit (from 1) that refuses, and
--                               microseconds until it would allow this request
--
-- KEYS (on its own; one hash tag per call)
--   1..n  one key per limit, e.g. fg:{u:ann}:rl:read
-- ARGV (on its own)
--   2i-1  emission interval of limit i, microseconds (1 s / rate, rounded up)
--   2i    burst of limit i (requests allowed at once)
-- Replies: judge's verdict, above.

local function judge(tats, args, first_arg, stride, count, now)
  local new_tats = {}
  local remaining, next_us = nil, 0
  for i = 0, count - 1 do
    local interval = tonumber(args[first_arg + stride * i])
    local tau = interval * tonumber(args[first_arg + stride * i + 1])
    local tat = tonumber(tats[i + 1] or '0') or 0
    if tat < now then
      tat = now
    end
    local new_tat = tat + interval
    if new_tat - now > tau then
      return {'rate_limited', i + 1, new_tat - now - tau}, nil
    end
    new_tats[i + 1] = new_tat
    local left = math.floor((tau - (new_tat - now)) / interval)
    if remaining == nil or left < remaining then
      remaining = left
      -- One more request fits once the TAT has fallen (left + 1) intervals behind now + tau.
      next_us = new_tat - tau + (left + 1) * interval - now
    end
  end
  return {'ok', remaining or 0, next_us}, new_tats
end

-- Redis's clock in microseconds.
local function clock_us()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000000 + tonumber(time[2])
end

-- A TAT as digits: a number argument could reach Redis in exponent form and lose microseconds.
local function tat_digits(tat)
  return string.format('%d', tat)
end

-- The field of `who`'s TAT (`u:<user>`, `a:<address>`) in a shopper hash. It starts with the
-- byte 0xFF, which no user id has (a JWT `sub` is UTF-8, where that byte never occurs), so it
-- can never be mistaken for a shopper's count.
local function rate_limit_field(who)
  return '\255' .. who
end

-- shopper_limits(hash, shopper, args, first_arg, count, now): the purchase's and the claim's
-- use. Reads the shopper's count and the TATs of `count` limits from the shopper hash `hash` in
-- one HMGET (limit i's rate at args[first_arg + 3i], args[first_arg + 3i + 1], whom it limits
-- at args[first_arg + 3i + 2]) and judges them. Returns the count (0 for none) and either the
-- refusal, or nil and the charge: the new TATs as field, value pairs, for the caller to write
-- with the shopper's new count or on their own, whatever the answer.
local function shopper_limits(hash, shopper, args, first_arg, count, now)
  local fields = {shopper}
  for i = 0, count - 1 do
    fields[i + 2] = rate_limit_field(args[first_arg + 3 * i + 2])
  end
  local got = redis.call('HMGET', hash, unpack(fields))
  local charge = {}
  if count > 0 then
    local verdict, tats = judge({unpack(got, 2)}, args, first_arg, 3, count, now)
    if not tats then
      return tonumber(got[1] or '0'), verdict, nil
    end
    for i = 1, count do
      charge[2 * i - 1] = fields[i + 1]
      charge[2 * i] = tat_digits(tats[i])
    end
  end
  return tonumber(got[1] or '0'), nil, charge
end
-- end of prelude

local now = clock_us()
local tats = {}
for i = 1, #KEYS do
  tats[i] = redis.call('GET', KEYS[i])
end
local verdict, new_tats = judge(tats, ARGV, 1, 2, #KEYS, now)
if new_tats then
  for i = 1, #KEYS do
    redis.call('SET', KEYS[i], tat_digits(new_tats[i]),
      'PX', math.max(1, math.ceil((new_tats[i] - now) / 1000)))
  end
end
return verdict
