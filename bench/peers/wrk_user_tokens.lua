-- wrk script: every request carries its own user's token, as a dashboard's browsers do.
--
--   BENCH_TOKENS_FILE  one "<user uuid> <access token>" per line
--   BENCH_PATH         path prefix (default /api/connectors/status/)
--
-- Users are picked uniformly at random. done() prints hits (cached true), misses (cached
-- false) and other answers, from the response bodies.

local users, tokens = {}, {}
local path
local threads = {}
hits, misses, other = 0, 0, 0

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(os.getenv("BENCH_TOKENS_FILE")) do
    local user, token = string.match(line, "^(%S+)%s+(%S+)$")
    if user then
      users[#users + 1] = user
      tokens[#tokens + 1] = "Bearer " .. token
    end
  end
  path = os.getenv("BENCH_PATH") or "/api/connectors/status/"
  math.randomseed(os.time() + #threads * 7919)
end

function request()
  local i = math.random(#users)
  return wrk.format("GET", path .. users[i], { ["Authorization"] = tokens[i] })
end

function response(status, headers, body)
  if status ~= 200 then
    other = other + 1
  elseif string.find(body, '"cached":true', 1, true) then
    hits = hits + 1
  else
    misses = misses + 1
  end
end

function done(summary, latency, requests)
  local h, m, o = 0, 0, 0
  for _, thread in ipairs(threads) do
    h = h + thread:get("hits")
    m = m + thread:get("misses")
    o = o + thread:get("other")
  end
  io.write(string.format("hits %d, misses %d, other %d\n", h, m, o))
end
