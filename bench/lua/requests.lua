-- wrk script: each request is one line of a file, taken in turn (each thread from its own
-- offset): "METHOD<TAB>PATH<TAB>BEARER TOKEN or -<TAB>JSON BODY or -".
-- Usage: wrk -s requests.lua ... -- <requests file>
local threads = {}
dofile(debug.getinfo(1, "S").source:match("@(.*/)") .. "report.lua")
local thread_count = 0

function setup(thread)
  thread:set("id", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

function init(args)
  requests_ = {}
  for line in io.lines(args[1]) do
    local method, path, token, body = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)\t(.*)$")
    if method then
      local headers = {}
      if token ~= "-" then headers["Authorization"] = "Bearer " .. token end
      if body ~= "-" then
        headers["Content-Type"] = "application/json"
      else
        body = nil
      end
      requests_[#requests_ + 1] = wrk.format(method, path, headers, body)
    end
  end
  next_index = 1 + (id * 7919) % #requests_
end

function request()
  local prepared = requests_[next_index]
  next_index = next_index % #requests_ + 1
  return prepared
end

function done(summary, latency, requests)
  write_report(threads, summary, latency)
end
