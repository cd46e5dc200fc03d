-- EMV: ARQC generate and verify (option A + EMV common session key + retail MAC over 40
-- bytes of transaction data), ARPC method 1 with the same derivation; secure messaging: an
-- issuer script MAC over 40 bytes and the Mastercard PIN change script (PIN block under a
-- PEK in, two ICC master keys, two session keys, encipherment and MAC out).
local hsm = require "payhsm"

return function(b)
  local imk = hsm.key.import("TDES_2KEY", "0123456789ABCDEFFEDCBA9876543210", { usage = "E0", mode = "X" })
  local p = { mode = "EMV_OPTION_A", derivation = "EMV_COMMON", pan = "5413330089020011", psn = "01",
              atc = "001C", data = ("0123456789ABCDEF"):rep(5) }
  local gen, ver, arpc = hsm.emv.generate_arqc, hsm.emv.verify_arqc, hsm.emv.generate_arpc
  local v = {}
  for k, x in pairs(p) do v[k] = x end
  v.arqc = gen(imk, p)
  local a = {}
  for k, x in pairs(v) do a[k] = x end
  a.method, a.arc = 1, "3030"
  b.case("arqc_generate_optA_common_40B", 500000, function() return gen(imk, p) end)
  b.case("arqc_verify_optA_common_40B", 500000, function() return ver(imk, v) end)
  b.case("arpc_method1_optA_common", 500000, function() return arpc(imk, a) end)
  local smi = hsm.key.import("TDES_2KEY", "0123456789ABCDEFFEDCBA9876543210", { usage = "E2", mode = "N" })
  local cmd = ("0123456789ABCDEF"):rep(5)
  b.case("emv_sm_mac_40B", 500000, function() return hsm.emv.sm_mac(smi, cmd) end)
  local imk_smc = hsm.key.import("TDES_2KEY", "11111111111111112222222222222222", { usage = "E1" })
  local imk_smi = hsm.key.import("TDES_2KEY", "0123456789ABCDEFFEDCBA9876543210", { usage = "E2" })
  local pek = hsm.key.import("TDES_2KEY", "00112233445566778899AABBCCDDEEFF", { usage = "P0" })
  local pc = { derivation = "MASTERCARD", pan = "5413330089020011", psn = "01", arqc = "ABCDEF1234567890",
    pek = pek, pin_block = hsm.pin.encrypt(pek, "ISO_FORMAT_0", "9999", "5413330089020011"),
    message_data = "8424000210" }
  b.case("emv_pin_change_mastercard", 200000, function() return hsm.emv.pin_change(imk_smc, imk_smi, pc) end)
end
