-- state: the circuit's state as the store sees it now.
-- KEYS: open flag, trial permits
-- ARGV: half_open_max_calls
-- Reply: 0 closed, 1 open, 2 half-open.
local open, err = is_open(KEYS[1])
if err then return err end
if open then
  return 1
end
if ARGV[1] ~= '0' then
  local trials
  trials, err = count(KEYS[2])
  if err then return err end
  if trials then
    return 2
  end
end
return 0
