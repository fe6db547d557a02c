-- Read a status entry, or take the lease to fill it (Facebook's memcache leases, NSDI 2013).
-- KEYS[1] entry, KEYS[2] lease; ARGV[1] token, ARGV[2] lease length in ms, ARGV[3] the largest
-- entry in bytes (no more than one byte beyond it is read, as the read path's GETRANGE).
-- {1, value}: the entry is there. {2}: the caller now holds the lease. {0}: someone else does.
local v = redis.call('GETRANGE', KEYS[1], 0, ARGV[3])
if v ~= '' then return {1, v} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end
-- A "lease" with no expiry, or longer than any lease we grant, was not granted by us (planted,
-- or left by a bug): it must not hold readers off, so it is taken over.
local ttl = redis.call('PTTL', KEYS[2])
if ttl < 0 or ttl > tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
  return {2}
end
return {0}
