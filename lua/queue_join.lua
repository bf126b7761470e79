-- queue_join.lua: a shopper joins a sale's waiting room, once.
--
-- Before the sale's start (by Redis's clock) a ticket waits for the draw without a position
-- (`pre`, in arrival order). After the start and before the draw ran it waits in `late`;
-- queue_draw.lua gives those positions right after the drawn ones, in arrival order. After
-- the draw it takes the next position at once. A user who joined before gets the same ticket
-- back (and counts as having polled).
--
-- KEYS (all share the sale's hash tag)
--   1 q        hash: settings and counters (queue_open.lua)
--   2 tickets  hash: ticket id -> "user\nstatus\nposition\npass_expiry_ms"
--              status: waiting | admitted | expired | dropped; position "" before the draw
--   3 users    hash: user id -> ticket id
--   4 seen     sorted set: waiting ticket id -> last poll (ms), for dropping idle ones
--   5 pre      sorted set: ticket id -> arrival number, joined before the start
--   6 late     sorted set: ticket id -> arrival number, joined after the start, before the draw
--   7 line     sorted set: waiting ticket id -> position (drawn ones first)
-- ARGV
--   1 user id   2 ticket id to give if the user has none (random, made by the gateway)
-- Replies
--   {'joined', ticket_id, position}      position "" until the draw
--   {'existing', ticket_id, record}      the user's ticket (record as in `tickets`)
--   {'not_found'}                        no waiting room for this sale
--   {'not_open'} | {'closed'}            before opens_ms | after the sale's end

local q_key, tickets_key, users_key, seen_key, pre_key, late_key, line_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local user, ticket = ARGV[1], ARGV[2]

local q = redis.call('HMGET', q_key, 'opens_ms', 'starts_ms', 'ends_ms', 'drawn')
if not q[1] then
  return {'not_found'}
end
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

local existing = redis.call('HGET', users_key, user)
if existing then
  redis.call('ZADD', seen_key, 'XX', now_ms, existing)
  return {'existing', existing, redis.call('HGET', tickets_key, existing) or ''}
end
if now_ms < tonumber(q[1]) then
  return {'not_open'}
end
if now_ms >= tonumber(q[3]) then
  return {'closed'}
end

local arrival = redis.call('HINCRBY', q_key, 'joined', 1)
local position = ''
if now_ms < tonumber(q[2]) then
  redis.call('ZADD', pre_key, arrival, ticket)
elseif q[4] ~= '1' then
  redis.call('ZADD', late_key, arrival, ticket)
else
  position = redis.call('HINCRBY', q_key, 'next_pos', 1)
  redis.call('ZADD', line_key, position, ticket)
end
redis.call('HSET', tickets_key, ticket, user .. '\nwaiting\n' .. position .. '\n')
redis.call('HSET', users_key, user, ticket)
redis.call('ZADD', seen_key, now_ms, ticket)
return {'joined', ticket, tostring(position)}
