-- queue_draw.lua: apply the draw the gateway computed (events/src/draw.rs: Lua has no
-- SHA-256) and recorded in MySQL: the tickets that joined before the start take positions
-- 1..n in the given order, then those that joined after the start (before this ran) follow in
-- arrival order. Runs once: a second run (another gateway) changes nothing.
--
-- Every drawn ticket counts as seen now, so its owner has `queue.idle_seconds` from the draw
-- to poll before being dropped.
--
-- KEYS (all share the sale's hash tag)
--   1 q   2 tickets   3 seen   4 pre   5 late   6 line   (as in queue_join.lua)
-- ARGV
--   1 n (tickets drawn)   2..n+1 the ticket ids in position order
-- Replies
--   {'drawn', n, late}   done now: n drawn, `late` placed after them
--   {'already'}          the draw ran before
--   {'stale', have}      the order does not cover exactly the tickets of `pre` (`have` of them):
--                        nothing done; the caller draws again from `pre`
--   {'gone'}             no waiting room

local q_key, tickets_key, seen_key, pre_key, late_key, line_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local n = tonumber(ARGV[1])

local drawn = redis.call('HGET', q_key, 'drawn')
if not drawn then
  return {'gone'}
end
if drawn == '1' then
  return {'already'}
end
local have = redis.call('ZCARD', pre_key)
if have ~= n then
  return {'stale', have}
end
for i = 1, n do
  if not redis.call('ZSCORE', pre_key, ARGV[i + 1]) then
    return {'stale', have}
  end
end
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local function place(ticket, position)
  local record = redis.call('HGET', tickets_key, ticket)
  local owner, status = string.match(record, '^(.-)\n(.-)\n')
  redis.call('HSET', tickets_key, ticket, owner .. '\n' .. status .. '\n' .. position .. '\n')
  redis.call('ZADD', line_key, position, ticket)
  redis.call('ZADD', seen_key, now_ms, ticket)
end

for i = 1, n do
  place(ARGV[i + 1], i)
end
local late = redis.call('ZRANGE', late_key, 0, -1)
for i, ticket in ipairs(late) do
  place(ticket, n + i)
end
redis.call('DEL', pre_key, late_key)
redis.call('HSET', q_key, 'drawn', 1, 'drawn_ms', now_ms, 'next_pos', n + #late,
  'credit', 0, 'tick_ms', now_ms)
return {'drawn', n, #late}
