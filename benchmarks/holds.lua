-- wrk script for benchmarks/bench_holds.py: POST /api/v1/reservations, owners in turn; every
-- request takes the next slot of the list (a slot per request for "spread", one line for the
-- hot slot). Arguments: slots file, owners file ("<pet id> <token>" per line), thread count.
local slots, owners = {}, {}
local sent = 0
statuses = {} -- global: done() reads it from every thread with thread:get
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(args[1]) do slots[#slots + 1] = line end
  for line in io.lines(args[2]) do
    local pet, token = line:match("^(%S+) (%S+)$")
    owners[#owners + 1] = {pet, token}
  end
  nthreads = tonumber(args[3])
end

function request()
  local i = tid + sent * nthreads
  sent = sent + 1
  local slot = slots[(i % #slots) + 1]
  local owner = owners[(i % #owners) + 1]
  local body = '{"slot_id": "' .. slot .. '", "pet_id": "' .. owner[1] .. '"}'
  return wrk.format("POST", "/api/v1/reservations",
    {["Authorization"] = "Bearer " .. owner[2], ["Content-Type"] = "application/json"}, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    for code, n in pairs(thread:get("statuses")) do merged[code] = (merged[code] or 0) + n end
  end
  local parts = {}
  for code, n in pairs(merged) do parts[#parts + 1] = string.format('"%d": %d', code, n) end
  io.write(string.format(
    '{"requests": %d, "seconds": %f, "p50": %f, "p95": %f, "p99": %f, "statuses": {%s}}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e6,
    latency:percentile(95) / 1e6, latency:percentile(99) / 1e6, table.concat(parts, ", ")))
end
