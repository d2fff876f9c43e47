-- retry: give a failed job back for a later attempt, after a backoff measured
-- on Redis's clock. Only the owner of the entry may do so.
-- KEYS[1] queue STREAM, KEYS[2] delayed ZSET of the lane, KEYS[3] stats HASH,
-- KEYS[4] errors HASH
-- ARGV[1] group, ARGV[2] entry id, ARGV[3] consumer, ARGV[4] job id,
-- ARGV[5] job JSON of the next attempt, ARGV[6] reason, ARGV[7] delay ms
-- Returns 1 when scheduled, 0 when the lease was lost.
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[7]), ARGV[5])
redis.call('HSET', KEYS[4], ARGV[4], ARGV[6])
redis.call('HINCRBY', KEYS[3], 'retried', 1)
return 1
