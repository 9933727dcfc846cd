-- wrk script: GET one path after another (one path a line in the file given as the first script argument), each
-- thread from its own offset; prints the benchmark's summary line (wrk-summary.lua).
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

dofile("bench/wrk-summary.lua")
