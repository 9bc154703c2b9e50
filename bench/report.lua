-- wrk reporter: prints one JSON line with the run's totals when wrk ends.
-- Headers are passed on the wrk command line (-H), so no request() hook is
-- needed and wrk keeps its fast pre-built request path.
done = function(summary, latency, requests)
  io.write(string.format(
    '{"requests":%d,"bytes":%d,"duration_us":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
    '"lat_p50_us":%d,"lat_p90_us":%d,"lat_p99_us":%d,"lat_mean_us":%.1f,"lat_max_us":%d}\n',
    summary.requests, summary.bytes, summary.duration,
    summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end
