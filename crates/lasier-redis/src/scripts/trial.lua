-- trial: the outcome of a half-open trial.
-- KEYS: open flag, half-open marker, trials passed, failures, requests,
--       trial lease, openings (open-time backoff), the sliding window's
--       number keys (newest, current; the failures key twice for a fixed
--       window)
-- ARGV: failed (0/1), half_open_successes, circuit_timeout_ms,
--       marker_ms_after_opening, the trial's episode, marker_ms_after_lease,
--       the channel of changes and the circuit's name (published when the
--       trials reopen or close the circuit), then the backoff: multiplier
--       (thousandths; 0: none), max_ms, jitter (thousandths), how long the
--       count of openings outlives the open time, and the window
--       (failure_timeout_ms) it lives once the trials close the circuit;
--       then the sliding window's buckets (0: another window) and its
--       numbers' TTL, and the count window's calls (0: another window)
-- Reply: 0 nothing changed (the trial outlived its lease or its half-open
-- period, or more trials must pass); 1 reopened; 2 closed.
local open, err = is_open(KEYS[1])
if err then return err end
if open then
  return 0
end
local m
m, err = marker(KEYS[2])
if err then return err end
if m == false or math.floor(m / EPISODE) ~= tonumber(ARGV[5]) then
  return 0
end
if ARGV[1] == '1' then
  -- (the server's time is read before the first write, as scripts
  -- replicated verbatim, before Redis 5, require)
  local multiplier = tonumber(ARGV[9] or '0')
  local jitter = tonumber(ARGV[11] or '0')
  local seed = jitter_seed(jitter)
  local fresh = fresh_marker(m)
  local base = tonumber(ARGV[3])
  local time = opening(KEYS[7], base, multiplier, tonumber(ARGV[10] or '0'), jitter,
    tonumber(ARGV[12] or '0'), seed)
  redis.call('SET', KEYS[1], 1, 'PX', time)
  redis.call('SET', KEYS[2], fresh, 'PX', tonumber(ARGV[4]) - base + time)
  redis.call('DEL', KEYS[3], KEYS[4], KEYS[5], KEYS[6])
  clear_buckets(KEYS[8], KEYS[9], tonumber(ARGV[14]), ARGV[15])
  clear_ring(KEYS[8], KEYS[9], tonumber(ARGV[16]))
  -- (pcall: a user whose ACL denies the channel still reopens it)
  redis.pcall('PUBLISH', ARGV[7], ARGV[8])
  return 1
end
local passed
passed, err = incr(KEYS[3], 1)
if err then return err end
-- Passes last as long as the half-open state.
redis.call('PEXPIRE', KEYS[3], ARGV[6])
if passed < tonumber(ARGV[2]) then
  return 0
end
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
clear_buckets(KEYS[8], KEYS[9], tonumber(ARGV[14]), ARGV[15])
clear_ring(KEYS[8], KEYS[9], tonumber(ARGV[16]))
if ARGV[9] and ARGV[9] ~= '0' then
  -- Closed for a whole window, the next opening is the first again.
  redis.call('PEXPIRE', KEYS[7], ARGV[13])
end
redis.pcall('PUBLISH', ARGV[7], ARGV[8])
return 2
