-- PUT a new registry per request: BENCH_PUT_PREFIX is the path up to ".../registries/", the name is a run id from
-- the runner, the thread's number and a counter (letters and digits only, as registry names must be).
dofile("report.lua")

local prefix = os.getenv("BENCH_PUT_PREFIX")
local run_id = os.getenv("BENCH_RUN_ID")
local body = os.getenv("BENCH_PUT_BODY")
local threads = 0
local counter = 0

function setup(thread)
   threads = threads + 1
   thread:set("thread_id", threads)
end

function request()
   counter = counter + 1
   local name = string.format("b%s%dx%d", run_id, thread_id, counter)
   local headers = {}
   for key, value in pairs(wrk.headers) do headers[key] = value end
   headers["Content-Type"] = "application/json"
   return wrk.format("PUT", prefix .. name .. "?api-version=2025-11-01", headers, body)
end
