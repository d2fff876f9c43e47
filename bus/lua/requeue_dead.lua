-- requeue_dead: put one dead-lettered job back on its lane as a fresh first
-- attempt (`python -m manager requeue-failed`); its dead letter is removed.
-- KEYS[1] state HASH   job_id -> q|d|x
-- KEYS[2] queue STREAM of the job's lane
-- KEYS[3] stats HASH
-- KEYS[4] errors HASH
-- KEYS[5] dead STREAM
-- KEYS[6] lanes SET
-- ARGV[1] job id, ARGV[2] job JSON (attempt 1), ARGV[3] dead entry id, ARGV[4] lane
-- Returns 1 when requeued, 0 when the job is no longer dead (completed or
-- requeued meanwhile: the entry is removed all the same).
redis.call('XDEL', KEYS[5], ARGV[3])
if redis.call('HGET', KEYS[1], ARGV[1]) ~= 'x' then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], 'q')
redis.call('XADD', KEYS[2], '*', 'job', ARGV[2])
redis.call('SADD', KEYS[6], ARGV[4])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('HINCRBY', KEYS[3], 'dead', -1)
redis.call('HINCRBY', KEYS[3], 'queued', 1)
redis.call('HINCRBY', KEYS[3], 'requeued', 1)
return 1
