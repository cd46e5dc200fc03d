-- Core primitives: KCV, CMAC, retail MAC, HMAC, through the Lua API.
local hsm = require "payhsm"

return function(b)
  local tdes = hsm.key.import("TDES_2KEY", "0123456789ABCDEFFEDCBA9876543210")
  local aes = hsm.key.import("AES_128", "3F419E1CB7079442AA37474C2EFBF8B8")
  local hm = hsm.key.import("HMAC_SHA256", ("0B"):rep(32))
  local d32 = ("0123456789ABCDEF"):rep(4)
  local mac, cmac, gen = hsm.mac, "CMAC", hsm.mac.generate
  b.case("kcv_tdes_x924", 2000000, function() return tdes:kcv() end)
  b.case("kcv_aes_cmac", 2000000, function() return aes:kcv(cmac) end)
  b.case("cmac_aes128_32B", 1000000, function() return gen(aes, cmac, d32) end)
  b.case("cmac_tdes_32B", 1000000, function() return gen(tdes, cmac, d32) end)
  b.case("retail_mac_32B", 1000000, function() return gen(tdes, "ISO9797_ALGORITHM3", d32) end)
  b.case("retail_mac_verify_32B", 1000000, function()
    return mac.verify(tdes, "ISO9797_ALGORITHM3", d32, "A1C72E74EA3FA9B6")
  end)
  b.case("hmac_sha256_32B", 1000000, function() return gen(hm, "HMAC_SHA256", d32) end)
end
