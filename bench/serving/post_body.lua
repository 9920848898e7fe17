-- wrk script for bench/serving: POST the JSON body in the file named by $BODY to the URL given on
-- the wrk command line, over keep-alive connections, with Content-Type: application/json.
--   BODY=body.json wrk -t2 -c8 -d15s --latency --timeout 10s -s post_body.lua http://127.0.0.1:PORT/PATH
-- (the serving anchors' shared/anchors/scripts/post_body.lua). At the end it writes one line,
-- WRKJSON {...}, that bench.py reads: latency percentiles in microseconds, the request count, and
-- the error counts (err_status: responses with a status of 400 or more, wrk's
-- "Non-2xx or 3xx responses").
local f = assert(io.open(os.getenv("BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"rps":%.1f,"p50_us":%d,"p90_us":%d,' ..
    '"p99_us":%d,"max_us":%d,"mean_us":%.0f,"err_connect":%d,"err_read":%d,"err_write":%d,' ..
    '"err_status":%d,"err_timeout":%d}\n',
    summary.requests, summary.duration, summary.bytes, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
