-- wrk script of `cargo xtask load --external`: POSTs the calls of a file
-- (one JSON call a line, given after `--`) to /api/v1/enforce in turn,
-- each thread starting at its own place, and prints one line that the
-- xtask reads: requests, duration, errors and latency percentiles (us).

local requests = {}
local count = 0
local next_index = 0

function init(args)
    local file = args[1]
    local headers = { ["Content-Type"] = "application/json" }
    local key = os.getenv("TAME_API_KEY")
    if key ~= nil and key ~= "" then
        headers["Authorization"] = "Bearer " .. key
    end
    for line in io.lines(file) do
        if line ~= "" then
            count = count + 1
            requests[count] = wrk.format("POST", "/api/v1/enforce", headers, line)
        end
    end
    if count == 0 then
        error("no calls in " .. tostring(file))
    end
    next_index = math.random(count) - 1
end

function request()
    next_index = next_index % count + 1
    return requests[next_index]
end

function done(summary, latency, _)
    local e = summary.errors
    io.write(string.format(
        "tame-load requests=%d duration_us=%d non2xx=%d socket_errors=%d p50=%d p90=%d p99=%d p999=%d max=%d\n",
        summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
        latency:percentile(50), latency:percentile(90), latency:percentile(99),
        latency:percentile(99.9), latency.max))
end
