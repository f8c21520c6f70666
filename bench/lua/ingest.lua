-- wrk script: every request posts one pre-generated batch of telemetry points.
-- Usage: wrk -s ingest.lua ... -- <bodies file> <threads>
-- Each line of the bodies file is "<device token>\t<JSON array of points>"; thread i
-- sends lines i, i + threads, ... in order, so no two threads send the same batch.
-- After the last line a thread starts again from its first (those points are then
-- duplicates; the benchmark counts stored rows in the database, not requests).
local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("id", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

function init(args)
  local stride = tonumber(args[2])
  requests_ = {}
  local index = 0
  for line in io.lines(args[1]) do
    if index % stride == id then
      local tab = string.find(line, "\t", 1, true)
      local token = string.sub(line, 1, tab - 1)
      local body = string.sub(line, tab + 1)
      requests_[#requests_ + 1] = wrk.format("POST", "/api/telemetry/", {
        ["Authorization"] = "Device " .. token,
        ["Content-Type"] = "application/json",
      }, body)
    end
    index = index + 1
  end
  next_index = 1
  wrapped = 0
  s2xx, s409, s4xx, s5xx, other = 0, 0, 0, 0, 0
end

function request()
  local prepared = requests_[next_index]
  next_index = next_index + 1
  if next_index > #requests_ then
    next_index = 1
    wrapped = wrapped + 1
  end
  return prepared
end

function response(status, headers, body)
  if status >= 200 and status < 300 then s2xx = s2xx + 1
  elseif status == 409 then s409 = s409 + 1
  elseif status >= 500 then s5xx = s5xx + 1
  elseif status >= 400 then s4xx = s4xx + 1
  else other = other + 1 end
end

function done(summary, latency, requests)
  local totals = {s2xx = 0, s409 = 0, s4xx = 0, s5xx = 0, other = 0, wrapped = 0}
  for _, thread in ipairs(threads) do
    for name, _ in pairs(totals) do totals[name] = totals[name] + thread:get(name) end
  end
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "socket_errors": %d, "s2xx": %d, "s409": %d, "s4xx": %d, "s5xx": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "wrapped": %d}\n',
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    totals.s2xx, totals.s409, totals.s4xx, totals.s5xx,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), totals.wrapped))
end
