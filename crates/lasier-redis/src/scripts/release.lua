-- release: gives back the permit of a trial that ended without a verdict.
-- KEYS: trial permits
-- ARGV: the trial's episode
-- Reply: 1 if a permit was given back, else 0 (the trial's half-open period
-- is over, or every permit is back already).
local m, err = marker(KEYS[1])
if err then return err end
if m and math.floor(m / EPISODE) == tonumber(ARGV[1]) and m % EPISODE > 0 then
  redis.call('INCRBY', KEYS[1], -1)
  return 1
end
return 0
