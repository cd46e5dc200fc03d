-- PIN translation (ISO 9564-1): format 0 under TDES to format 4 under AES, and 0 to 0.
local hsm = require "payhsm"

return function(b)
  local tpk = hsm.key.import("TDES_2KEY", "0123456789ABCDEFFEDCBA9876543210", { usage = "P0", mode = "B" })
  local tpk2 = hsm.key.import("TDES_2KEY", "89E88CF7931444F334BD7547FC3F380C", { usage = "P0", mode = "B" })
  local zpk = hsm.key.import("AES_128", "00112233445566778899AABBCCDDEEFF", { usage = "P0", mode = "B" })
  local pan = "43219876543210987"
  local blk = hsm.pin.encrypt(tpk, "ISO_FORMAT_0", "1234", pan)
  local tr = hsm.pin.translate
  b.case("pin_translate_f0_tdes_to_f4_aes", 1000000, function() return tr(tpk, "ISO_FORMAT_0", blk, zpk, "ISO_FORMAT_4", pan) end)
  b.case("pin_translate_f0_tdes_to_f0_tdes", 1000000, function() return tr(tpk, "ISO_FORMAT_0", blk, tpk2, "ISO_FORMAT_0", pan) end)
end
