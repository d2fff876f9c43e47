-- requeue_lost: put back a queued job whose message a Redis crash lost
-- (the manager's reconcile pass), if it is still queued.
-- KEYS[1] state HASH   job_id -> q|d|x
-- KEYS[2] queue STREAM of the job's lane
-- KEYS[3] lanes SET
-- ARGV[1] job id, ARGV[2] job JSON, ARGV[3] lane
-- Returns 1 when added back, 0 when the job is no longer queued.
if redis.call('HGET', KEYS[1], ARGV[1]) ~= 'q' then return 0 end
redis.call('XADD', KEYS[2], '*', 'job', ARGV[2])
redis.call('SADD', KEYS[3], ARGV[3])
return 1
