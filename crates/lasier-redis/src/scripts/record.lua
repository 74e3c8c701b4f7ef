-- record: counts outcomes of calls admitted on a closed circuit: one
-- call's (the record step), or a batch of a process's since its last sync
-- (the sync step of a breaker in sync mode).
-- KEYS: open flag, trial permits, failures, requests, mode, the sliding
--       window's number keys (newest, current; the failures key twice for a
--       fixed window), and for a sync the writer key (the last part counted
--       from this breaker)
-- ARGV: failures to add, counts_requests (0/1), half_open_max_calls,
--       failure_timeout_ms, requests to add, report (0/1), the sliding
--       window's buckets (0: another window) and bucket length in ms, the
--       count window's calls (0: another window; its keys are then the
--       window keys: position, failures), then for a sync the number of
--       parts and each part's number, failures,
--       requests: a part is counted only if its number is above the writer
--       key's, so a batch sent again after a lost answer counts nothing
--       twice.
-- Reply {counted, failures, requests, state, open_ms}:
-- counted 0: nothing was counted because the circuit is forced open
--   (state 1), open (state 2, open_ms the time it has left, -1 if none) or
--   half-open (state 3); as in the original, a call that ends while open is
--   not counted;
-- counted 1: counted, the rule decides; counted 2: disabled by hand,
--   counted for metrics, never trips;
-- failures and requests: the window's counts after the batch (with
--   report 0, failures is 0 when none were added).
-- count_batch on a sliding window: counts in the current bucket, and
-- reads the live ones after a failure (or to report).
local function count_in_buckets(added_failures, added_requests, counted, buckets)
  local counts_requests = ARGV[2] == '1'
  if not counts_requests then added_requests = 0 end
  local window = tonumber(ARGV[4])
  local failures, requests, err
  if added_failures == 0 and added_requests == 0 then
    if ARGV[6] == '1' then
      failures, requests, err = bucket_counts(KEYS[6], nil, buckets, counts_requests)
      if err then return err end
      return {counted, failures, requests, 0, -1}
    end
    return {counted, 0, 0, 0, -1}
  end
  local n
  n, err = current_bucket(KEYS[6], KEYS[7], tonumber(ARGV[8]), window)
  if err then return err end
  if added_requests > 0 then
    err = add_to_bucket(bucket_key('r', n, KEYS[6]), added_requests, window)
    if err then return err end
  end
  if added_failures > 0 then
    err = add_to_bucket(bucket_key('f', n, KEYS[6]), added_failures, window)
    if err then return err end
  elseif ARGV[6] ~= '1' then
    return {counted, 0, 0, 0, -1}
  end
  failures, requests, err = bucket_counts(KEYS[6], n, buckets, counts_requests)
  if err then return err end
  return {counted, failures, requests, 0, -1}
end

local function count_batch(added_failures, added_requests)
  local manual, err = mode(KEYS[5])
  if err then return err end
  if manual == 1 then
    return {0, 0, 0, 1, -1}
  end
  local disabled = manual == 2
  local open
  open, err = is_open(KEYS[1])
  if err then return err end
  if open and not disabled then
    return {0, 0, 0, 2, redis.call('PTTL', KEYS[1])}
  end
  if ARGV[3] ~= '0' and not disabled then
    local trials
    trials, err = count(KEYS[2])
    if err then return err end
    if trials then
      return {0, 0, 0, 3, -1}
    end
  end
  local counted = 1
  if disabled then counted = 2 end
  local calls = tonumber(ARGV[9])
  if calls > 0 then
    local successes = math.max(added_requests, added_failures) - added_failures
    local failures, requests
    if successes + added_failures == 0 then
      if ARGV[6] ~= '1' then
        return {counted, 0, 0, 0, -1}
      end
      failures, requests, err = ring_counts(KEYS[6], KEYS[7], calls)
    else
      failures, requests, err = count_in_ring(KEYS[6], KEYS[7], calls, successes, added_failures)
    end
    if err then return err end
    return {counted, failures, requests, 0, -1}
  end
  local buckets = tonumber(ARGV[7])
  if buckets > 0 then
    return count_in_buckets(added_failures, added_requests, counted, buckets)
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
    requests = before or 0
    if added_requests > 0 then
      requests, err = incr(KEYS[4], added_requests)
      if err then return err end
      if requests == added_requests then
        -- A new window: both counters start now and end at the same instant.
        -- A failure counter still there is from an earlier window (the
        -- original's drift leaves such ones): it starts again from 0.
        redis.call('PEXPIRE', KEYS[4], window)
        redis.call('SET', KEYS[3], 0, 'PX', window)
        failures = 0
      elseif redis.call('PTTL', KEYS[4]) == -1 then
        -- A counter left without a TTL by a writer that died between its
        -- INCR and its EXPIRE.
        redis.call('PEXPIRE', KEYS[4], window)
      end
    end
  end
  if added_failures == 0 then
    if ARGV[6] == '1' then
      return {counted, failures or 0, requests, 0, -1}
    end
    return {counted, 0, requests, 0, -1}
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
  failures, err = incr(KEYS[3], added_failures)
  if err then return err end
  return {counted, failures, requests, 0, -1}
end

local added_failures = tonumber(ARGV[1])
local added_requests = tonumber(ARGV[5])
local parts = tonumber(ARGV[10] or '0')
local done, last = 0, 0
if parts > 0 then
  -- (garbage at the writer key, which only this breaker writes, reads as
  -- nothing counted yet)
  done = count(KEYS[8]) or 0
  last = done
  for i = 0, parts - 1 do
    local number = tonumber(ARGV[11 + 3 * i])
    if number > done then
      added_failures = added_failures + tonumber(ARGV[12 + 3 * i])
      added_requests = added_requests + tonumber(ARGV[13 + 3 * i])
    end
    if number > last then last = number end
  end
end
local reply = count_batch(added_failures, added_requests)
if parts > 0 and last > done and type(reply) == 'table' and not reply.err then
  redis.call('SET', KEYS[8], last, 'PX', ARGV[4])
end
return reply
