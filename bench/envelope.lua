-- MSK envelopes: AES-256-CBC seal and open of 1 KiB and 64 KiB bodies; HMAC-SHA-256 of 1 KiB.
local hsm = require "payhsm"

return function(b)
  local msk = hsm.key.import("AES_256", ("11"):rep(32), { usage = "D0", mode = "B" })
  local mk = hsm.key.import("HMAC_SHA256", ("22"):rep(32), { usage = "M7" })
  local k1, k64 = ("x"):rep(1024), ("y"):rep(65536)
  local seal, open = hsm.envelope.seal, hsm.envelope.open
  local e1, e64 = seal(msk, k1), seal(msk, k64)
  b.case("envelope_seal_1KiB", 300000, function() return seal(msk, k1) end)
  b.case("envelope_open_1KiB", 300000, function() return open(msk, e1) end)
  b.case("envelope_seal_64KiB", 5000, function() return seal(msk, k64) end)
  b.case("envelope_open_64KiB", 5000, function() return open(msk, e64) end)
  b.case("hmac_sha256_1KiB", 300000, function() return hsm.hmac(mk, k1) end)
end
