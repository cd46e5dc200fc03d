-- TR-31 / X9.143 key blocks: wrap and unwrap, version D (AES-256 KBPK, AES-128 key) and
-- version B (TDES 2-key KBPK and key), with the library defaults (key length obfuscation,
-- random padding). The derived KBEK/KBMK are cached on the KBPK after the first call.
local hsm = require "payhsm"

return function(b)
  local kbpk_d = hsm.key.import("AES_256", "88E1AB2A2E3DD38C1FA039A536500CC8A87AB9D62DC92C01058FA79F44657DE6")
  local key_d = hsm.key.import("AES_128", "3F419E1CB7079442AA37474C2EFBF8B8", { usage = "P0", mode = "E" })
  local kbpk_b = hsm.key.import("TDES_2KEY", "DD7515F2BFC17F85CE48F3CA25CB21F6")
  local key_b = hsm.key.import("TDES_2KEY", "3F419E1CB7079442AA37474C2EFBF8B8", { usage = "P0", mode = "E" })
  local wrap, unwrap, hdr = hsm.tr31.wrap, hsm.tr31.unwrap, {}
  local block_d, block_b = wrap(kbpk_d, key_d, hdr), wrap(kbpk_b, key_b, hdr)
  b.case("tr31_wrap_D_aes256_aes128", 1000000, function() return wrap(kbpk_d, key_d, hdr) end)
  b.case("tr31_unwrap_D_aes256_aes128", 1000000, function() return unwrap(kbpk_d, block_d) end)
  b.case("tr31_wrap_B_tdes2_tdes2", 500000, function() return wrap(kbpk_b, key_b, hdr) end)
  b.case("tr31_unwrap_B_tdes2_tdes2", 500000, function() return unwrap(kbpk_b, block_b) end)
end
