-- reuse_claim: look texts up in the reuse store and claim the ones nobody
-- has, so that a distinct text is computed by one worker of the fleet.
-- KEYS: per text, k value keys then k claim keys, classes in the same order
--   (most exact first, the caller's own class last):
--   <ns>:r:<class>:<key hex> STRING entry, <ns>:r:p:<class>:<key hex> STRING claim
-- ARGV[1] owner (worker id), ARGV[2] claim time to live in ms, ARGV[3] k
-- Returns one element per text: the entry (bulk string) when an acceptable
-- class has one; 1 when the caller holds the claim on its own class now (it
-- computes the text, then reuse_put stores it and drops the claim); 0 when
-- another worker holds a claim on an acceptable class (ask again later: the
-- claim expires after its time to live if that worker dies).
local k = tonumber(ARGV[3])
local out = {}
for t = 0, #KEYS / (2 * k) - 1 do
  local base = t * 2 * k
  local answer = nil
  for c = 1, k do
    local v = redis.call('GET', KEYS[base + c])
    if v then answer = v break end
  end
  if not answer then
    for c = 1, k - 1 do
      if redis.call('EXISTS', KEYS[base + k + c]) == 1 then answer = 0 break end
    end
  end
  if not answer then
    local own = KEYS[base + 2 * k]
    if redis.call('SET', own, ARGV[1], 'NX', 'PX', ARGV[2]) then
      answer = 1
    elseif redis.call('GET', own) == ARGV[1] then
      answer = 1
    else
      answer = 0
    end
  end
  out[t + 1] = answer
end
return out
