-- reuse_put: store computed vectors in the reuse store within its byte
-- ceiling, and drop the caller's claims on them.
-- KEYS[1] <ns>:r:bytes STRING (bytes accounted to entries), KEYS[2] <ns>:r:max
--   STRING (ceiling set by the manager, optional); then per entry: the value
--   key <ns>:r:<class>:<key hex> and the caller's claim key <ns>:r:p:<class>:<key hex>
-- ARGV[1] owner (worker id), ARGV[2] ceiling in bytes when KEYS[2] is unset
--   (0 or less: no ceiling of ours, the server's maxmemory policy governs),
-- ARGV[3] bytes accounted per entry besides its key and value (Redis's own
--   overhead), ARGV[4..] one value per entry; an empty value only drops the
--   claim (a worker that gives a job up releases what it claimed)
-- A new entry is written only while the accounted bytes stay within the
-- ceiling; an existing one is overwritten (a corrupt entry gets replaced) and
-- costs nothing more. Returns the number of entries written.
local max = tonumber(redis.call('GET', KEYS[2]) or ARGV[2])
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local overhead = tonumber(ARGV[3])
local written = 0
for i = 4, #ARGV do
  local vkey = KEYS[3 + 2 * (i - 4)]
  local ckey = KEYS[4 + 2 * (i - 4)]
  local value = ARGV[i]
  if value ~= '' then
    if redis.call('EXISTS', vkey) == 1 then
      redis.call('SET', vkey, value)
      written = written + 1
    else
      local cost = #vkey + #value + overhead
      if max <= 0 or used + cost <= max then
        redis.call('SET', vkey, value)
        used = used + cost
        written = written + 1
      end
    end
  end
  if redis.call('GET', ckey) == ARGV[1] then redis.call('DEL', ckey) end
end
redis.call('SET', KEYS[1], used)
return written
