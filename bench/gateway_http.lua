--- MSK gateway over HTTPS: Get Key and Import Key requests per second against
-- `bin/payhsm serve gateway` (its own process, one core), memory and sqlite stores.
--   lua5.4 bench/gateway_http.lua [seconds] [mtls]   (from the repo root; `make bench-http`)
-- With "mtls" only the C client's mutual-TLS Get Key cases run (memory and sqlite).
-- Three clients, all HTTP/1.1 keep-alive over TLS:
--   * wrk (Debian), 1 thread, 8 connections: server TLS only, since wrk cannot present a
--     client certificate. Non-2xx answers and socket errors come from wrk's own summary.
--   * bench/c/mtls/gateway_client.c (OpenSSL, built here), 8 connections, mutual TLS as
--     Fiserv's API requires (client certificate from the test CA): Get Key. Its line also shows the
--     server's CPU per request (/proc/PID/stat of the serve process) and the client's own
--     (getrusage): both share this machine's cores.
--   * the Lua client (lua/payhsm/http_client.lua, LuaSec), one connection, mutual TLS; one
--     request at a time, so it measures latency-bound throughput.
-- Every import carries a key never imported before (bodies made up front, one per request;
-- a run that uses them all stops early), so each 200 is a real import, not an old key
-- coming back after it rotated out. Imports are durable: sqlite commits every import
-- (WAL, synchronous=FULL) before the 200.
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath
local hsm = require "payhsm"
local util = require "payhsm.util"
local pki = require "spec.support.pki"
local serve = require "spec.support.serve"
local client_mod = require "payhsm.gateway.client"
local socket = require "socket"

local SECONDS = tonumber(arg[1]) or 5
local ONLY_MTLS = arg[2] == "mtls"
local ZMK = ("5E"):rep(32)
local keys = pki.make()
local results = {}

local function config(db, backend, mutual)
  return ([[{
    listen = "127.0.0.1:0",
    tls = { cert = %q, key = %q, client_ca = %s },
    basic_auth = { integrator = "pa55word" },
    store = { backend = %q, path = %q },
    master_keys = { { label = "ZMK_PAN", key_type = "PAN", algorithm = "AES_256", hex = %q } },
  }]]):format(keys.path("server.pem"), keys.path("server.key"),
    mutual and ("%q"):format(keys.path("ca.pem")) or "nil", backend, db, ZMK)
end

local zmk = hsm.key.import("AES_256", ZMK)
local function import_body(label)
  local key = hsm.key.generate("AES_128", { usage = "D0", mode = "B", exportability = "E" })
  local body = util.json(util.object {
    "requestType", "ImportKeyRequest", "keyType", "PAN", "masterKeyLabel", "ZMK_PAN",
    "sessionKeyLabel", label, "sessionKey", hsm.tr31.wrap(zmk, key, { version = "D" }),
    "sessionKeyCheckValue", key:kcv("CMAC") })
  key:close()
  return body
end

