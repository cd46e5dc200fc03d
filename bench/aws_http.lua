--- AWS Payment Cryptography's GetKey over keep-alive HTTP against `bin/payhsm serve aws`
-- (its own process: one thread, so one core), every request verified by SigV4 (payload
-- hash, canonical request, HMAC under the day's cached signing key), memory and sqlite
-- stores. Target: >= 5,000 requests/s.
--   lua5.4 bench/aws_http.lua [seconds]      (from the repo root)
-- Clients, HTTP/1.1 keep-alive, plain HTTP on loopback:
--   * wrk (Debian), 1 thread, 8 connections, the same signed GetKey request every time
--     (a SigV4 signature stays valid for its 5-minute window, as on AWS; the server
--     verifies each one in full). The server's CPU time per request comes from
--     /proc/PID/stat.
--   * the Lua client (payhsm.aws), one connection, signing each request afresh: latency-
--     bound, client and server on the same machine.
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath
local cjson = require "cjson"
local serve = require "spec.support.serve"
local sigv4 = require "payhsm.aws.sigv4"
local aws = require "payhsm.aws"
local socket = require "socket"

local SECONDS = tonumber(arg[1]) or 5
local AKID, SECRET = "AKIDBENCH", "bench-secret-access-key"

local function config(backend, db)
  return ([[{listen = "127.0.0.1:0", region = "us-east-1", account = "111122223333",
    credentials = {%s = %q}, store = {backend = %q, path = %q},
    storage_key = {algorithm = "AES_256", hex = %q}}]]):format(AKID, SECRET, backend, db, ("A5"):rep(32))
end

local CLK_TCK
do
  local p = io.popen("getconf CLK_TCK")
  CLK_TCK = tonumber(p:read("*l")) or 100
  p:close()
end
local function cpu_seconds(pid)
  local f = assert(io.open("/proc/" .. pid .. "/stat"))
  local stat = f:read("*a")
  f:close()
  local fields = {}
  for w in stat:gsub("^.-%) ", ""):gmatch("%S+") do fields[#fields + 1] = w end
  return (tonumber(fields[12]) + tonumber(fields[13])) / CLK_TCK
end

local function record(name, n, dt, errors, extra)
  print(("%-52s %9.0f req/s  (%d requests in %.1f s, %d non-2xx or failed)%s"):format(name, n / dt, n, dt, errors,
    extra or ""))
end

for _, backend in ipairs { "memory", "sqlite" } do
  local db = os.tmpname()
  local srv = serve.start("aws", config(backend, db))
  local pc = aws.new { endpoint = "http://127.0.0.1:" .. srv.port, region = "us-east-1", access_key = AKID,
    secret_key = SECRET }
  local key = assert(pc:CreateKey { Exportable = true, KeyAttributes = { KeyUsage = "TR31_K0_KEY_ENCRYPTION_KEY",
    KeyClass = "SYMMETRIC_KEY", KeyAlgorithm = "AES_256",
    KeyModesOfUse = { Encrypt = true, Decrypt = true, Wrap = true, Unwrap = true } } }).Key
  -- wrk: one signed GetKey, sent again and again
  local body = cjson.encode { KeyIdentifier = key.KeyArn }
  local req = sigv4.sign({ method = "POST", path = "/", body = body, headers = {
    host = "127.0.0.1:" .. srv.port, ["content-type"] = "application/x-amz-json-1.0",
    ["x-amz-target"] = "PaymentCryptographyControlPlane.GetKey" } },
    { access_key = AKID, secret_key = SECRET, region = "us-east-1", service = "payment-cryptography" })
  local hdrs = {}
  for k, v in pairs(req.headers) do
    if k ~= "host" then hdrs[#hdrs + 1] = ("[%q] = %q"):format(k, v) end
  end
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(([[
local body = %q
local headers = {%s}
request = function() return wrk.format("POST", "/", headers, body) end
done = function(summary)
  local e = summary.errors
  io.write(("RESULT %%d %%f %%d\n"):format(summary.requests, summary.duration / 1e6,
    e.status + e.connect + e.read + e.write + e.timeout))
end
]]):format(body, table.concat(hdrs, ", ")))
  f:close()
  local cpu0 = cpu_seconds(srv.pid)
  local p = io.popen(("wrk -t1 -c8 -d%ds -s %s http://127.0.0.1:%d/ 2>&1"):format(SECONDS, script, srv.port))
  local out = p:read("*a")
  p:close()
  local cpu = cpu_seconds(srv.pid) - cpu0
  local n, dt, errs = out:match("RESULT (%d+) ([%d.]+) (%d+)")
  if not n then print(out) error("wrk gave no result") end
  n, dt, errs = tonumber(n), tonumber(dt), tonumber(errs)
  record(("GetKey, %s, wrk 8 conns, SigV4"):format(backend), n, dt, errs,
    ("  server CPU %.1f us/req"):format(cpu / n * 1e6))
  -- the Lua client, one connection, a fresh signature per request
  local count, fails, t0 = 0, 0, socket.gettime()
  while socket.gettime() - t0 < SECONDS do
    local out2 = pc:GetKey { KeyIdentifier = key.KeyArn }
    if not out2 then fails = fails + 1 end
    count = count + 1
  end
  record(("GetKey, %s, Lua client (payhsm.aws), 1 conn"):format(backend), count, socket.gettime() - t0, fails)
  pc:close()
  srv.stop()
  srv.cleanup()
  os.remove(script)
  for _, s in ipairs { "", "-wal", "-shm", ".lmk" } do os.remove(db .. s) end
end
