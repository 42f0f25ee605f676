-- wrk script: per-request path + Authorization header, cycling through a targets file.
--   wrk -t2 -c32 -d8s -s tests/bench/targets.lua http://127.0.0.1:PORT -- /tmp/targets.txt
-- Each line of the file is "PATH TOKEN" ("-" = no Authorization header). Requests are
-- pre-formatted once per thread; each thread starts at a different offset so that with
-- 10,000 tokens the threads do not walk the file in lockstep.
-- done() prints one line "BENCHJSON {...}" that run.py parses.

local threads = {}

function setup(thread)
   thread:set("id", #threads)
   table.insert(threads, thread)
end

function init(args)
   reqs = {}
   for line in io.lines(args[1]) do
      local p, tok = line:match("^(%S+)%s+(%S+)")
      if p then
         local headers = {}
         if tok ~= "-" then headers["Authorization"] = "Bearer " .. tok end
         reqs[#reqs + 1] = wrk.format("GET", p, headers)
      end
   end
   counter = (id or 0) * 4999
end

function request()
   counter = counter + 1
   return reqs[(counter % #reqs) + 1]
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCHJSON {"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,' ..
      '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d,' ..
      '"max_us":%d,"mean_us":%.1f}\n',
      summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(99), latency.max, latency.mean))
end
