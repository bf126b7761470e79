-- outbox_retire.lua: decide, in one step and by Redis's clock, whether the relay may stop
-- watching a sale's or a coupon policy's outbox.
--
-- An outbox may leave the relay's active set only when it is empty AND its owner is over by
-- Redis's own clock plus a grace period. Every script that appends to these outboxes refuses
-- once the owner is over by the same clock (a purchase at `ends_ms`, a redemption or a
-- cancellation at its coupon's expiry, which is never after `redeem_until_ms`), so an outbox
-- found empty here after the end stays empty: removing it from the set afterwards (a separate
-- command, on another slot) can no longer strand an entry. Reading the length, the end and the
-- time in separate commands, with the gateway's clock, could (an admission between the steps,
-- or a gateway clock ahead of Redis's). The script only reads.
--
-- KEYS (share the owner's hash tag)
--   1  state hash of the owner (fg:{s:42}:sale or fg:{c:7}:policy)
--   2  outbox stream (fg:{s:42}:outbox or fg:{c:7}:outbox)
-- ARGV
--   1  field of the state hash holding the end in ms (`ends_ms` or `redeem_until_ms`)
--   2  grace period in ms added to the end
-- Reply
--   'busy'     the outbox holds entries: keep watching
--   'open'     the owner is not over yet (end + grace not reached): keep watching
--   'retired'  empty and over (or the owner's state is gone, so nothing can append): stop

local state_key, outbox_key = KEYS[1], KEYS[2]
local field, grace_ms = ARGV[1], tonumber(ARGV[2])

if redis.call('XLEN', outbox_key) > 0 then
  return 'busy'
end
local ends_ms = redis.call('HGET', state_key, field)
if ends_ms then
  local time = redis.call('TIME')
  local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  if now_ms < tonumber(ends_ms) + grace_ms then
    return 'open'
  end
end
return 'retired'
