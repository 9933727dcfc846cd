-- wrk script: GET one path after another (one path a line in the file given as the first script argument), each
-- thread from its own offset; prints the same machine-readable summary as issue.lua.
local paths = {}
local next_path = 0
local threads = 0

function setup(thread)
    threads = threads + 1
    thread:set("id", threads)
end

function init(args)
    for line in io.lines(args[1]) do
        paths[#paths + 1] = line
    end
    next_path = ((id or 1) * 7919) % #paths
end

function request()
    next_path = next_path % #paths + 1
    return wrk.format("GET", paths[next_path])
end

function done(summary, latency, requests)
    local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
    io.write(string.format("RESULT requests=%d duration_us=%d socket_errors=%d non2xx=%d ok=%d p50_us=%d p99_us=%d\n",
        summary.requests, summary.duration, errors, summary.errors.status, summary.requests - summary.errors.status,
        latency:percentile(50), latency:percentile(99)))
end
