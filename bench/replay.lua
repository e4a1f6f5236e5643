-- wrk script: replay prepared requests, each at most once, and count the answers.
--
-- wrk -t T -c C -d Ds -s bench/replay.lua URL -- REQUESTS_FILE EXPECTED_STATUS T
--
-- REQUESTS_FILE has one request per line:
--   METHOD <tab> PATH <tab> AUTHORIZATION <tab> CONTENT_TYPE <tab> BODY
-- (AUTHORIZATION may be empty; BODY is text without raw newlines or tabs, or "b64:"
-- and base64 for binary bodies such as DER OCSP requests). Thread k of T
-- replays lines k+1, k+1+T, ... and stops once it has an answer to each of them, so
-- the run is bounded by the file as well as by -d. The last line is repeated while the
-- final answers are in flight (those repeats are counted as "extra", not as answers).
-- done() prints one line "WRKJSON {...}" with the counts and latency percentiles.

local threads = {}

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function b64decode(data)
  data = data:gsub("[^" .. b64chars .. "=]", "")
  return (data:gsub(".", function(x)
    if x == "=" then return "" end
    local r, f = "", (b64chars:find(x, 1, true) - 1)
    for i = 6, 1, -1 do r = r .. (f % 2 ^ i - f % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end):gsub("%d%d%d?%d?%d?%d?%d?%d?", function(x)
    if #x ~= 8 then return "" end
    local c = 0
    for i = 1, 8 do c = c + (x:sub(i, i) == "1" and 2 ^ (8 - i) or 0) end
    return string.char(c)
  end))
end
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local path = args[1]
  expected = tonumber(args[2])
  local nthreads = tonumber(args[3])
  reqs = {}
  decoded_bodies = {}
  local lineno = 0
  for line in io.lines(path) do
    if lineno % nthreads == tid then
      local method, target, auth, ctype, body =
        line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
      local headers = {}
      if ctype ~= "" then headers["Content-Type"] = ctype end
      if auth ~= "" then headers["Authorization"] = auth end
      if body:sub(1, 4) == "b64:" then
        local decoded = decoded_bodies[body]
        if decoded == nil then
          decoded = b64decode(body:sub(5))
          decoded_bodies[body] = decoded
        end
        body = decoded
      end
      if body == "" then body = nil end
      table.insert(reqs, wrk.format(method, target, headers, body))
    end
    lineno = lineno + 1
  end
  total = #reqs
  sent = 0
  answered = 0
  ok = 0
  bad = 0
  extra = 0
  last_bad = 0
end

function request()
  sent = sent + 1
  if sent > total then
    extra = extra + 1
    return reqs[total]
  end
  return reqs[sent]
end

function response(status, headers, body)
  answered = answered + 1
  if answered <= total then
    if status == expected then
      ok = ok + 1
    else
      bad = bad + 1
      last_bad = status
    end
  end
  if answered >= total then
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local ok_all, bad_all, extra_all, last_bad_all = 0, 0, 0, 0
  for _, thread in ipairs(threads) do
    ok_all = ok_all + thread:get("ok")
    bad_all = bad_all + thread:get("bad")
    extra_all = extra_all + thread:get("extra")
    if thread:get("last_bad") ~= 0 then last_bad_all = thread:get("last_bad") end
  end
  io.write(string.format(
    'WRKJSON {"duration_us": %d, "requests": %d, "ok": %d, "bad": %d, "extra": %d, ' ..
    '"last_bad_status": %d, "socket_errors": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.duration, summary.requests, ok_all, bad_all, extra_all, last_bad_all,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
