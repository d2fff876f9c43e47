-- complete: acknowledge a finished job and count it, only if this consumer
-- still owns its entry (a worker whose lease was taken must not count it).
-- KEYS[1] queue STREAM, KEYS[2] state HASH, KEYS[3] stats HASH, KEYS[4] errors HASH
-- ARGV[1] group, ARGV[2] entry id, ARGV[3] consumer, ARGV[4] job id,
-- ARGV[5] rows embedded, ARGV[6] "skip" when the output already existed,
-- ARGV[7] texts sent to the model, ARGV[8] rows reused from the reuse store
-- (both optional: an older worker sends neither)
-- Returns 1 completed and counted, 2 acknowledged but already done (duplicate),
-- 0 lease lost: nothing changed.
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] then
  redis.call('HINCRBY', KEYS[3], 'lost_lease', 1)
  return 0
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
local s = redis.call('HGET', KEYS[2], ARGV[4])
if s == 'd' then
  redis.call('HINCRBY', KEYS[3], 'duplicates', 1)
  return 2
end
redis.call('HSET', KEYS[2], ARGV[4], 'd')
redis.call('HDEL', KEYS[4], ARGV[4])
redis.call('HINCRBY', KEYS[3], 'done', 1)
if s == 'q' then redis.call('HINCRBY', KEYS[3], 'queued', -1) end
if s == 'x' then redis.call('HINCRBY', KEYS[3], 'dead', -1) end
redis.call('HINCRBY', KEYS[3], 'rows', tonumber(ARGV[5]))
if ARGV[7] then redis.call('HINCRBY', KEYS[3], 'model_calls', tonumber(ARGV[7])) end
if ARGV[8] then redis.call('HINCRBY', KEYS[3], 'rows_reused', tonumber(ARGV[8])) end
if ARGV[6] == 'skip' then redis.call('HINCRBY', KEYS[3], 'skipped_existing', 1) end
return 1
