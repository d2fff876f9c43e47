-- enqueue: add one job unless it is already known (idempotent).
-- KEYS[1] state HASH   job_id -> q|d|x
-- KEYS[2] queue STREAM of the job's lane
-- KEYS[3] stats HASH
-- KEYS[4] lanes SET
-- ARGV[1] job id, ARGV[2] job JSON, ARGV[3] lane, ARGV[4] "redo" re-enqueues a done job
-- Returns 1 when enqueued, 0 when the job was queued, dead, or done (without redo).
local s = redis.call('HGET', KEYS[1], ARGV[1])
if s == 'q' or s == 'x' then return 0 end
if s == 'd' and ARGV[4] ~= 'redo' then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], 'q')
redis.call('XADD', KEYS[2], '*', 'job', ARGV[2])
redis.call('SADD', KEYS[4], ARGV[3])
redis.call('HINCRBY', KEYS[3], 'enqueued', 1)
redis.call('HINCRBY', KEYS[3], 'queued', 1)
return 1
