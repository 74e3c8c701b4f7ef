-- state: the circuit's state as the store sees it now.
-- KEYS: open flag, trial permits, mode
-- ARGV: half_open_max_calls
-- Reply: 0 closed, 1 open, 2 half-open, 3 forced open, 4 disabled.
local manual, err = mode(KEYS[3])
if err then return err end
if manual == 1 then return 3 end
if manual == 2 then return 4 end
local open
open, err = is_open(KEYS[1])
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
