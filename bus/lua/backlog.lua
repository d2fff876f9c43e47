-- backlog: the jobs some lanes still owe work for, read at one instant (a
-- worker's --burst exits at 0). Read command by command, a retry moving a job
-- from the group's pending list to the delayed set, or a promotion moving it
-- back to the stream, could fall between two reads and be counted nowhere.
-- KEYS: per lane, its queue STREAM then its delayed ZSET
-- ARGV[1] group
-- Returns delayed + pending + undelivered entries (the undelivered counted up
-- to 1000 per lane: enough to say whether anything is left).
local total = 0
for k = 1, #KEYS, 2 do
  local q, d = KEYS[k], KEYS[k + 1]
  total = total + redis.call('ZCARD', d)
  if redis.call('EXISTS', q) == 1 then
    local found = false
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', q)) do
      local name, last, pending = nil, '0-0', 0
      for i = 1, #g, 2 do
        if g[i] == 'name' then name = g[i + 1] end
        if g[i] == 'last-delivered-id' then last = g[i + 1] end
        if g[i] == 'pending' then pending = tonumber(g[i + 1]) end
      end
      if name == ARGV[1] then
        found = true
        total = total + pending + #redis.call('XRANGE', q, '(' .. last, '+', 'COUNT', 1000)
      end
    end
    if not found then total = total + redis.call('XLEN', q) end
  end
end
return total
