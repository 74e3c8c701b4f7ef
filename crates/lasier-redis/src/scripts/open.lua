-- open: opens the circuit and starts a fresh window.
-- KEYS: open flag, half-open marker, trials passed, failures, requests,
--       mode, trial lease, the sliding window's number keys (newest,
--       current; the failures key twice for a fixed window)
-- ARGV: circuit_timeout_ms, half_open_marker_ms (the open time, then the
--       retention; 0: no half-open state), only_if_closed (0/1), the
--       channel of changes and the circuit's name (published on opening),
--       the sliding window's buckets (0: fixed) and its numbers' TTL
-- Reply: 1 if this call opened the circuit; 0 if, with only_if_closed, it
-- was open or half-open already (someone else decided first), or its mode
-- was set by hand (forced open or disabled).
if ARGV[3] == '1' then
  local manual, err = mode(KEYS[6])
  if err then return err end
  if manual then
    return 0
  end
  local open
  open, err = is_open(KEYS[1])
  if err then return err end
  if open then
    return 0
  end
  if ARGV[2] ~= '0' then
    local trials
    trials, err = count(KEYS[2])
    if err then return err end
    if trials then
      return 0
    end
  end
end
if ARGV[2] ~= '0' then
  -- Marks the half-open period that follows the open one; it lasts until
  -- the trials decide (or a day idle).
  -- (garbage there is overwritten, not reported: the opening matters more)
  local previous = marker(KEYS[2])
  redis.call('SET', KEYS[2], fresh_marker(previous), 'PX', ARGV[2])
  redis.call('DEL', KEYS[3], KEYS[7])
end
redis.call('SET', KEYS[1], 1, 'PX', ARGV[1])
redis.call('DEL', KEYS[4], KEYS[5])
clear_buckets(KEYS[8], KEYS[9], tonumber(ARGV[6]), ARGV[7])
-- (pcall: a user whose ACL denies the channel still opens it)
redis.pcall('PUBLISH', ARGV[4], ARGV[5])
return 1
