-- dead: move a job to the dead-letter stream with its reason. Only the owner
-- of the entry may do so. The rest of the run goes on.
-- KEYS[1] queue STREAM, KEYS[2] state HASH, KEYS[3] stats HASH,
-- KEYS[4] errors HASH, KEYS[5] dead STREAM
-- ARGV[1] group, ARGV[2] entry id, ARGV[3] consumer, ARGV[4] job id,
-- ARGV[5] job JSON, ARGV[6] reason, ARGV[7] attempts, ARGV[8] worker id
-- Returns 1 when dead-lettered, 2 when the job was already done or dead
-- (entry acknowledged, nothing counted), 0 when the lease was lost.
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] then return 0 end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
local s = redis.call('HGET', KEYS[2], ARGV[4])
if s == 'd' or s == 'x' then return 2 end
redis.call('HSET', KEYS[2], ARGV[4], 'x')
redis.call('HSET', KEYS[4], ARGV[4], ARGV[6])
redis.call('XADD', KEYS[5], '*', 'job', ARGV[5], 'reason', ARGV[6],
  'attempts', ARGV[7], 'worker', ARGV[8])
redis.call('HINCRBY', KEYS[3], 'dead', 1)
if s == 'q' then redis.call('HINCRBY', KEYS[3], 'queued', -1) end
return 1
