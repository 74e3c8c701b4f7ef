-- record: counts the outcome of a call admitted on a closed circuit.
-- KEYS: open flag, trial permits, failures, requests, mode
-- ARGV: failed (0/1), counts_requests (0/1), half_open_max_calls,
--       failure_timeout_ms
-- Reply {counted, failures, requests}: {0, 0, 0} when nothing was counted
-- because the circuit is open or half-open (as in the original, a call that
-- ends while open is not counted); counted 1: the rule decides; counted 2:
-- disabled by hand, counted for metrics, never trips.
local manual, err = mode(KEYS[5])
if err then return err end
if manual == 1 then
  return {0, 0, 0}
end
local disabled = manual == 2
local open
open, err = is_open(KEYS[1])
if err then return err end
if open and not disabled then
  return {0, 0, 0}
end
if ARGV[3] ~= '0' and not disabled then
  local trials
  trials, err = count(KEYS[2])
  if err then return err end
  if trials then
    return {0, 0, 0}
  end
end
-- Everything is checked before the first write.
local failures
failures, err = count(KEYS[3])
if err then return err end
local window = ARGV[4]
local requests = 0
if ARGV[2] == '1' then
  local before
  before, err = count(KEYS[4])
  if err then return err end
  requests, err = incr(KEYS[4], 1)
  if err then return err end
  if requests == 1 then
    -- A new window: both counters start now and end at the same instant.
    -- A failure counter still there is from an earlier window (the
    -- original's drift leaves such ones): it starts again from 0.
    redis.call('PEXPIRE', KEYS[4], window)
    redis.call('SET', KEYS[3], 0, 'PX', window)
  elseif redis.call('PTTL', KEYS[4]) == -1 then
    -- A counter left without a TTL by a writer that died between its
    -- INCR and its EXPIRE.
    redis.call('PEXPIRE', KEYS[4], window)
  end
end
local counted = 1
if disabled then counted = 2 end
if ARGV[1] == '0' then
  return {counted, 0, requests}
end
local ttl = redis.call('PTTL', KEYS[3])
if ttl == -2 or (ttl == -1 and ARGV[2] == '0') then
  -- No failure counter: it starts now, and ends with the request counter's
  -- window if there is one (the original restarted it here: window drift).
  -- Under a rule that counts no requests the failure counter is the
  -- window, and one left without a TTL (by hand, or by a writer that died
  -- between its INCR and its EXPIRE) started at an unknown time: its window
  -- is taken as ended, and a new one starts from 0.
  ttl = window
  if ARGV[2] == '1' then
    local left = redis.call('PTTL', KEYS[4])
    if left > 0 then ttl = left end
  end
  redis.call('SET', KEYS[3], 0, 'PX', ttl)
elseif ttl == -1 then
  -- The window is the request counter's, and still runs: the failure
  -- counter ends with it.
  local left = redis.call('PTTL', KEYS[4])
  if left <= 0 then left = window end
  redis.call('PEXPIRE', KEYS[3], left)
end
failures, err = incr(KEYS[3], 1)
if err then return err end
return {counted, failures, requests}
