-- Shared by the wrk scripts: counts answers by status class in each thread and,
-- in done(), writes one JSON line the Python runner parses (bench/common.py).
-- A script loads it with:  dofile(debug.getinfo(1, "S").source:match("@(.*/)") .. "report.lua")

s2xx, s409, s4xx, s5xx, other = 0, 0, 0, 0, 0

function response(status, headers, body)
  if status >= 200 and status < 300 then s2xx = s2xx + 1
  elseif status == 409 then s409 = s409 + 1
  elseif status >= 500 then s5xx = s5xx + 1
  elseif status >= 400 then s4xx = s4xx + 1
  else other = other + 1 end
end

-- extra: names of further per-thread counters to add up and report (may be nil).
function write_report(threads, summary, latency, extra)
  local names = {"s2xx", "s409", "s4xx", "s5xx", "other"}
  for _, name in ipairs(extra or {}) do names[#names + 1] = name end
  local totals = {}
  for _, name in ipairs(names) do totals[name] = 0 end
  for _, thread in ipairs(threads) do
    for _, name in ipairs(names) do totals[name] = totals[name] + (thread:get(name) or 0) end
  end
  local fields = {
    string.format('"requests": %d', summary.requests),
    string.format('"duration_us": %d', summary.duration),
    string.format('"socket_errors": %d', summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout),
    string.format('"p50_us": %d', latency:percentile(50)),
    string.format('"p90_us": %d', latency:percentile(90)),
    string.format('"p99_us": %d', latency:percentile(99)),
  }
  for _, name in ipairs(names) do
    fields[#fields + 1] = string.format('"%s": %d', name, totals[name])
  end
  io.write("{" .. table.concat(fields, ", ") .. "}\n")
end
