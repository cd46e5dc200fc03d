--- Load on the POS server: DEVICES device processes (lua/payhsm/pos/device.lua), each on its
-- own keep-alive connection, activate and then charge for SECONDS against `bin/payhsm serve
-- pos` (sqlite store), for ROUNDS rounds. Fails (exit 1) on any refused or failed charge, or
-- when the server's resident memory grows by more than 4 MiB after the warm-up round.
--   lua5.4 bench/load_pos.lua [seconds=10] [devices=16] [rounds=4]   (`make load` runs it)
-- wrk cannot drive this server: every POS request carries a fresh nonce, time stamp and
-- HMAC signature, which only a device can make.
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath
local serve = require "spec.support.serve"

local SECONDS = tonumber(arg[1]) or 10
local DEVICES = tonumber(arg[2]) or 16
local ROUNDS = tonumber(arg[3]) or 4
local db = os.tmpname()
local devices = {}
for i = 1, DEVICES do
  devices[i] = { id = ("POS-%08X"):format(0x10000000 + i), zmk = ("%02X"):format(i):rep(32),
    dak = ("%02X"):format(255 - i):rep(32) }
end
-- every device charges its own cards: an EMV card's ATC only goes up, and the server refuses
-- an ATC it has seen (two devices sharing a card would decline each other's charges)
-- (and new cards per round, since a worker process starts its cards' ATC afresh). A
-- card's ATC stops at FFFF, so each worker gets enough cards for 6,500 charges/s (more
-- than the whole server does) and moves to the next before one is used up.
local PER_WORKER = math.floor(SECONDS * 6500 / 65000) + 1
assert(PER_WORKER <= 9, "load_pos: at most 90 s per round")
local cards = {}
local function pan_of(i, r, k) return ("4761739%d%04d%04d"):format(k, r, i) end
local function pans_of(i, r)
  local t = {}
  for k = 1, PER_WORKER do t[k] = pan_of(i, r, k) end
  return table.concat(t, ",")
end
for r = 1, ROUNDS do
  for i = 1, DEVICES do
    for k = 1, PER_WORKER do
      cards[#cards + 1] = ('{ pan = "%s", psn = "01", pin = "1234", limit = 100000000 }'):format(pan_of(i, r, k))
    end
  end
end
local dev_cfg = {}
for _, d in ipairs(devices) do
  dev_cfg[#dev_cfg + 1] = ("{ device_id = %q, zmk = %q, attestation_key = %q }"):format(d.id, d.zmk, d.dak)
end
local srv = serve.start("pos", ([[{
  listen = "127.0.0.1:0",
  store = { backend = "sqlite", path = %q },
  storage_key = { hex = %q },
  devices = { %s },
  issuer = { imk = "0123456789ABCDEFFEDCBA9876543210", mode = "EMV_OPTION_A", derivation = "EMV_COMMON",
             cards = { %s } },
}]]):format(db, ("5C"):rep(32), table.concat(dev_cfg, ", "), table.concat(cards, ", ")))

local rss_kib = srv.rss_kib

local function round(n)
  local outs = {}
  for i, d in ipairs(devices) do
    outs[i] = os.tmpname()
    os.execute(("lua5.4 bench/load_pos_worker.lua %d %s %s %s %d %s > %s 2>&1 &"):format(srv.port, d.id, d.zmk, d.dak,
      SECONDS, pans_of(i, n), outs[i]))
  end
  os.execute("sleep " .. SECONDS)
  local ok, errors, note = 0, 0, nil
  for _, out in ipairs(outs) do
    local text = ""
    for _ = 1, 150 do
      local h = io.open(out)
      text = h:read("*a")
      h:close()
      if text:match("RESULT") then break end
      os.execute("sleep 0.2")
    end
    os.remove(out)
    local a, b, rest = text:match("RESULT (%d+) (%d+) ?([^\n]*)")
    if not a then errors, note = errors + 1, text:sub(1, 200) else
      ok, errors = ok + tonumber(a), errors + tonumber(b)
      if tonumber(b) > 0 then note = rest end
    end
  end
  print(("round %d: %d devices, %d charges approved (%.0f/s), %d errors%s"):format(n, DEVICES, ok, ok / SECONDS, errors,
    note and ("  (" .. note .. ")") or ""))
  return errors == 0
end

local ok = round(1)
local base = rss_kib()
print(("server RSS after warm-up: %d KiB"):format(base))
for n = 2, ROUNDS do
  ok = round(n) and ok
  local r = rss_kib()
  print(("server RSS after round %d: %d KiB (%+d KiB)"):format(n, r, r - base))
end
local growth = rss_kib() - base
srv.stop() srv.cleanup()
os.remove(db) os.remove(db .. "-wal") os.remove(db .. "-shm")
print(("load pos: %d devices, %d rounds of %d s; RSS growth after warm-up %d KiB (limit 4096); %s")
  :format(DEVICES, ROUNDS, SECONDS, growth, ok and "no errors" or "ERRORS"))
os.exit((ok and growth <= 4096) and 0 or 1)
