-- wrk script for bench/fleet.sh: every request is a user.update (a write whose invalidation
-- every instance of the fleet must apply before it returns), by the users whose tokens are
-- in the file named by TOKENS, taken in turn; every write sets a new bio.
local tokens = {}
local i, n = 0, 0

function init(args)
  for line in io.lines(os.getenv("TOKENS")) do
    if #line > 0 then tokens[#tokens + 1] = line end
  end
  math.randomseed(os.time())
  i = math.random(#tokens)
end

function request()
  i = i % #tokens + 1
  n = n + 1
  return wrk.format("POST", "/trpc/user.update",
    { ["Authorization"] = "Bearer " .. tokens[i], ["Content-Type"] = "application/json" },
    '{"bio":"bench ' .. n .. '"}')
end
