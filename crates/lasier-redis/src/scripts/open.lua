-- open: opens the circuit and starts a fresh window.
-- KEYS: open flag, half-open marker, trials passed, failures, requests,
--       mode, trial lease, openings (open-time backoff), the sliding
--       window's number keys (newest, current; the failures key twice for a
--       fixed window)
-- ARGV: circuit_timeout_ms, half_open_marker_ms (the circuit timeout, then
--       the retention; 0: no half-open state), only_if_closed (0/1), the
--       channel of changes and the circuit's name (published on opening),
--       then the backoff: multiplier (thousandths; 0: none), max_ms,
--       jitter (thousandths), and how long the count of openings outlives
--       the open time; then the sliding window's buckets (0: another
--       window) and its numbers' TTL, and the count window's calls (0:
--       another window)
-- Reply: the open time in ms (at least 1) if this call opened the circuit;
-- 0 if, with only_if_closed, it was open or half-open already (someone
-- else decided first), or its mode was set by hand (forced open or
-- disabled).
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
local base = tonumber(ARGV[1])
local multiplier = tonumber(ARGV[6] or '0')
local jitter = tonumber(ARGV[8] or '0')
-- (the server's time, for the jitter and the episode, is read before the
-- first write)
local seed = jitter_seed(jitter)
local fresh
if ARGV[2] ~= '0' then
  -- (garbage there is overwritten, not reported: the opening matters more)
  fresh = fresh_marker(marker(KEYS[2]))
end
local time = opening(KEYS[8], base, multiplier, tonumber(ARGV[7] or '0'), jitter,
  tonumber(ARGV[9] or '0'), seed)
if ARGV[2] ~= '0' then
  -- Marks the half-open period that follows the open one; it lasts until
  -- the trials decide (or a day idle after the open time).
  redis.call('SET', KEYS[2], fresh, 'PX', tonumber(ARGV[2]) - base + time)
  redis.call('DEL', KEYS[3], KEYS[7])
end
redis.call('SET', KEYS[1], 1, 'PX', time)
redis.call('DEL', KEYS[4], KEYS[5])
clear_buckets(KEYS[9], KEYS[10], tonumber(ARGV[10]), ARGV[11])
clear_ring(KEYS[9], KEYS[10], tonumber(ARGV[12]))
-- (pcall: a user whose ACL denies the channel still opens it)
redis.pcall('PUBLISH', ARGV[4], ARGV[5])
return time
