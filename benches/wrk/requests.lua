-- wrk script of `cargo bench --bench api`: every request is a random line of a file,
-- formatted once per thread at start-up.
--   BENCH_WRK_FILE  one request a line: "GET <path>" or "POST <path> <JSON body>"
--   BENCH_WRK_AUTH  the Authorization header's value (optional)
-- A response counts as an error when it is not HTTP 200 or carries GraphQL "errors";
-- done() prints one machine-readable line, WRK_RESULT key=value ...

local threads = {}

function setup(thread)
  thread:set("seed", #threads + 1)
  table.insert(threads, thread)
end

local requests = {}
bad = 0

function init(args)
  math.randomseed(7919 * (seed or 1))
  local auth = os.getenv("BENCH_WRK_AUTH")
  for line in io.lines(os.getenv("BENCH_WRK_FILE")) do
    local method, path, body = line:match("^(%S+) (%S+) ?(.*)$")
    local headers = {}
    if auth and auth ~= "" then headers["Authorization"] = auth end
    if method == "POST" then
      headers["Content-Type"] = "application/json"
    else
      body = nil
    end
    requests[#requests + 1] = wrk.format(method, path, headers, body)
  end
end

function request()
  return requests[math.random(#requests)]
end

function response(status, headers, body)
  if status ~= 200 or string.find(body, '"errors"', 1, true) then
    bad = bad + 1
  end
end

function done(summary, latency, _)
  local failed = 0
  for _, t in ipairs(threads) do
    failed = failed + (t:get("bad") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT requests=%d duration_us=%d bytes=%d bad=%d connect=%d read=%d write=%d timeout=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, summary.bytes, failed,
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
