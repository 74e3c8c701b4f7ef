-- Helpers shared by every lasier script (prepended to each one).
-- A value the breaker cannot have written (text in a counter, a key of
-- another type) is reported as a `CORRUPT` error reply, before the script
-- writes anything.

local function corrupt(key, detail)
  return redis.error_reply('CORRUPT key ' .. string.format('%q', key) .. ': ' .. detail)
end

-- The integer at `key`; false when the key is missing; nil and an error
-- reply when it holds anything else.
local function int(key)
  local v = redis.pcall('GET', key)
  if type(v) == 'table' then
    return nil, corrupt(key, tostring(v.err))
  end
  if not v then
    return false
  end
  if not string.find(v, '^%-?%d+$') then
    return nil, corrupt(key, 'not an integer')
  end
  return tonumber(v)
end

-- A counter at `key`: as `int`, and negative values are corrupt too.
local function count(key)
  local v, err = int(key)
  if v and v < 0 then
    return nil, corrupt(key, 'negative counter ' .. tostring(v))
  end
  return v, err
end

-- Whether the open flag is set; it holds 1 while open (as the Python
-- original writes it), and anything else there is corrupt.
local function is_open(key)
  local v, err = int(key)
  if err then
    return nil, err
  end
  if v == false then
    return false
  end
  if v ~= 1 then
    return nil, corrupt(key, 'open flag is ' .. tostring(v) .. ', expected 1')
  end
  return true
end

-- INCRBY that reports an overflow as corrupt instead of raising.
local function incr(key, delta)
  local v = redis.pcall('INCRBY', key, delta)
  if type(v) == 'table' then
    return nil, corrupt(key, tostring(v.err))
  end
  return v
end


-- The mode set by hand at `key`: false (none), 1 (forced open) or
-- 2 (disabled); anything else is corrupt.
local function mode(key)
  local v, err = int(key)
  if err then
    return nil, err
  end
  if v ~= false and v ~= 1 and v ~= 2 then
    return nil, corrupt(key, 'mode is ' .. tostring(v) .. ', expected 1 or 2')
  end
  return v
end

-- The half-open marker and the trial lease hold an episode number times
-- 65536, plus a count (at most 65535): the leases started, in the marker;
-- the trial slots used, in the lease. A trial carries its lease's episode,
-- so that one that outlived its lease or its half-open period (a verdict or
-- a cancellation arriving late) cannot act on the next one.
local EPISODE = 65536

-- The marker (or lease) at `key`: as `count`, and a value beyond the
-- largest episode (2^32 - 1) is corrupt too.
local function marker(key)
  local v, err = count(key)
  if v and v >= 4294967296 * EPISODE then
    return nil, corrupt(key, 'half-open marker ' .. tostring(v) .. ' out of range')
  end
  return v, err
end

-- A new episode's marker, with a count of 0: an episode number from the
-- server's clock (microseconds, modulo 2^32), never the one of `previous`
-- (the marker it replaces, if any).
local function fresh_marker(previous)
  local t = redis.call('TIME')
  local episode = (tonumber(t[1]) * 1000000 + tonumber(t[2])) % 4294967296
  if previous and math.floor(previous / EPISODE) == episode then
    episode = (episode + 1) % 4294967296
  end
  return episode * EPISODE
end

-- A sliding window (`sliding_window(n)`): numbered buckets, each current
-- for one bucket length from its first count and counted for the window
-- from then on (see `lasier_core::keys::window`). The number keys are
-- declared; a bucket's keys are made from the circuit's name, which the
-- number key ends with, so they share its hash tag.
local SEQ_PREFIX = 'lasier:window_seq:'

local function bucket_key(kind, n, seq_key)
  return 'lasier:window_' .. kind .. ':' .. string.format('%d', n) .. ':'
    .. string.sub(seq_key, #SEQ_PREFIX + 1)
end

local function bucket_number(key, n)
  if n < 1 then
    return nil, corrupt(key, 'bucket number ' .. tostring(n) .. ', expected 1 or more')
  end
  return n
end

-- The number of the current bucket, starting the next one if none is.
local function current_bucket(seq_key, now_key, bucket_ms, window_ms)
  local n, err = int(now_key)
  if err then return nil, err end
  if n then
    return bucket_number(now_key, n)
  end
  n, err = incr(seq_key, 1)
  if err then return nil, err end
  n, err = bucket_number(seq_key, n)
  if err then return nil, err end
  -- (the numbers outlive the buckets, so none is used twice while a
  -- bucket of that number lives)
  redis.call('PEXPIRE', seq_key, window_ms + bucket_ms)
  redis.call('SET', now_key, n, 'PX', bucket_ms)
  return n
end

-- Adds `delta` to a bucket's counter, which lives for the window from its
-- first count.
local function add_to_bucket(key, delta, window_ms)
  local v, err = incr(key, delta)
  if err then return err end
  if v == delta or redis.call('PTTL', key) == -1 then
    redis.call('PEXPIRE', key, window_ms)
  end
end

-- The counts of the live buckets: `last` (or the newest, read) and those
-- before it.
local function bucket_counts(seq_key, last, buckets, counts_requests)
  local err
  if not last then
    last, err = int(seq_key)
    if err then return nil, nil, err end
    if not last then return 0, 0 end
    last, err = bucket_number(seq_key, last)
    if err then return nil, nil, err end
  end
  local failures, requests = 0, 0
  for n = math.max(1, last - buckets + 1), last do
    local f
    f, err = count(bucket_key('f', n, seq_key))
    if err then return nil, nil, err end
    failures = failures + (f or 0)
    if counts_requests then
      local r
      r, err = count(bucket_key('r', n, seq_key))
      if err then return nil, nil, err end
      requests = requests + (r or 0)
    end
  end
  return failures, requests
end

-- Empties a sliding window: the numbers jump by the bucket count, so that
-- a count in flight for an old bucket lands where nothing reads.
local function clear_buckets(seq_key, now_key, buckets, seq_ttl_ms)
  if buckets == 0 then return end
  local v = redis.pcall('INCRBY', seq_key, buckets)
  if type(v) == 'table' then
    -- (garbage there: the numbering starts again)
    redis.call('DEL', seq_key)
  end
  redis.call('PEXPIRE', seq_key, seq_ttl_ms)
  redis.call('DEL', now_key)
end
