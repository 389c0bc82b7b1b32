-- wrk script of bench/broker_bench.ts: sends `Authorization: Bearer <token>` (the token read
-- from the file named by the first script argument, so it never appears in argv), an
-- `Accept-Encoding` given as the second (the gzip case), and prints
-- one machine-readable summary line (latency in microseconds) when the run ends.

function init(args)
  if args[1] ~= nil then
    local f = assert(io.open(args[1], "r"))
    local token = f:read("*l")
    f:close()
    wrk.headers["Authorization"] = "Bearer " .. token
  end
  if args[2] ~= nil then
    wrk.headers["Accept-Encoding"] = args[2]
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"socket_errors":%d,"status_errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
