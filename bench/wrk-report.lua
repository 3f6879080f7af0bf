-- wrk reporter for the bench: prints one "@@wrk {json}" line at the end.
-- Latencies are in microseconds, as wrk keeps them; note that wrk 4 corrects
-- its latency histogram for coordinated omission before done() sees it, so
-- the percentiles are wrk's usual ones (the stalled-worker count comes from
-- bench/loadgen.js, which times each request itself).
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '@@wrk {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
