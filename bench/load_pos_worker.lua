-- One POS device for bench/load_pos.lua: activates, then charges for SECONDS over one
-- keep-alive connection; prints "RESULT ok errors" (errors: refusals or transport failures).
--   lua5.4 bench/load_pos_worker.lua PORT DEVICE_ID ZMK_HEX DAK_HEX SECONDS PAN[,PAN...]
-- A card whose ATC reached FFFF is used up: the worker moves to the next PAN.
package.path = "./lua/?.lua;./lua/?/init.lua;./?.lua;" .. package.path
package.cpath = "./build/?.so;" .. package.cpath
local hsm = require "payhsm"
local socket = require "socket"
local pos = require "payhsm.pos.server"
local device_mod = require "payhsm.pos.device"
local port, dev, zmk, dak, seconds, pan_list = ...
local pans = {}
for p in pan_list:gmatch("%d+") do pans[#pans + 1] = p end
local d = device_mod.new {
  device_id = dev,
  zmk = hsm.key.import("AES_256", zmk, { usage = "K1", mode = "B" }),
  attestation_key = hsm.key.import("HMAC_SHA256", dak, { usage = "M7", mode = "C" }),
  http = { host = "127.0.0.1", port = tonumber(port), timeout = 30 },
}
local ok, errors = 0, 0
local act, msg = d:activate_all()
if not act then
  io.write("RESULT 0 1 ", tostring(msg), "\n")
  os.exit(1)
end
local imk = hsm.key.import("TDES_2KEY", pos.TEST_ISSUER.imk, { usage = "E0" })
local n_card = 1
local card = device_mod.card { pan = pans[1], psn = "01", imk = imk }
local t_end = socket.gettime() + tonumber(seconds)
local last
while socket.gettime() < t_end do
  if card.atc >= 65535 then
    n_card = n_card + 1
    if not pans[n_card] then errors = errors + 1 last = "out of cards" break end
    card = device_mod.card { pan = pans[n_card], psn = "01", imk = imk }
  end
  local ch, err = d:charge { amount = 1250, currency = "EUR", entry_mode = "chip", card = card, pin = "1234" }
  if ch and ch.status == "approved" and ch.arpc_ok then ok = ok + 1 else errors = errors + 1 last = err end
end
d:close()
io.write(("RESULT %d %d %s\n"):format(ok, errors, tostring(last or "")))
