-- Card and PIN verification values: CVV, dCVV and CVC3 verification; Visa PVV and IBM 3624
-- offset verification from a clear PIN; PIN verification from an enciphered PIN block
-- (decipher + PVV or offset + constant-time compare, all in C).
local hsm = require "payhsm"

return function(b)
  local cvk = hsm.key.import("TDES_2KEY", "0123456789ABCDEFFEDCBA9876543210", { usage = "C0" })
  local pvk = hsm.key.import("TDES_2KEY", "0123456789ABCDEFFEDCBA9876543210", { usage = "V2" })
  local ibk = hsm.key.import("TDES_2KEY", "0123456789ABCDEFFEDCBA9876543210", { usage = "V1" })
  local tpk = hsm.key.import("TDES_2KEY", "89E88CF7931444F334BD7547FC3F380C", { usage = "P0", mode = "B" })
  local zpk = hsm.key.import("AES_128", "00112233445566778899AABBCCDDEEFF", { usage = "P0", mode = "B" })
  local imk = hsm.key.import("TDES_2KEY", "01234567899876543210012345678998", { usage = "E0" })
  local pan = "4123456789012345"
  local card, pin, equal = hsm.card, hsm.pin, hsm.equal

  local cvv = card.cvv(cvk, pan, "8701", "101")
  b.case("card_verify_cvv", 1000000, function() return card.verify_cvv(cvk, pan, "8701", "101", cvv) end)
  local icc = hsm.emv.derive_icc_master_key(imk, pan, "00", "EMV_OPTION_A")
  local d = { pan = pan, psn = "00", expiry = "8701", service_code = "101", atc = "005E" }
  local dcvv = card.dcvv(icc, d)
  b.case("card_verify_dcvv", 500000, function() return card.verify_dcvv(icc, d, dcvv) end)
  local c3 = { track_data = pan .. "D87011010000000000000F", atc = "005E", un = "00000899" }
  local cvc3 = card.cvc3(icc, c3)
  b.case("card_verify_cvc3", 500000, function() return card.verify_cvc3(icc, c3, cvc3) end)

  local pvv = pin.visa_pvv(pvk, "1234", pan, "1")
  b.case("pin_pvv_verify_clear", 1000000, function() return equal(pin.visa_pvv(pvk, "1234", pan, "1"), pvv) end)
  local p = { decimalization_table = "0123456789012345", validation_data = pan:sub(5, 15), pad_char = "F" }
  local off = pin.ibm3624_offset(ibk, "1234", p)
  b.case("pin_ibm3624_verify_clear", 1000000, function() return equal(pin.ibm3624_offset(ibk, "1234", p), off) end)

  local blk0 = pin.encrypt(tpk, "ISO_FORMAT_0", "1234", pan)
  local blk4 = pin.encrypt(zpk, "ISO_FORMAT_4", "1234", pan)
  local vp = { method = "VISA_PVV", pvki = "1", pvv = pvv }
  local vi = { method = "IBM3624", offset = off, decimalization_table = p.decimalization_table,
               validation_data = p.validation_data, pad_char = "F" }
  b.case("pin_verify_block_f0_pvv", 1000000, function() return pin.verify(pvk, tpk, "ISO_FORMAT_0", blk0, pan, vp) end)
  b.case("pin_verify_block_f4_pvv", 1000000, function() return pin.verify(pvk, zpk, "ISO_FORMAT_4", blk4, pan, vp) end)
  b.case("pin_verify_block_f0_ibm3624", 1000000, function() return pin.verify(ibk, tpk, "ISO_FORMAT_0", blk0, pan, vi) end)
end
