-- wrk script: POST the same binary body (the file given as the first script argument) with the Content-Type given as
-- the second; prints the same machine-readable summary as issue.lua.
function init(args)
    local file = assert(io.open(args[1], "rb"))
    wrk.method = "POST"
    wrk.body = file:read("*a")
    file:close()
    wrk.headers["Content-Type"] = args[2]
end

function done(summary, latency, requests)
    local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
    io.write(string.format("RESULT requests=%d duration_us=%d socket_errors=%d non2xx=%d ok=%d p50_us=%d p99_us=%d\n",
        summary.requests, summary.duration, errors, summary.errors.status, summary.requests - summary.errors.status,
        latency:percentile(50), latency:percentile(99)))
end
