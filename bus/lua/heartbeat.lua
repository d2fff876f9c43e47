-- heartbeat: register or refresh a worker, stamped with Redis's clock.
-- KEYS[1] workers HASH, KEYS[2] workers:seen HASH
-- ARGV[1] worker id, ARGV[2] worker record JSON
-- Returns Redis time in ms (workers may compare it with their own clock).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], now)
return now
