-- outbox_ack.lua: acknowledge and delete outbox entries the broker has confirmed, in one step,
-- so an entry is never acknowledged (gone from the pending list) yet left in the stream
-- (counting against the outbox bound forever).
--
-- KEYS
--   1  outbox stream (fg:{s:42}:outbox)
-- ARGV
--   1  consumer group name
--   2.. entry ids to acknowledge and delete
-- Reply
--   number of entries deleted

local ids = {}
for i = 2, #ARGV do
  ids[#ids + 1] = ARGV[i]
end
if #ids == 0 then
  return 0
end
redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
return redis.call('XDEL', KEYS[1], unpack(ids))
