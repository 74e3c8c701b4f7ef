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
