-- counts: the counters of the current window.
-- KEYS: failures, requests
-- ARGV: counts_requests (0/1)
-- Reply: {failures, requests}, 0 for a missing counter.
local failures, err = count(KEYS[1])
if err then return err end
local requests = false
if ARGV[1] == '1' then
  requests, err = count(KEYS[2])
  if err then return err end
end
return {failures or 0, requests or 0}
