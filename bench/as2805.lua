-- AS2805 KEK validation request (16-byte random key) and response.
local hsm = require "payhsm"

return function(b)
  local kek = hsm.key.import("TDES_2KEY", "0123456789ABCDEFFEDCBA9876543210", { usage = "K0" })
  local o = { derive_algorithm = "TDES_2KEY", random_key_max_length = "BYTES_16", variant_mask = "VARIANT_MASK_82C0" }
  local m = { variant_mask = "VARIANT_MASK_82C0" }
  local krs = hsm.as2805.kek_validation_request(kek, o).random_key_send
  b.case("as2805_kek_validation_request_16B", 300000, function() return hsm.as2805.kek_validation_request(kek, o) end)
  b.case("as2805_kek_validation_response_16B", 300000, function() return hsm.as2805.kek_validation_response(kek, krs, m) end)
end
