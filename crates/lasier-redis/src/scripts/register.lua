-- register: writes a circuit's entry in the store's directory of circuits
-- (see lasier_core::directory), replacing the previous one, with the time
-- of the registration by the server's clock.
-- KEYS: the entry (lasier:circuit:<name>)
-- ARGV: the entry's TTL in ms, then each field and its value
-- Reply: 1
local t = redis.call('TIME')
local seen = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('DEL', KEYS[1])
local fields = {'seen_ms', string.format('%d', seen)}
for i = 2, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
