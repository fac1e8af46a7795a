-- wrk: repeated sign-ins with one account (closed loop), for the sign-in throughput figure.
--   wrk -t1 -c4 -d20s -s load-tests/signin.lua http://127.0.0.1:8001/api/v1/simple_auth/signin
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["User-Agent"] = "wrk-authflow/1.0"
wrk.body = '{"email":"load@example.com","password":"correct horse battery"}'

local statuses = {}
response = function(status)
  statuses[status] = (statuses[status] or 0) + 1
end

done = function()
  for s, n in pairs(statuses) do
    io.stderr:write(string.format("status %d: %d\n", s, n))
  end
end
