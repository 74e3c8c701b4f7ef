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
