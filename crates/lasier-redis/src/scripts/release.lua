-- release: gives back the permit of a trial that ended without a verdict.
-- KEYS: half-open marker, trial lease
-- ARGV: the trial's episode
-- Reply: 1 if a permit was given back, else 0 (the trial's lease is over,
-- or every permit is back already).
local m, err = marker(KEYS[1])
if err then return err end
local lease
lease, err = marker(KEYS[2])
if err then return err end
local episode = tonumber(ARGV[1])
if m and lease and math.floor(m / EPISODE) == episode
    and math.floor(lease / EPISODE) == episode and lease % EPISODE > 0 then
  redis.call('INCRBY', KEYS[2], -1)
  return 1
end
return 0
