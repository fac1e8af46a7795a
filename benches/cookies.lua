-- wrk: GET /app/x with a session picked at random from a file of `Cookie` header values (one
-- per line), as the browser that signed in (User-Agent from the second argument).
--   wrk -s benches/cookies.lua URL -- cookies.txt "authflow-bench/1.0"
local cookies = {}
local ua = "authflow-bench/1.0"

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then cookies[#cookies + 1] = line end
  end
  if args[2] then ua = args[2] end
  math.randomseed(os.time())
end

function request()
  local c = cookies[math.random(#cookies)]
  return wrk.format("GET", "/app/x", { ["Cookie"] = c, ["User-Agent"] = ua })
end
