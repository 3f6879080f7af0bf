-- wrk script for the routing bench: every request carries an `x-session`
-- header, cycling through SESSIONS values, so sticky routing by header
-- spreads the load over the workers and peeks a real head each time.
-- Reports through wrk-report.lua (same folder).
local SESSIONS = 4096
local requests = {}
local next_request = 0

init = function(args)
  for i = 1, SESSIONS do
    local headers = {}
    for k, v in pairs(wrk.headers) do headers[k] = v end
    headers["x-session"] = "user-" .. i
    requests[i] = wrk.format(nil, nil, headers)
  end
  -- Threads start at different places in the cycle.
  next_request = math.random(SESSIONS)
end

request = function()
  next_request = next_request % SESSIONS + 1
  return requests[next_request]
end

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "wrk-report.lua")
