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
-- or a gateway clock ahead of Redis's).
--
-- KEYS (share the owner's hash tag)
--   1  state hash of the owner (fg:{s:42}:sale or fg:{c:7}:policy)
--   2  outbox stream (fg:{s:42}:outbox or fg:{c:7}:outbox)
-- A sale's open orders end after the sale is over too (cancelled, expired, paid), each end
-- appended to the outbox by order_close.lua: while the sale holds units for open orders
-- (`held` > 0) its outbox stays watched, and the last end, which brings `held` to 0, is in
-- the outbox before this script can find it empty.
--
-- ARGV
--   1  field of the state hash holding the end in ms (`ends_ms` or `redeem_until_ms`)
--   2  grace period in ms added to the end
--   3  (optional) field of the state hash counting what is still open (`held`), '' if none
-- Reply
--   'busy'     the outbox holds entries: keep watching
--   'open'     the owner is not over yet (end + grace not reached), or still has open
--              orders: keep watching
--   'retired'  empty and over (or the owner's state is gone, so nothing can append): stop.
--              When the owner's state is gone (cleaned up), the empty stream is deleted too:
--              a relay that read it just before the cleanup may have made it again with its
--              consumer group, and nothing else would ever remove it.

local state_key, outbox_key = KEYS[1], KEYS[2]
local field, grace_ms = ARGV[1], tonumber(ARGV[2])

if redis.call('XLEN', outbox_key) > 0 then
  return 'busy'
end
if ARGV[3] and ARGV[3] ~= '' and tonumber(redis.call('HGET', state_key, ARGV[3]) or '0') > 0 then
  return 'open'
end
local ends_ms = redis.call('HGET', state_key, field)
if ends_ms then
  local time = redis.call('TIME')
  local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  if now_ms < tonumber(ends_ms) + grace_ms then
    return 'open'
  end
else
  redis.call('DEL', outbox_key)
end
return 'retired'
