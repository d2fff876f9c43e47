-- promote: move retries whose backoff has passed back onto their lane stream.
-- KEYS[1] delayed ZSET of the lane, KEYS[2] queue STREAM of the lane
-- ARGV[1] most jobs to move
-- Returns the number moved.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, m in ipairs(due) do
  redis.call('ZREM', KEYS[1], m)
  redis.call('XADD', KEYS[2], '*', 'job', m)
end
return #due
