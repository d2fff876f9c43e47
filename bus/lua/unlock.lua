-- unlock: release a lock key (e.g. <ns>:lock:reconcile) only if it still
-- holds this holder's token (compare and delete).
-- KEYS[1] lock STRING
-- ARGV[1] the holder's token
-- Returns 1 when deleted, 0 when another holder has it (or it expired).
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
