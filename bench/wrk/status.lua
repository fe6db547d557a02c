-- wrk script for `make bench` (bench/run.py): picks users, sets Authorization, counts outcomes.
--
-- Environment (set by bench/run.py):
--   BENCH_TOKENS_FILE  one "<user uuid> <access token>" per line (rank 1 first): every request
--                      carries its own user's token, as a dashboard's browsers do
--   BENCH_CLOSE        1: send "Connection: close" (a new TCP connection per request)
--   BENCH_PATH         path prefix, e.g. /api/connectors/status/ or /api/bench/ceiling/
--   BENCH_MODE         zipf | uniform | seq | mix | etag
--   BENCH_ZIPF_S       Zipf exponent (default 1.0): P(rank k) ~ 1 / k^s
--   BENCH_WRITE_PCT    mix only: percent of requests that are DELETE /api/connectors/<p>/<user>
--   BENCH_PROVIDERS    comma-separated provider names for those DELETEs
--
-- done() prints one line `BENCH_JSON {...}` that bench/run.py parses.

local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("tid", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

local users, auths, cdf, providers = {}, {}, {}, {}
local mode, path, close, write_pct
local seq_next, seq_stride
local etags = {}
-- counters read by done() through thread:get()
reads_hit, reads_miss, reads_304, reads_other = 0, 0, 0, 0
-- per wall-clock second: { [unix second] = { hits, misses, other } } (cold-start buckets), and
-- the same as a string for done() (wrk's thread:get copies strings safely, nested tables not)
local buckets = {}
buckets_str = ""
writes, writes_ok, writes_noop, writes_other = 0, 0, 0, 0

function init(args)
  for line in io.lines(os.getenv("BENCH_TOKENS_FILE")) do
    local user, token = string.match(line, "^(%S+)%s+(%S+)$")
    if user then
      users[#users + 1] = user
      auths[user] = "Bearer " .. token
    end
  end
  mode = os.getenv("BENCH_MODE") or "zipf"
  path = os.getenv("BENCH_PATH") or "/api/connectors/status/"
  close = os.getenv("BENCH_CLOSE") == "1"
  write_pct = tonumber(os.getenv("BENCH_WRITE_PCT") or "0")
  for p in string.gmatch(os.getenv("BENCH_PROVIDERS") or "github", "[^,]+") do
    providers[#providers + 1] = p
  end
  local s = tonumber(os.getenv("BENCH_ZIPF_S") or "1.0")
  local total = 0
  for k = 1, #users do
    total = total + 1 / (k ^ s)
    cdf[k] = total
  end
  for k = 1, #users do cdf[k] = cdf[k] / total end
  math.randomseed(os.time() * 1000 + tid * 7919)
  seq_next = tid + 1
  seq_stride = tonumber(os.getenv("BENCH_THREADS") or "1")
end

local function zipf_user()
  local u = math.random()
  local lo, hi = 1, #cdf
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return users[lo]
end

local function pick_user()
  if mode == "seq" then
    local user = users[seq_next]
    seq_next = seq_next + seq_stride
    if seq_next > #users then seq_next = seq_next - #users end
    return user
  elseif mode == "uniform" then
    return users[math.random(#users)]
  end
  return zipf_user()
end

function request()
  local user = pick_user()
  local headers = { ["Authorization"] = auths[user] }
  if close then headers["Connection"] = "close" end
  if mode == "mix" and math.random() * 100 < write_pct then
    writes = writes + 1
    local provider = providers[math.random(#providers)]
    return wrk.format("DELETE", "/api/connectors/" .. provider .. "/" .. user, headers)
  end
  if mode == "etag" and etags[user] then
    headers["If-None-Match"] = etags[user]
  end
  return wrk.format("GET", path .. user, headers)
end

local function bucket(index)
  local now = os.time()
  local b = buckets[now]
  if b == nil then
    b = { 0, 0, 0 }
    buckets[now] = b
  end
  b[index] = b[index] + 1
  local items = {}
  for second, c in pairs(buckets) do
    items[#items + 1] = string.format("%d:%d:%d:%d", second, c[1], c[2], c[3])
  end
  buckets_str = table.concat(items, ";")
end

function response(status, headers, body)
  if status == 304 then
    bucket(1)
    reads_304 = reads_304 + 1
    return
  end
  if body and string.find(body, '"platforms"', 1, true) then
    if status ~= 200 then
      reads_other = reads_other + 1
    elseif string.find(body, '"cached":true', 1, true) then
      reads_hit = reads_hit + 1
      bucket(1)
    else
      reads_miss = reads_miss + 1
      bucket(2)
    end
    if mode == "etag" then
      local user = string.match(body, '"user_id":"([%x%-]+)"')
      local etag = headers["ETag"] or headers["Etag"] or headers["etag"]
      if user and etag then etags[user] = etag end
    end
  elseif mode == "mix" and (status == 200 or status == 404) and body
      and not string.find(body, '"platforms"', 1, true) then
    -- a DELETE's answer: 200 disconnected, 404 not_connected (nothing to write)
    if status == 200 then writes_ok = writes_ok + 1 else writes_noop = writes_noop + 1 end
  else
    if mode == "mix" and status ~= 200 then
      writes_other = writes_other + 1
    else
      reads_other = reads_other + 1
    end
  end
end

function done(summary, latency, requests)
  local names = { "reads_hit", "reads_miss", "reads_304", "reads_other",
                  "writes", "writes_ok", "writes_noop", "writes_other" }
  local totals = {}
  for _, name in ipairs(names) do totals[name] = 0 end
  for _, thread in ipairs(threads) do
    for _, name in ipairs(names) do totals[name] = totals[name] + (thread:get(name) or 0) end
  end
  local parts = {}
  local function add(k, v) parts[#parts + 1] = string.format('"%s":%s', k, tostring(v)) end
  add("requests", summary.requests)
  add("duration_us", summary.duration)
  add("bytes", summary.bytes)
  add("err_connect", summary.errors.connect)
  add("err_read", summary.errors.read)
  add("err_write", summary.errors.write)
  add("err_status", summary.errors.status)
  add("err_timeout", summary.errors.timeout)
  add("lat_mean_us", latency.mean)
  add("lat_max_us", latency.max)
  for _, p in ipairs({ 50, 90, 95, 99, 99.9 }) do
    add("p" .. tostring(p), latency:percentile(p))
  end
  for _, name in ipairs(names) do add(name, totals[name]) end
  local merged = {}
  for _, thread in ipairs(threads) do
    for second, a, b, c in string.gmatch(thread:get("buckets_str") or "", "(%d+):(%d+):(%d+):(%d+)") do
      local m = merged[second] or { 0, 0, 0 }
      m[1] = m[1] + tonumber(a)
      m[2] = m[2] + tonumber(b)
      m[3] = m[3] + tonumber(c)
      merged[second] = m
    end
  end
  local items = {}
  for second, m in pairs(merged) do
    items[#items + 1] = string.format('"%s":[%d,%d,%d]', second, m[1], m[2], m[3])
  end
  parts[#parts + 1] = '"buckets":{' .. table.concat(items, ",") .. '}'
  io.write("BENCH_JSON {" .. table.concat(parts, ",") .. "}\n")
end
