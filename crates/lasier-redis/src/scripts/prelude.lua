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

-- Open-time backoff. The arguments of a script that opens carry it:
-- multiplier (thousandths; 0: no backoff), max_ms, jitter (thousandths),
-- and how long the count of openings outlives an opening's open time.

-- 0, or when the open time needs jitter, a seed from the server's clock
-- (microseconds). Read before the script's first write, as scripts
-- replicated verbatim (before Redis 5) require.
local function jitter_seed(jitter)
  if jitter == 0 then
    return 0
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- How long the n-th consecutive opening lasts, in ms: `Timing::open_time_ms`
-- of lasier-core, the same integers in the same order (each below 2^53, so
-- exact in Lua's doubles).
local function open_time(n, base, multiplier, max, jitter, seed)
  local time = math.min(base, max)
  local i = 1
  while i < n do
    local next = math.min(math.floor(time * multiplier / 1000), max)
    -- (at the maximum, or too small a multiplier to move a short time)
    if next <= time then
      break
    end
    time = next
    i = i + 1
  end
  local spread = math.floor(time * jitter / 1000)
  if spread > 0 then
    time = time - spread + seed % (2 * spread + 1)
  end
  return math.max(1, math.min(time, max))
end

-- An opening: with a backoff (`multiplier` not 0), counts it at `key` and
-- returns the open time of the sequence, the count kept for that time
-- plus `after`; without one, `base`, and nothing is written.
-- (garbage at `key` starts the sequence again: the opening matters more)
local function opening(key, base, multiplier, max, jitter, after, seed)
  if multiplier == 0 then
    return base
  end
  local n = redis.pcall('INCR', key)
  if type(n) ~= 'number' or n < 1 then
    redis.call('SET', key, 1)
    n = 1
  end
  local time = open_time(n, base, multiplier, max, jitter, seed)
  redis.call('PEXPIRE', key, time + after)
  return time
end

-- A count window (`count_window(n)`): a ring of n bits (1: a failure), 24
-- to a key (`lasier_core::keys::ring`), the outcomes recorded so far at the
-- declared position key, and the failures among the bits at the declared
-- failures key. A word's key is made from the circuit's name, which the
-- position key ends with, so it shares its hash tag. The keys live a day
-- past their last write.
local RING_POS_PREFIX = 'lasier:ring_pos:'
local RING_BITS = 24
local RING_RETENTION_MS = 86400000

local function ring_word_key(j, pos_key)
  return 'lasier:ring_w:' .. string.format('%d', j) .. ':'
    .. string.sub(pos_key, #RING_POS_PREFIX + 1)
end

local function popcount(x)
  local c = 0
  while x > 0 do
    c = c + x % 2
    x = math.floor(x / 2)
  end
  return c
end

-- Writes `len` outcomes (all failures, or all successes) at ring positions
-- from..from + len - 1; returns how the failures among the bits changed.
local function write_run(pos_key, n, from, len, failed)
  local delta = 0
  local q = from
  while q < from + len do
    local i = q % n
    local j = math.floor(i / RING_BITS)
    local first = i % RING_BITS
    local last = math.min(RING_BITS, n - j * RING_BITS, first + (from + len - q))
    local width = last - first
    local mask = (2 ^ width - 1) * 2 ^ first
    local key = ring_word_key(j, pos_key)
    local word, err = int(key)
    if err then return nil, err end
    word = word or 0
    if word < 0 or word >= 2 ^ RING_BITS then
      return nil, corrupt(key, 'ring word ' .. tostring(word))
    end
    local old = bit.band(word, mask)
    local new = 0
    if failed then new = mask end
    if old ~= new then
      redis.call('INCRBY', key, new - old)
      redis.call('PEXPIRE', key, RING_RETENTION_MS)
      delta = delta + popcount(new) - popcount(old)
    end
    q = q + width
  end
  return delta
end

-- Counts `successes`, then `failures`, in the ring of `n`; returns the
-- failures in it and how many outcomes it holds.
local function count_in_ring(pos_key, failures_key, n, successes, failures)
  local start, err = count(pos_key)
  if err then return nil, nil, err end
  local held
  held, err = count(failures_key)
  if err then return nil, nil, err end
  start = start or 0
  held = held or 0
  local total = successes + failures
  local after = start + total
  redis.call('SET', pos_key, after, 'PX', RING_RETENTION_MS)
  -- Only the last n outcomes stay: the ones before are not written.
  local skip = math.max(0, total - n)
  local skipped = math.min(skip, successes)
  successes = successes - skipped
  failures = failures - (skip - skipped)
  local p = start + skip
  local d1, d2
  d1, err = write_run(pos_key, n, p, successes, false)
  if err then return nil, nil, err end
  d2, err = write_run(pos_key, n, p + successes, failures, true)
  if err then return nil, nil, err end
  held = held + d1 + d2
  if d1 + d2 ~= 0 then
    redis.call('SET', failures_key, held, 'PX', RING_RETENTION_MS)
  else
    redis.call('PEXPIRE', failures_key, RING_RETENTION_MS)
  end
  return held, math.min(after, n)
end

-- The failures in the ring and how many outcomes it holds.
local function ring_counts(pos_key, failures_key, n)
  local held, err = count(pos_key)
  if err then return nil, nil, err end
  local failures
  failures, err = count(failures_key)
  if err then return nil, nil, err end
  return failures or 0, math.min(held or 0, n)
end

-- Empties a count window (n: 0 for another window).
local function clear_ring(pos_key, failures_key, n)
  if n == 0 then return end
  local keys = {pos_key, failures_key}
  for j = 0, math.floor((n + RING_BITS - 1) / RING_BITS) - 1 do
    keys[#keys + 1] = ring_word_key(j, pos_key)
  end
  redis.call('DEL', unpack(keys))
end