local function record(name, n, dt, errors, extra)
  results[#results + 1] = { name = name, rate = n / dt, errors = errors }
  print(("%-58s %9.0f req/s  (%d requests in %.1f s, %d non-2xx or failed)%s"):format(name, n / dt, n, dt, errors,
    extra or ""))
end

-- CPU seconds (user + system) the process pid has used so far, from /proc/PID/stat
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
  return (tonumber(fields[12]) + tonumber(fields[13])) / CLK_TCK -- utime, stime (fields 14, 15)
end

-- Lua client, mutual TLS, one connection.
local function lua_client(backend, srv)
  local c = client_mod.new {
    http = { host = "127.0.0.1", port = srv.port, timeout = 10,
             tls = { cafile = keys.path("ca.pem"), certificate = keys.path("client.pem"), key = keys.path("client.key") } },
    user = "integrator", password = "pa55word",
    zmks = { PAN = { label = "ZMK_PAN", key = zmk } },
  }
  local first = assert(c:rotate("PAN", "BENCH_LUA"))
  local path = "/key-management/keys/" .. first.sessionKeyId
  local n, errors, t0 = 0, 0, socket.gettime()
  repeat
    for _ = 1, 100 do
      local resp = c.transport { method = "GET", path = path, headers = { authorization = c.auth } }
      n = n + 1
      if not resp or resp.status ~= 200 then errors = errors + 1 end
    end
  until socket.gettime() - t0 >= SECONDS
  record(("Get Key, Lua client, mTLS, %s"):format(backend), n, socket.gettime() - t0, errors)
  local bodies = {}
  for i = 1, 3000 * SECONDS do bodies[i] = import_body("BENCH_LUA") end
  n, errors, t0 = 0, 0, socket.gettime()
  repeat
    for _ = 1, 20 do
      n = n + 1
      local resp = c.transport { method = "POST", path = "/key-management/keys/import",
        headers = { authorization = c.auth, ["content-type"] = "application/json" }, body = bodies[n] }
      if not resp or resp.status ~= 200 then errors = errors + 1 end
    end
  until socket.gettime() - t0 >= SECONDS or n + 20 > #bodies
  record(("Import Key%s, Lua client, mTLS"):format(backend == "sqlite" and " (durable, sqlite)" or ", memory"), n,
    socket.gettime() - t0, errors)
  c:close()
end

-- The C client (OpenSSL), mutual TLS, 8 connections: Get Key.
local C_CLIENT = "build/bench/gateway_client"
local function c_client(backend, srv)
  local c = client_mod.new {
    http = { host = "127.0.0.1", port = srv.port, timeout = 10,
             tls = { cafile = keys.path("ca.pem"), certificate = keys.path("client.pem"), key = keys.path("client.key") } },
    user = "integrator", password = "pa55word", zmks = { PAN = { label = "ZMK_PAN", key = zmk } } }
  local first = assert(c:rotate("PAN", "BENCH_C"))
  c:close()
  local cmd = ("%s 127.0.0.1 %d /key-management/keys/%s '%s' %s %s %s 8 %d 2>&1"):format(C_CLIENT, srv.port,
    first.sessionKeyId, "Basic " .. util.b64encode("integrator:pa55word"), keys.path("ca.pem"),
    keys.path("client.pem"), keys.path("client.key"), SECONDS)
  local cpu0 = cpu_seconds(srv.pid)
  local p = io.popen(cmd)
  local out = p:read("*a")
  p:close()
  local server_cpu = cpu_seconds(srv.pid) - cpu0
  local n, dt, non2xx, errors, client_cpu = out:match("RESULT (%d+) ([%d.]+) (%d+) (%d+) ([%d.]+)")
  assert(n, out)
  n = tonumber(n)
  record(("Get Key, C client 8 conns, mTLS, %s"):format(backend), n, tonumber(dt),
    tonumber(non2xx) + tonumber(errors), ("; CPU per request: server %.0f us, client %.0f us"):format(
      server_cpu / n * 1e6, tonumber(client_cpu) / n * 1e6))
end

-- wrk, server-side TLS only.
local function wrk(backend, srv)
  local auth = "Basic " .. util.b64encode("integrator:pa55word")
  local c = client_mod.new {
    http = { host = "127.0.0.1", port = srv.port, tls = { cafile = keys.path("ca.pem") } },
    user = "integrator", password = "pa55word", zmks = { PAN = { label = "ZMK_PAN", key = zmk } } }
  local first = assert(c:rotate("PAN", "BENCH_WRK"))
  c:close()
  -- one fresh key per import request, read by wrk's thread at init (one JSON body a line)
  local bodies_file = os.tmpname()
  local bf = assert(io.open(bodies_file, "w"))
  for _ = 1, (backend == "sqlite" and 4000 or 20000) * SECONDS do bf:write(import_body("BENCH_WRK"), "\n") end
  bf:close()
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(([[
local auth = %q
local mode = os.getenv("BENCH_MODE")
local bodies, i = {}, 0
init = function()
  if mode ~= "get" then for line in io.lines(%q) do bodies[#bodies + 1] = line end end
end
request = function()
  if mode == "get" then
    return wrk.format("GET", "/key-management/keys/%s", {Authorization = auth})
  end
  i = i + 1
  if i > #bodies then -- every key was used once: stop rather than import one again
    wrk.thread:stop()
    i = #bodies
  end
  return wrk.format("POST", "/key-management/keys/import",
    {Authorization = auth, ["Content-Type"] = "application/json"}, bodies[i])
end
-- done() runs in wrk's main Lua state: it sees the summary, not the threads' variables
done = function(summary)
  local e = summary.errors
  io.write(("RESULT %%d %%f %%d\n"):format(summary.requests, summary.duration / 1e6,
    e.status + e.connect + e.read + e.write + e.timeout))
end
]]):format(auth, bodies_file, first.sessionKeyId))
  f:close()
  for _, mode in ipairs { "get", "import" } do
    local p = io.popen(("BENCH_MODE=%s wrk -t1 -c8 -d%ds -s %s https://127.0.0.1:%d/ 2>&1"):format(mode, SECONDS,
      script, srv.port))
    local out = p:read("*a")
    p:close()
    local n, dt, errors = out:match("RESULT (%d+) ([%d.]+) (%d+)")
    assert(n, out)
    record(("%s, wrk 8 conns, TLS, %s"):format(mode == "get" and "Get Key" or
      (backend == "sqlite" and "Import Key (durable)" or "Import Key"), backend), tonumber(n), tonumber(dt), tonumber(errors))
  end
  os.remove(script)
  os.remove(bodies_file)
end

assert(os.execute(("mkdir -p build/bench && cc -O2 -Wall -Wextra -Werror -o %s bench/c/mtls/gateway_client.c "
  .. "-lssl -lcrypto -lpthread"):format(C_CLIENT)), "cannot build " .. C_CLIENT)
for _, backend in ipairs { "memory", "sqlite" } do
  local db = os.tmpname()
  local srv = serve.start("gateway", config(db, backend, true))
  if not ONLY_MTLS then lua_client(backend, srv) end
  c_client(backend, srv)
  srv.stop() srv.cleanup()
  os.remove(db) os.remove(db .. "-wal") os.remove(db .. "-shm")
  if not ONLY_MTLS then
    db = os.tmpname()
    srv = serve.start("gateway", config(db, backend, false))
    wrk(backend, srv)
    srv.stop() srv.cleanup()
    os.remove(db) os.remove(db .. "-wal") os.remove(db .. "-shm")
  end
end
pki.remove(keys)
