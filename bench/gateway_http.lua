--- MSK gateway over HTTPS: Get Key and Import Key requests per second against
-- `bin/payhsm serve gateway` (its own process, one core), memory and sqlite stores.
--   lua5.4 bench/gateway_http.lua [seconds]      (from the repo root; `make bench-http`)
-- Two clients, both HTTP/1.1 keep-alive over TLS:
--   * wrk (Debian), 1 thread, 8 connections: server TLS only, since wrk cannot present a
--     client certificate; this measures the server.
--   * the Lua client (lua/payhsm/http_client.lua, LuaSec), one connection, mutual TLS as
--     the seed requires; one request at a time, so it measures latency-bound throughput.
-- Imports are durable: sqlite commits every import (WAL, synchronous=FULL) before the 200.
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath
local hsm = require "payhsm"
local util = require "payhsm.util"
local pki = require "spec.support.pki"
local serve = require "spec.support.serve"
local client_mod = require "payhsm.gateway.client"
local socket = require "socket"

local SECONDS = tonumber(arg[1]) or 5
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

local function record(name, n, dt, errors)
  results[#results + 1] = { name = name, rate = n / dt, errors = errors }
  print(("%-58s %9.0f req/s  (%d requests, %d errors)"):format(name, n / dt, n, errors))
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
  for i = 1, 1000 do bodies[i] = import_body("BENCH_LUA") end
  n, errors, t0 = 0, 0, socket.gettime()
  repeat
    for _ = 1, 20 do
      n = n + 1
      local resp = c.transport { method = "POST", path = "/key-management/keys/import",
        headers = { authorization = c.auth, ["content-type"] = "application/json" }, body = bodies[(n - 1) % 1000 + 1] }
      if not resp or resp.status ~= 200 then errors = errors + 1 end
    end
  until socket.gettime() - t0 >= SECONDS
  record(("Import Key%s, Lua client, mTLS"):format(backend == "sqlite" and " (durable, sqlite)" or ", memory"), n, socket.gettime() - t0, errors)
  c:close()
end

-- wrk, server-side TLS only.
local function wrk(backend, srv)
  local auth = "Basic " .. util.b64encode("integrator:pa55word")
  local c = client_mod.new {
    http = { host = "127.0.0.1", port = srv.port, tls = { cafile = keys.path("ca.pem") } },
    user = "integrator", password = "pa55word", zmks = { PAN = { label = "ZMK_PAN", key = zmk } } }
  local first = assert(c:rotate("PAN", "BENCH_WRK"))
  c:close()
  local script = os.tmpname()
  local bodies = {}
  for i = 1, 2000 do bodies[i] = ("%q"):format(import_body("BENCH_WRK")) end
  local f = assert(io.open(script, "w"))
  f:write(([[
local auth = %q
local mode = os.getenv("BENCH_MODE")
local bodies = {%s}
local i = 0
local errors = 0
request = function()
  i = i + 1
  if mode == "get" then
    return wrk.format("GET", "/key-management/keys/%s", {Authorization = auth})
  end
  return wrk.format("POST", "/key-management/keys/import",
    {Authorization = auth, ["Content-Type"] = "application/json"}, bodies[(i - 1) %% #bodies + 1])
end
response = function(status) if status ~= 200 then errors = errors + 1 end end
done = function(summary) io.write(("RESULT %%d %%f %%d\n"):format(summary.requests, summary.duration / 1e6,
  summary.errors.status + errors)) end
]]):format(auth, table.concat(bodies, ","), first.sessionKeyId))
  f:close()
  for _, mode in ipairs { "get", "import" } do
    local p = io.popen(("BENCH_MODE=%s wrk -t1 -c8 -d%ds -s %s https://127.0.0.1:%d/ 2>&1"):format(mode, SECONDS,
      script, srv.port))
    local out = p:read("a")
    p:close()
    local n, dt, errors = out:match("RESULT (%d+) ([%d.]+) (%d+)")
    -- wrk's own "errors" line-count only the last response of each connection at the end
    assert(n, out)
    record(("%s, wrk 8 conns, TLS, %s"):format(mode == "get" and "Get Key" or
      (backend == "sqlite" and "Import Key (durable)" or "Import Key"), backend), tonumber(n), tonumber(dt), tonumber(errors))
  end
  os.remove(script)
end

for _, backend in ipairs { "memory", "sqlite" } do
  local db = os.tmpname()
  local srv = serve.start("gateway", config(db, backend, true))
  lua_client(backend, srv)
  srv.stop() srv.cleanup()
  os.remove(db) os.remove(db .. "-wal") os.remove(db .. "-shm")
  db = os.tmpname()
  srv = serve.start("gateway", config(db, backend, false))
  wrk(backend, srv)
  srv.stop() srv.cleanup()
  os.remove(db) os.remove(db .. "-wal") os.remove(db .. "-shm")
end
pki.remove(keys)
