-- POS over HTTP: full activations per second and charges per second of one device
-- (lua/payhsm/pos/device.lua) against `bin/payhsm serve pos` (memory store), over one
-- keep-alive connection. Run from the repository root (after `make core`):
--   lua5.4 bench/pos_http.lua [charges=5000] [activations=300] [store=memory|redis]
-- An activation is the whole flow: challenge, attest, keys (fresh set, installed and
-- KCV-checked), config, terminal parameters (gzip), activate: 6 requests. A charge is a
-- chip charge with a PIN block (format 4) and an ARQC, the response envelope opened, its
-- signature and ARPC checked: 1 request. Client and server each run on one core; the
-- server's CPU time is read from /proc. A card's ATC is 2 bytes and never wraps, so the
-- bench gives the issuer one card per 65,000 charges and moves to the next card before
-- the ATC reaches FFFF (CARD_ATC_EXHAUSTED).
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath

local socket = require "socket"
local hsm = require "payhsm"
local serve = require "spec.support.serve"
local device_mod = require "payhsm.pos.device"
local pos = require "payhsm.pos.server"

local N_CHARGES = tonumber(arg[1]) or 5000
local N_ACT = tonumber(arg[2]) or 300
local BACKEND = arg[3] or "memory"

local ZMK, DAK = ("3A"):rep(32), ("4B"):rep(32)
local DEV = "POS-8F3A2C91"
local IMK = pos.TEST_ISSUER.imk
local pans, cards = {}, {}
for i = 1, math.floor((N_CHARGES + 50) / 65000) + 1 do
  pans[i] = ("476173900101%04d"):format(i)
  cards[i] = ('{ pan = "%s", psn = "01", pin = "1234", limit = 100000 }'):format(pans[i])
end

local store, stop_redis = '{ backend = "memory" }', nil
if BACKEND == "redis" then
  local url
  url, stop_redis = require("spec.support.redis").start()
  store = ("{ backend = \"redis\", url = %q, prefix = \"bench:\" }"):format(url)
end

local srv = serve.start("pos", ([[{
  listen = "127.0.0.1:0",
  store = %s,
  storage_key = { hex = %q },
  devices = { { device_id = %q, zmk = %q, attestation_key = %q } },
  issuer = { imk = %q, mode = "EMV_OPTION_A", derivation = "EMV_COMMON", cards = { %s } },
}]]):format(store, ("5C"):rep(32), DEV, ZMK, DAK, IMK, table.concat(cards, ", ")))

local function server_cpu()
  local f = io.open("/proc/" .. srv.pid .. "/stat")
  if not f then return 0 end
  local s = f:read("*a")
  f:close()
  local fields = {}
  for x in s:match("%) (.*)$"):gmatch("%S+") do fields[#fields + 1] = x end
  return (tonumber(fields[12]) + tonumber(fields[13])) / 100 -- utime + stime, clock ticks
end

local ok, err = pcall(function()
  local d = device_mod.new {
    device_id = DEV,
    zmk = hsm.key.import("AES_256", ZMK, { usage = "K1", mode = "B" }),
    attestation_key = hsm.key.import("HMAC_SHA256", DAK, { usage = "M7", mode = "C" }),
    http = { host = "127.0.0.1", port = srv.port, timeout = 10 },
  }
  assert(d:activate_all())
  local imk = hsm.key.import("TDES_2KEY", IMK, { usage = "E0" })
  local n_card = 1
  local card = device_mod.card { pan = pans[1], psn = "01", imk = imk }

  local function run(name, n, fn)
    for _ = 1, math.min(50, n) do fn() end -- warm up
    local cpu0, c0, t0 = server_cpu(), os.clock(), socket.gettime()
    for _ = 1, n do fn() end
    local wall, client, server = socket.gettime() - t0, os.clock() - c0, server_cpu() - cpu0
    print(("%-12s %7d ops  %8.3f s  %9.0f ops/s  %7.1f us/op   client CPU %5.1f us/op, server CPU %5.1f us/op")
      :format(name, n, wall, n / wall, wall / n * 1e6, client / n * 1e6, server / n * 1e6))
    return n / wall
  end

  print(("pos over HTTP keep-alive, store %s, server pid %s"):format(BACKEND, srv.pid))
  local act = run("activations", N_ACT, function() assert(d:activate_all()) end)
  local chg = run("charges", N_CHARGES, function()
    if card.atc >= 65535 then -- used up: the next card
      n_card = n_card + 1
      card = device_mod.card { pan = assert(pans[n_card], "out of cards"), psn = "01", imk = imk }
    end
    local ch = assert(d:charge { amount = 1250, currency = "EUR", entry_mode = "chip", card = card, pin = "1234" })
    assert(ch.status == "approved" and ch.arpc_ok, ch.response_code)
  end)
  print(("activations/s %.0f   charges/s %.0f   (target >= 2000 charges/s: %s)"):format(act, chg,
    chg >= 2000 and "met" or "NOT met"))
  d:close()
end)
srv.stop()
srv.cleanup()
if stop_redis then stop_redis() end
if not ok then error(err, 0) end
