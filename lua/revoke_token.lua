-- revoke_token.lua: record a token revocation and announce it to every gateway, in one step.
--
-- Each kind of revocation lives in one sorted set whose entries are pruned here (on write)
-- once no token they cover can still be valid, and whose key expires by itself (EXPIREAT) when
-- its last entry would be pruned: the TTL is the owner, so the set holds exactly the live
-- revocations and a gateway that starts (or whose subscriber reconnects after a failover)
-- finds them all with one range read per kind. The PUBLISH inside the script means a recorded
-- revocation is always announced (and an announced one always recorded).
--
-- KEYS (one key per call)
--   1  the kind's sorted set:
--        <prefix>:revoked:tokens  member jti,     score: forget at (the token's exp + leeway)
--        <prefix>:revoked:users   member user id, score: revoked at (Redis's clock)
-- ARGV
--   1  kind: 't' (one token) or 'u' (every token of a user issued up to now)
--   2  the jti ('t') or the user id ('u')
--   3  't': forget at, unix seconds; 'u': how long a user's revocation is kept, seconds
--      (the longest token lifetime plus the leeway)
--   4  the pub/sub channel (<prefix>:revocations)
-- Reply
--   the entry's score: 't' its forget-at, 'u' the revocation time (unix seconds, Redis's
--   clock; tokens with `iat` at or before it are refused). Published as
--   '<kind> <score> <id>'.

local kind = ARGV[1]
local now = tonumber(redis.call('TIME')[1])
local score, keep
if kind == 't' then
  score = tonumber(ARGV[3])
  keep = 0
else
  score = now
  keep = tonumber(ARGV[3])
end

-- Prune what no valid token can match any more.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - keep))
-- GT: a second revocation of the same user (or jti) never moves it backwards.
redis.call('ZADD', KEYS[1], 'GT', score, ARGV[2])
score = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[2]))

-- The key lives as long as its longest-lived entry.
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('EXPIREAT', KEYS[1], tonumber(last[2]) + keep + 1)

redis.call('PUBLISH', ARGV[4], kind .. ' ' .. string.format('%d', score) .. ' ' .. ARGV[2])
return score
