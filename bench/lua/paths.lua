-- wrk script: each request is a GET of one path from a file, picked at random.
-- Usage: wrk -s paths.lua ... -- <paths file> [header name] [header value]
-- A file with one path makes every request the same (a cached or reference read).
local threads = {}
dofile(debug.getinfo(1, "S").source:match("@(.*/)") .. "report.lua")

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  paths = {}
  for line in io.lines(args[1]) do
    if line ~= "" then paths[#paths + 1] = line end
  end
  headers = {}
  if args[2] then headers[args[2]] = args[3] end
  math.randomseed(os.time() + #threads * 7919 + math.floor(os.clock() * 1e6))
end

function request()
  return wrk.format("GET", paths[math.random(#paths)], headers)
end

function done(summary, latency, requests)
  write_report(threads, summary, latency)
end
