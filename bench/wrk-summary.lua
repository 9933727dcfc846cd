-- The machine-readable summary line every wrk script of the benchmark prints (loaded with dofile by each).
function done(summary, latency, requests)
    local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
    io.write(string.format("RESULT requests=%d duration_us=%d socket_errors=%d non2xx=%d ok=%d p50_us=%d p99_us=%d\n",
        summary.requests, summary.duration, errors, summary.errors.status, summary.requests - summary.errors.status,
        latency:percentile(50), latency:percentile(99)))
end
