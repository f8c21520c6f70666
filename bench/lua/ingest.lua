-- wrk script: every request posts one pre-generated batch of telemetry points.
-- Usage: wrk -s ingest.lua ... -- <bodies file> <threads>
-- Each line of the bodies file is "<device token>\t<JSON array of points>"; thread i
-- sends lines i, i + threads, ... in order, so no two threads send the same batch.
-- After the last line a thread starts again from its first (those points are then
-- duplicates; the benchmark counts stored rows in the database, not requests).
local threads = {}
dofile(debug.getinfo(1, "S").source:match("@(.*/)") .. "report.lua")
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

function done(summary, latency, requests)
  write_report(threads, summary, latency, {"wrapped"})
end
