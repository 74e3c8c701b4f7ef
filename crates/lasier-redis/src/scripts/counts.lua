-- counts: the counters of the current window.
-- KEYS: failures, requests, the window keys (a sliding window's newest
--       bucket number; a count window's position and failures; else the
--       failures key)
-- ARGV: counts_requests (0/1), the sliding window's buckets (0: another
--       window), the count window's calls (0: another window)
-- Reply: {failures, requests}, 0 for a missing counter.
local calls = tonumber(ARGV[3] or '0')
if calls > 0 then
  local failures, requests, err = ring_counts(KEYS[3], KEYS[4], calls)
  if err then return err end
  return {failures, requests}
end
local buckets = tonumber(ARGV[2] or '0')
if buckets > 0 then
  local failures, requests, err = bucket_counts(KEYS[3], nil, buckets, ARGV[1] == '1')
  if err then return err end
  return {failures, requests}
end
local failures, err = count(KEYS[1])
if err then return err end
local requests = false
if ARGV[1] == '1' then
  requests, err = count(KEYS[2])
  if err then return err end
end
return {failures or 0, requests or 0}
