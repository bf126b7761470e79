-- rate_limit.lua: rate limits by GCRA (the generic cell rate algorithm), judged by Redis's
-- clock so that every gateway shares one budget per key.
--
-- Each limit keeps one key: its TAT (theoretical arrival time, microseconds of Redis's clock).
-- A request costs one emission interval T = 1 s / rate; it is allowed when the new TAT,
-- max(TAT, now) + T, is no further ahead of now than burst * T. All the limits of one call
-- are judged before any is charged: a request refused by one takes nothing from the others.
-- A key expires by itself when its TAT passes (then the bucket is full again, the same as no
-- key): its TTL is its owner.
--
-- Two uses. (1) On its own (EVALSHA), for the routes whose action has no script of its own:
-- the whole file. (2) Folded into lua/purchase.lua and lua/claim_coupon.lua, so that those
-- pay no second round trip: the gateway puts the text above the line `-- end of prelude`
-- in front of them, and they call `rate_limit` with their own KEYS and ARGV.
--
-- rate_limit(keys, first_key, args, first_arg, count): the limits are keys[first_key ..
-- first_key + count - 1]; limit i (from 0) has its emission interval in microseconds at
-- args[first_arg + 2i] and its burst at args[first_arg + 2i + 1].
-- Returns {'ok', remaining, next_us}: requests still allowed at once under the tightest limit,
-- and microseconds until it allows one more; or {'rate_limited', index, retry_us}: the first
-- limit (from 1) that refuses, and microseconds until it would allow this request.
--
-- KEYS (standalone; one hash tag per call)
--   1..n  one key per limit, e.g. fg:{u:ann}:rl:read
-- ARGV (standalone)
--   2i-1  emission interval of limit i, microseconds (1 s / rate, rounded up)
--   2i    burst of limit i (requests allowed at once)
-- Replies: as rate_limit's, above.

local function rate_limit(keys, first_key, args, first_arg, count)
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
  local tats = {}
  local remaining, next_us = nil, 0
  for i = 0, count - 1 do
    local interval = tonumber(args[first_arg + 2 * i])
    local tau = interval * tonumber(args[first_arg + 2 * i + 1])
    local tat = tonumber(redis.call('GET', keys[first_key + i]) or '0')
    if tat < now then
      tat = now
    end
    local new_tat = tat + interval
    if new_tat - now > tau then
      return {'rate_limited', i + 1, new_tat - now - tau}
    end
    tats[i + 1] = new_tat
    local left = math.floor((tau - (new_tat - now)) / interval)
    if remaining == nil or left < remaining then
      remaining = left
      -- One more request fits once the TAT has fallen (left + 1) intervals behind now + tau.
      next_us = new_tat - tau + (left + 1) * interval - now
    end
  end
  for i = 1, count do
    -- As digits: a number argument could reach Redis in exponent form and lose microseconds.
    redis.call('SET', keys[first_key + i - 1], string.format('%d', tats[i]),
      'PX', math.max(1, math.ceil((tats[i] - now) / 1000)))
  end
  return {'ok', remaining or 0, next_us}
end
-- end of prelude

return rate_limit(KEYS, 1, ARGV, 1, #KEYS)
