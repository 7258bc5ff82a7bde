-- Shared by every benchmark script: one JSON line the runner parses (latencies in microseconds).
function done(summary, latency, requests)
   local errors = summary.errors
   io.write(string.format(
      'BENCH {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,'
      .. '"status_errors":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d}\n',
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max, errors.status, errors.connect, errors.read, errors.write,
      errors.timeout))
end
