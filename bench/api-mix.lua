-- wrk script for bench/api.sh: the seed's acceptance mix on a skewed (Zipf-like) set of
-- users. Reads tokens from the file in TOKENS (one per line); each request picks a user by
-- a Zipf(s=1.1) draw, then a procedure: 45% user.me, 45% subscription.get, 6% dashboard
-- summary, and WRITE_PCT% writes (user.update, activity.track; default 4). Counts the
-- Cache-Status of each read to report the hit rate per procedure at the end.
local tokens = {}
local cdf = {}
local write_pct = tonumber(os.getenv("WRITE_PCT") or "4")
local threads = {}

local function load_tokens()
  for line in io.lines(os.getenv("TOKENS")) do
    if #line > 0 then tokens[#tokens + 1] = line end
  end
  local sum = 0
  for i = 1, #tokens do sum = sum + 1 / i ^ 1.1 end
  local acc = 0
  for i = 1, #tokens do
    acc = acc + (1 / i ^ 1.1) / sum
    cdf[i] = acc
  end
end

local function pick_user()
  local r = math.random()
  local lo, hi = 1, #cdf
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < r then lo = mid + 1 else hi = mid end
  end
  return tokens[lo]
end

function setup(thread)
  threads[#threads + 1] = thread
end

function init(args)
  load_tokens()
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  hits = { ["user.me"] = 0, ["subscription.get"] = 0, ["dashboard.summary"] = 0 }
  reads = { ["user.me"] = 0, ["subscription.get"] = 0, ["dashboard.summary"] = 0 }
  writes = 0
  last = nil
end

function request()
  local tok = pick_user()
  local h = { ["Authorization"] = "Bearer " .. tok }
  local r = math.random() * 100
  if r < write_pct then
    last = nil
    writes = writes + 1
    h["Content-Type"] = "application/json"
    if r < write_pct / 2 then
      return wrk.format("POST", "/trpc/user.update", h, '{"bio":"bench ' .. math.random(1000) .. '"}')
    end
    return wrk.format("POST", "/trpc/activity.track", h, '{"kind":"api_call","meta":{"bench":true}}')
  end
  if r < write_pct + 45 then last = "user.me"
  elseif r < write_pct + 90 then last = "subscription.get"
  else last = "dashboard.summary" end
  return wrk.format("GET", "/trpc/" .. last, h)
end

function response(status, headers, body)
  if last then
    reads[last] = reads[last] + 1
    local cs = headers["Cache-Status"] or headers["cache-status"]
    if cs and cs:find("; hit") then hits[last] = hits[last] + 1 end
  end
end

function done(summary, latency, requests)
  local h, r = {}, {}
  for _, t in ipairs(threads) do
    for k, _ in pairs(t:get("reads")) do
      h[k] = (h[k] or 0) + t:get("hits")[k]
      r[k] = (r[k] or 0) + t:get("reads")[k]
    end
  end
  for _, k in ipairs({ "user.me", "subscription.get", "dashboard.summary" }) do
    if r[k] and r[k] > 0 then
      io.write(string.format("  hit rate %-18s %6.2f%%  (%d of %d reads)\n", k, 100 * h[k] / r[k], h[k], r[k]))
    end
  end
  io.write(string.format("  latency p50 %.2f ms  p95 %.2f ms  p99 %.2f ms\n",
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
