-- One usage event per request, each with an id no other request uses:
-- "<METERD_BENCH_RUN>-<thread>-<n>". Run a fresh METERD_BENCH_RUN for every wrk run.
-- wrk runs this file once per thread and once more for `setup` and `done`.
-- No `response` function: wrk counts non-2xx answers itself, and a Lua callback per
-- response would make wrk, not meterd, the bottleneck sooner.
local threads = {}
local run = os.getenv("METERD_BENCH_RUN") or tostring(os.time())
local api_key = os.getenv("METERD_BENCH_KEY") or ""
local customers = tonumber(os.getenv("METERD_BENCH_CUSTOMERS") or "1000")

-- Global, so that `done` can read each thread's count through thread:get.
sent = 0

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_id", #threads)
end

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["x-apikey"] = api_key
end

function request()
  sent = sent + 1
  local body = string.format(
    '{"customerId":"cust-%d","value":%d,"id":"%s-%d-%d"}',
    sent % customers, sent % 100, run, thread_id, sent)
  return wrk.format(nil, nil, nil, body)
end

-- Requests built (an upper bound of what the server can have stored: the answers to
-- those still in flight when the run ended were never read).
function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("sent")
  end
  io.write(string.format("bench_requests_built %d\n", total))
end
