-- wrk script: every request is one checkout by a different pre-filled buyer.
-- Usage: wrk -s checkout.lua ... -- <tokens file> <threads> <first buyer index>
local threads = {}
dofile(debug.getinfo(1, "S").source:match("@(.*/)") .. "report.lua")
local thread_count = 0

function setup(thread)
  thread:set("id", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

function init(args)
  tokens = {}
  for line in io.lines(args[1]) do tokens[#tokens + 1] = line end
  stride = tonumber(args[2])
  next_index = id + 1 + tonumber(args[3] or "0")
end

function request()
  local token = tokens[next_index]
  if token == nil then
    token = tokens[1]  -- ran out of buyers: counted as 409 cart_empty
  end
  next_index = next_index + stride
  return wrk.format("POST", "/api/orders/", {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Length"] = "0",
  }, "")
end

function done(summary, latency, requests)
  write_report(threads, summary, latency)
end
