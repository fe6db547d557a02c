-- The lease for an early (XFetch) or expired-entry refresh, granted only while the stored entry is
-- still the one the caller read. Without that check a second reader that read the old entry could
-- take the lease right after the first refresher's fill released it, and refill again.
-- KEYS[1] entry, KEYS[2] lease; ARGV[1] the entry as read, ARGV[2] token, ARGV[3] lease ms.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then return 1 end
-- A lease no one of us granted (no expiry, or longer than ours) is taken over, as in acquire.lua.
local ttl = redis.call('PTTL', KEYS[2])
if ttl < 0 or ttl > tonumber(ARGV[3]) then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
