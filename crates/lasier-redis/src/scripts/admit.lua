-- admit: may a call run?
-- KEYS: open flag, half-open marker, mode, trial lease, trials passed
-- ARGV: half_open_max_calls, trial_lease_ms, marker_ms (the marker's TTL
--       from a lease's start: the lease, then the retention)
-- Reply {code, n, episode, first}: {0, pttl, 0, 0} rejected, open for pttl
-- ms more (-1: no TTL); {1, 0, 0, 0} admitted; {2, slots, episode, first}
-- admitted as a trial of the lease `episode`, which now has `slots` trial
-- slots used (first = 1: the first trial of the half-open period); {3, 0,
-- 0, 0} rejected, every trial slot of the lease is taken or forced open by
-- hand.
local manual, err = mode(KEYS[3])
if err then return err end
if manual == 2 then
  -- disabled by hand: everything passes
  return {1, 0, 0, 0}
end
if manual == 1 then
  return {3, 0, 0, 0}
end
local open
open, err = is_open(KEYS[1])
if err then return err end
if open then
  return {0, redis.call('PTTL', KEYS[1]), 0, 0}
end
local max = tonumber(ARGV[1])
if max == 0 then
  return {1, 0, 0, 0}
end
local m
m, err = marker(KEYS[2])
if err then return err end
if m == false then
  return {1, 0, 0, 0}
end
local episode = math.floor(m / EPISODE)
local leases = m % EPISODE
local lease
lease, err = marker(KEYS[4])
if err then return err end
if lease and math.floor(lease / EPISODE) == episode then
  -- The current lease: a slot of it, if one is free. (A key left without
  -- a TTL, by hand or by a writer that died, gets one back: a lease that
  -- never ended would hold its slots for ever.)
  if redis.call('PTTL', KEYS[4]) == -1 then
    redis.call('PEXPIRE', KEYS[4], ARGV[2])
  end
  if redis.call('PTTL', KEYS[2]) == -1 then
    redis.call('PEXPIRE', KEYS[2], ARGV[3])
  end
  if lease % EPISODE >= max then
    return {3, 0, 0, 0}
  end
  lease = redis.call('INCRBY', KEYS[4], 1)
  return {2, lease % EPISODE, episode, 0}
end
-- No current lease: this call starts one, with the slots of the trials
-- that passed already. The first of a half-open period keeps the episode
-- the opening wrote; a later one takes a new episode, so that the trials
-- still out under the lease that ended decide nothing.
local first = leases == 0
local passed = 0
if not first then
  passed, err = count(KEYS[5])
  if err then return err end
  passed = passed or 0
  if passed >= max then
    return {3, 0, 0, 0}
  end
  -- (the server's time is read before the first write)
  episode = math.floor(fresh_marker(m) / EPISODE)
end
if leases < EPISODE - 1 then
  leases = leases + 1
end
redis.call('SET', KEYS[4], episode * EPISODE + passed + 1, 'PX', ARGV[2])
redis.call('SET', KEYS[2], episode * EPISODE + leases, 'PX', ARGV[3])
if first then
  return {2, passed + 1, episode, 1}
end
return {2, passed + 1, episode, 0}
