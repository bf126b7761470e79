-- queue_admit.lua: one tick of a sale's waiting room. Every gateway runs it for every queued
-- sale every `queue.tick_ms`; it is idempotent in the sense that matters: admission accrues by
-- Redis's clock since the last tick (whoever ran it), so any number of gateways admit
-- `admit_per_second` together, never more.
--
-- In order:
--   1. before the draw: nothing (or `draw_due` once the sale's start has passed);
--   2. passes past their expiry leave `active`: a ticket whose owner has bought nothing
--      (`buyers`) is `expired`, its slot freed; with a `max_active` cap, a pass whose owner
--      has bought frees its slot at once;
--   3. waiting tickets not polled for `idle` ms are `dropped` (they leave the line);
--   4. admission: credit grows by admit_per_second per second (at most one second's worth, and
--      nothing while paused); as many whole units as there are, within `max_active` passes
--      outstanding, admit the first positions of the line: `admitted`, with the pass expiry.
--
-- KEYS (all share the sale's hash tag)
--   1 q        hash: opens_ms, starts_ms, ends_ms, rate (admit_per_second), max_active (0: none),
--              paused, commitment, drawn, drawn_ms, next_pos (last position given), credit
--              (thousandths of an admission), tick_ms (last tick), and the counters joined,
--              admitted, dropped, expired
--   2 tickets  3 seen   4 line      (as in queue_join.lua)
--   5 active   sorted set: admitted ticket id -> pass expiry (ms): the passes outstanding
--   6 buyers   the sale's hash: user id -> units bought (purchase.lua)
-- ARGV
--   1 pass lifetime (ms)   2 idle time before a waiting ticket is dropped (ms)
--   3 most tickets handled per step in one call (bounds the script's run time)
-- Replies
--   {'ok', admitted, expired, dropped}   what this tick did
--   {'waiting'}                          before the sale's start
--   {'draw_due'}                         the start has passed and the draw has not run
--   {'gone'}                             no waiting room (the sale was cleaned up)

local q_key, tickets_key, seen_key, line_key, active_key, buyers_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local ttl_ms, idle_ms, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])

local q = redis.call('HMGET', q_key, 'starts_ms', 'drawn', 'rate', 'max_active', 'paused',
  'credit', 'tick_ms')
if not q[1] then
  return {'gone'}
end
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
if q[2] ~= '1' then
  if now_ms >= tonumber(q[1]) then
    return {'draw_due'}
  end
  return {'waiting'}
end

local function read(ticket)
  local record = redis.call('HGET', tickets_key, ticket)
  if not record then
    return nil
  end
  return string.match(record, '^(.-)\n(.-)\n(.-)\n(.*)$')
end

-- 2. Passes past their expiry.
local expired = 0
local ended = redis.call('ZRANGEBYSCORE', active_key, '-inf', now_ms, 'LIMIT', 0, cap)
for _, ticket in ipairs(ended) do
  local owner, status, position, expiry = read(ticket)
  if owner and redis.call('HEXISTS', buyers_key, owner) == 0 then
    redis.call('HSET', tickets_key, ticket, owner .. '\nexpired\n' .. position .. '\n' .. expiry)
    expired = expired + 1
  end
  redis.call('ZREM', active_key, ticket)
end
if expired > 0 then
  redis.call('HINCRBY', q_key, 'expired', expired)
end
local max_active = tonumber(q[4] or '0')
if max_active > 0 then
  -- At most max_active of them: a used pass need not hold its slot until it expires.
  for _, ticket in ipairs(redis.call('ZRANGE', active_key, 0, cap - 1)) do
    local owner = read(ticket)
    if not owner or redis.call('HEXISTS', buyers_key, owner) == 1 then
      redis.call('ZREM', active_key, ticket)
    end
  end
end

-- 3. Idle waiting tickets.
local dropped = 0
local idle = redis.call('ZRANGEBYSCORE', seen_key, '-inf', '(' .. (now_ms - idle_ms), 'LIMIT', 0, cap)
for _, ticket in ipairs(idle) do
  local owner, status, position, expiry = read(ticket)
  if owner and status == 'waiting' then
    redis.call('HSET', tickets_key, ticket, owner .. '\ndropped\n' .. position .. '\n' .. expiry)
    redis.call('ZREM', line_key, ticket)
    dropped = dropped + 1
  end
  redis.call('ZREM', seen_key, ticket)
end
if dropped > 0 then
  redis.call('HINCRBY', q_key, 'dropped', dropped)
end

-- 4. Admission at the rate.
local rate = tonumber(q[3] or '0')
local credit = tonumber(q[6] or '0')
local last = tonumber(q[7] or now_ms)
if q[5] == '1' then
  credit = 0
elseif now_ms > last then
  credit = math.min(credit + rate * (now_ms - last), math.max(rate, 1) * 1000)
end
local room = math.floor(credit / 1000)
if max_active > 0 then
  room = math.min(room, max_active - redis.call('ZCARD', active_key))
end
room = math.min(room, cap)
local admitted = 0
if room > 0 then
  local first = redis.call('ZPOPMIN', line_key, room)
  local expiry = now_ms + ttl_ms
  for i = 1, #first, 2 do
    local ticket = first[i]
    local owner, status, position = read(ticket)
    if owner then
      redis.call('HSET', tickets_key, ticket, owner .. '\nadmitted\n' .. position .. '\n' .. expiry)
      redis.call('ZADD', active_key, expiry, ticket)
      admitted = admitted + 1
    end
    redis.call('ZREM', seen_key, ticket)
  end
  redis.call('HINCRBY', q_key, 'admitted', admitted)
  credit = credit - 1000 * admitted
end
redis.call('HSET', q_key, 'credit', credit, 'tick_ms', now_ms)
return {'ok', admitted, expired, dropped}
