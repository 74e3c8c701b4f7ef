-- admit: may a call run?
-- KEYS: open flag, trial permits, mode
-- ARGV: half_open_max_calls, circuit_timeout_ms
-- Reply {code, n, episode}: {0, pttl, 0} rejected, open for pttl ms more
-- (-1: no TTL); {1, 0, 0} admitted; {2, taken, episode} admitted as trial
-- number `taken` of half-open period `episode`; {3, 0, 0} rejected, every
-- trial permit is taken or forced open by hand.
local manual, err = mode(KEYS[3])
if err then return err end
if manual == 2 then
  -- disabled by hand: everything passes
  return {1, 0, 0}
end
if manual == 1 then
  return {3, 0, 0}
end
local open
open, err = is_open(KEYS[1])
if err then return err end
if open then
  return {0, redis.call('PTTL', KEYS[1]), 0}
end
local max = tonumber(ARGV[1])
if max == 0 then
  return {1, 0, 0}
end
local m
m, err = marker(KEYS[2])
if err then return err end
if m == false then
  return {1, 0, 0}
end
if m % EPISODE >= max then
  return {3, 0, 0}
end
m, err = incr(KEYS[2], 1)
if err then return err end
local taken = m % EPISODE
if taken == 1 then
  -- The first trial: it has one circuit timeout to report, after which a
  -- vanished holder's permit frees itself (the marker expires).
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return {2, taken, math.floor(m / EPISODE)}
