-- The lease for an early (XFetch) or expired-entry refresh, granted only while the stored entry is
-- still the one the caller read. Without that check a second reader that read the old entry could
-- take the lease right after the first refresher's fill released it, and refill again.
-- KEYS[1] entry, KEYS[2] lease; ARGV[1] the entry as read, ARGV[2] token, ARGV[3] lease ms.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then return 1 end
return 0
