-- wrk script: every request is one checkout by a different pre-filled buyer.
-- Usage: wrk -s checkout.lua ... -- <tokens file> <threads> <first buyer index>
local threads = {}
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
  s2xx, s409, s4xx, s5xx, other = 0, 0, 0, 0, 0
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
