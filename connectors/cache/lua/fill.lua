-- Store a fill only while the filler's lease survives: an invalidation since the filler's miss
-- deleted the lease, and then the (possibly stale) value is dropped.
-- KEYS[1] entry, KEYS[2] lease; ARGV[1] token, ARGV[2] value, ARGV[3] TTL in ms.
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
