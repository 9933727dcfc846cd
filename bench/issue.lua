-- wrk script: POST one pre-generated request body after another (one body a line in the file given as the
-- first script argument), with an optional bearer token (second argument); prints a machine-readable summary.
local bodies = {}
local next_body = 0
local threads = 0

-- Each thread gets its own number, so that each seeds its own random start (Lua's generator is per thread state).
function setup(thread)
    threads = threads + 1
    thread:set("id", threads)
end

function init(args)
    for line in io.lines(args[1]) do
        bodies[#bodies + 1] = line
    end
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
    if args[2] ~= nil and args[2] ~= "" then
        wrk.headers["Authorization"] = "Bearer " .. args[2]
    end
    -- Threads start at different offsets so they do not send the same CSR at the same moment.
    math.randomseed(os.time() * 1009 + (id or 0) * 7919)
    next_body = math.random(#bodies)
end

function request()
    next_body = next_body % #bodies + 1
    return wrk.format(nil, nil, nil, bodies[next_body])
end

dofile("bench/wrk-summary.lua")
