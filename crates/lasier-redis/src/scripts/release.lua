-- release: gives back the permit of a trial that ended without a verdict.
-- KEYS: trial permits
-- Reply: 1 if a permit was given back, else 0.
local taken, err = count(KEYS[1])
if err then return err end
if taken and taken > 0 then
  redis.call('INCRBY', KEYS[1], -1)
  return 1
end
return 0
