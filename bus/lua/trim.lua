-- trim: drop acknowledged entries from a lane stream, never past the oldest
-- pending entry (since Redis 7.0 a deleted entry silently leaves the pending
-- list, and its job would be lost) nor past any undelivered entry.
-- KEYS[1] queue STREAM
-- ARGV[1] group
-- Returns the number of entries removed.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local last = nil
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name, lastid = nil, nil
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1] end
    if g[i] == 'last-delivered-id' then lastid = g[i + 1] end
  end
  if name == ARGV[1] then last = lastid end
end
if last == nil then return 0 end
local summary = redis.call('XPENDING', KEYS[1], ARGV[1])
local minid = last
if tonumber(summary[1]) > 0 then minid = summary[2] end
return redis.call('XTRIM', KEYS[1], 'MINID', minid)
