-- A status hit's one round trip: count the request against its rate limits, then read the
-- entry (as the read path's bounded GETRANGE), unless a limit is already exceeded.
-- KEYS[1] entry, KEYS[2..n] counters; ARGV[1] the largest entry in bytes; per counter i (from
-- 1) ARGV[2i] its window in seconds and ARGV[2i+1] its limit.
-- Reply: {read, value, count_1, pttl_1, ..., count_n, pttl_n}; read 1: value is the entry
-- (or "" if missing), 2: the key holds another type, 0: not read (a limit is exceeded). A count
-- that is not an integer (a planted key) is the string "broken", and counts as exceeded: a
-- broken counter must never turn a limit off.
local counts = {}
local over = false
for i = 2, #KEYS do
  local count = redis.pcall('INCR', KEYS[i])
  if type(count) ~= 'number' then
    count = 'broken'
    over = true
  elseif count > tonumber(ARGV[2 * i - 1]) then
    over = true
  end
  redis.call('EXPIRE', KEYS[i], ARGV[2 * i - 2], 'NX')
  counts[#counts + 1] = count
  counts[#counts + 1] = redis.call('PTTL', KEYS[i])
end
local read, value = 0, ''
if not over then
  local got = redis.pcall('GETRANGE', KEYS[1], 0, ARGV[1])
  if type(got) == 'string' then
    read, value = 1, got
  else
    read = 2
  end
end
local reply = {read, value}
for _, v in ipairs(counts) do reply[#reply + 1] = v end
return reply
