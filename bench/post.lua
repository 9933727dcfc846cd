-- wrk script: POST the same binary body (the file given as the first script argument) with the Content-Type given as
-- the second; prints the benchmark's summary line (wrk-summary.lua).
function init(args)
    local file = assert(io.open(args[1], "rb"))
    wrk.method = "POST"
    wrk.body = file:read("*a")
    file:close()
    wrk.headers["Content-Type"] = args[2]
end

dofile("bench/wrk-summary.lua")
