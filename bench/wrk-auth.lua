-- wrk script for bench/small-auth.ts: cycles through (token, path) pairs read from the file named by
-- BENCH_WRK_PAIRS (one "token path" per line), sending each with Authorization: Bearer <token>, and
-- prints one JSON line of figures when done. The tokens live only in that temp file, never on a
-- command line.
local reqs = {}
local i = 0

function init(args)
  local file = os.getenv("BENCH_WRK_PAIRS")
  for line in io.lines(file) do
    local token, path = line:match("^(%S+) (%S+)$")
    if token then
      reqs[#reqs + 1] = wrk.format("GET", path, { ["Host"] = wrk.host, ["Authorization"] = "Bearer " .. token })
    end
  end
  -- Threads start at different pairs so that each pair is hit from the first second.
  i = math.random(#reqs)
end

function request()
  i = i + 1
  return reqs[(i % #reqs) + 1]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\nBENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean, e.connect, e.read, e.write, e.status, e.timeout))
end
