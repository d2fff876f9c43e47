-- renew: extend the lease of a job this consumer still owns.
-- KEYS[1] queue STREAM
-- ARGV[1] group, ARGV[2] entry id, ARGV[3] consumer
-- Returns 1 when renewed (idle time reset, delivery count unchanged),
-- 0 when the entry is gone or another consumer owns it now.
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')
return 1
