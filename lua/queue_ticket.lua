-- queue_ticket.lua: a ticket as its owner sees it when polling; a waiting ticket's poll keeps
-- it from being dropped as idle.
--
-- KEYS (all share the sale's hash tag)
--   1 q   2 tickets   3 seen   4 line        (as in queue_join.lua)
-- ARGV
--   1 ticket id   2 the caller's user id (someone else's ticket is not found)
-- Replies
--   {'ticket', status, position, pass_expiry_ms, ahead, rate, paused}
--        ahead: waiting tickets before this one in the line (-1 before the draw or when not
--        waiting); rate: admit_per_second; paused "1"/"0"
--   {'not_found'}

local q_key, tickets_key, seen_key, line_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local ticket, user = ARGV[1], ARGV[2]

local record = redis.call('HGET', tickets_key, ticket)
if not record then
  return {'not_found'}
end
local owner, status, position, expiry = string.match(record, '^(.-)\n(.-)\n(.-)\n(.*)$')
if owner ~= user then
  return {'not_found'}
end
local ahead = -1
if status == 'waiting' then
  local time = redis.call('TIME')
  local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  redis.call('ZADD', seen_key, 'XX', now_ms, ticket)
  local rank = redis.call('ZRANK', line_key, ticket)
  if rank then
    ahead = rank
  end
end
local q = redis.call('HMGET', q_key, 'rate', 'paused')
return {'ticket', status, position, expiry, ahead, q[1] or '0', q[2] or '0'}
