-- wrk script: the requests of paths.lua, each connection pausing between them so
-- that all connections together offer a fixed rate instead of as many requests
-- as the server answers. WRK_PAUSE_MS is the pause of one connection after each
-- answer: 64 connections pausing 19 ms offer about 3,300 requests a second.
-- Usage: WRK_PAUSE_MS=19 wrk -s paced.lua ... -- <paths file>
dofile(debug.getinfo(1, "S").source:match("@(.*/)") .. "paths.lua")

local pause_ms = tonumber(os.getenv("WRK_PAUSE_MS") or "0")

function delay()
  return pause_ms
end
