--- The multi-use public key service under a flood of key generations, against
-- `bin/payhsm serve mupk` (its own process, one thread, memory store): three clients
-- call POST /security/v1/keys/generate as fast as they can for SECONDS seconds while a
-- fourth times GET /security/v1/keys/{keyId} of a key made beforehand.
--   lua5.4 bench/mupk_flood.lua [seconds]      (from the repo root)
-- Two runs: the clients without credentials (every generate is refused with 401 before
-- any work), then with credentials for one merchant (generate_rate 10 a minute: the
-- 11th and later get 429 before any RSA work). Printed: generates answered 201, 401 and
-- 429, keys in the store afterwards, and the GET latency (median and maximum).
-- Target: no RSA key made for a refused client, GET latency of the idle server.
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath
local cjson = require "cjson"
local serve = require "spec.support.serve"
local util = require "payhsm.util"
local http = require "payhsm.http"
local client_mod = require "payhsm.http_client"

local SECONDS = tonumber(arg[1]) or 10
local AUTH = { authorization = "Basic " .. util.b64encode("shop:bench-password") }

local srv = serve.start("mupk", ([[{ listen = "127.0.0.1:0", store = { backend = "memory" },
  basic_auth = { shop = "bench-password" }, generate_rate = { per_minute = 10 },
  storage_key = { algorithm = "AES_256", hex = %q } }]]):format(("5B"):rep(32)))

local function new_client() return client_mod.new { host = "127.0.0.1", port = srv.port, timeout = 30 } end
local GEN = cjson.encode { merchantDetails = { merchantId = "123456789012345" } }

local probe = new_client()
local made = assert(probe:request { method = "POST", path = "/security/v1/keys/generate", headers = AUTH,
  body = cjson.encode { merchantDetails = { merchantId = "PROBE" } } })
local key_id = cjson.decode(made.body).asymmetricKeyDetails.keyId

local function get_ms()
  local t0 = http.clock()
  local r = assert(probe:request { method = "GET", path = "/security/v1/keys/" .. key_id, headers = AUTH })
  assert(r.status == 200)
  return (http.clock() - t0) * 1000
end

local function run(name, headers)
  local clients = { new_client(), new_client(), new_client() }
  local counts, lat = {}, {}
  local stop = os.time() + SECONDS
  while os.time() < stop do
    for _, c in ipairs(clients) do
      local r = assert(c:request { method = "POST", path = "/security/v1/keys/generate", headers = headers, body = GEN })
      counts[r.status] = (counts[r.status] or 0) + 1
    end
    lat[#lat + 1] = get_ms()
  end
  for _, c in ipairs(clients) do c:close() end
  table.sort(lat)
  print(("%-34s 201: %4d  401: %6d  429: %6d   GET median %.2f ms, max %.2f ms (%d GETs, %d s)"):format(name,
    counts[201] or 0, counts[401] or 0, counts[429] or 0, lat[math.ceil(#lat / 2)], lat[#lat], #lat, SECONDS))
end

print(("idle server: GET %.2f ms"):format(get_ms()))
run("3 clients without credentials", {})
run("3 clients, one merchant, with Basic", AUTH)
probe:close()
srv.stop()
srv.cleanup()
