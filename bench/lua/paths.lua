-- wrk script: each request is a GET of one path from a file, picked at random.
-- Usage: wrk -s paths.lua ... -- <paths file> [header name] [header value]
-- A file with one path makes every request the same (a cached or reference read).
local threads = {}

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
  s2xx, s409, s4xx, s5xx, other = 0, 0, 0, 0, 0
end

function request()
  return wrk.format("GET", paths[math.random(#paths)], headers)
end

function response(status, headers, body)
  if status >= 200 and status < 300 then s2xx = s2xx + 1
  elseif status == 409 then s409 = s409 + 1
  elseif status >= 500 then s5xx = s5xx + 1
  elseif status >= 400 then s4xx = s4xx + 1
  else other = other + 1 end
end

function done(summary, latency, requests)
  local totals = {s2xx = 0, s409 = 0, s4xx = 0, s5xx = 0, other = 0}
  for _, thread in ipairs(threads) do
    for name, _ in pairs(totals) do totals[name] = totals[name] + thread:get(name) end
  end
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "socket_errors": %d, "s2xx": %d, "s409": %d, "s4xx": %d, "s5xx": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    totals.s2xx, totals.s409, totals.s4xx, totals.s5xx,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
