-- EMV secure messaging and the PIN change script (csrc/emvsm.c).
local hsm = require "payhsm"

-- Sources:
--  [pyemv]  pyemv (github.com/knovichikhin/pyemv), an independent implementation:
--           pyemv/sm.py docstrings (generate_command_mac 8424000008 -> 0BFFF5DF3FAA24E1, with
--           ATC FFFF || ARQC 1234567890123456 -> E07B8DF1B4184282; encrypt_command_data EMV
--           249999FF.. -> 5A862D1381CCB94822CFDD706A376178, MASTERCARD 241234FF.. -> 9859240AE52820C3),
--           and tests/test_sm_hsm.py: IMK-SMC 1111..2222 (KCV D2B91C), IMK-SMI 0123..3210 (08D7B4),
--           IMK-AC FEDC..CDEF (7B8358), PAN 1234567890123456, PSN 01, option A; common session
--           keys from R = ABCDEF1234567890 (SK-SMC D694B8, SK-SMI F088F8), Visa session keys from
--           ATC FFFF (BD7C46, A41D47); Mastercard, EMV (CCD) and Visa PIN change scripts.
--  [emv]    EMV 4.4 Book 2 9.2.3 / A1.2 (MAC algorithm 3, padding method 2) and 9.3 / A1.1.
--  [pyca]   computed with pyca/cryptography (tools/crosscheck/sm_pyemv.py compares at random).
local PAN, PSN, R = "1234567890123456", "01", "ABCDEF1234567890"
local function tdes(hex, attrs) return hsm.key.import("TDES_2KEY", hex, attrs) end
local function imk_smc() return tdes("11111111111111112222222222222222", { usage = "E1" }) end
local function imk_smi() return tdes("0123456789ABCDEFFEDCBA9876543210", { usage = "E2" }) end
local function imk_ac() return tdes("FEDCBA98765432100123456789ABCDEF", { usage = "E0" }) end
local PEK = tdes("00112233445566778899AABBCCDDEEFF", { usage = "P0" })
local function pinblock(pin) return hsm.pin.encrypt(PEK, "ISO_FORMAT_0", pin, PAN) end
local function sk(imk, derivation, p)
  return hsm.emv.derive_sm_session_key(hsm.emv.derive_icc_master_key(imk, PAN, PSN, "EMV_OPTION_A"), derivation, p)
end

describe("emv secure messaging", function()
  describe("sm_mac()", function()
    local k = tdes("0123456789ABCDEFFEDCBA9876543210")
    it("issuer script MACs [pyemv]", function()
      assert.equal("0BFFF5DF3FAA24E1", hsm.emv.sm_mac(k, "8424000008"))
      assert.equal("E07B8DF1B4184282", hsm.emv.sm_mac(k, "8424000008" .. "FFFF" .. "1234567890123456"))
      assert.equal("0BFFF5DF", hsm.emv.sm_mac(k, "8424000008", { length = 4 }))
      local e2 = tdes("0123456789ABCDEFFEDCBA9876543210", { usage = "E2", mode = "X" })
      assert.equal("0BFFF5DF3FAA24E1", hsm.emv.sm_mac(e2, "8424000008"))
      assert.equal("CF323F09A0F6AB9E", hsm.emv.sm_mac(sk(imk_smi(), "EMV_COMMON", { arqc = R }), "8424000008"))
    end)
    it("is MAC algorithm 3 with padding method 2 [emv]", function()
      assert.equal(hsm.mac.generate(k, "ISO9797_ALGORITHM3", "8424000008", { padding = 2 }),
        hsm.emv.sm_mac(k, "8424000008"))
      assert.equal(hsm.mac.generate(k, "ISO9797_ALGORITHM3", ("AB"):rep(1024), { padding = 2 }),
        hsm.emv.sm_mac(k, ("ab"):rep(1024)))
    end)
    it("refuses bad input and the wrong key", function()
      assert.equal("BAD_HEX", select(3, hsm.emv.sm_mac(k, "842400000")))
      assert.equal("BAD_LENGTH", select(3, hsm.emv.sm_mac(k, ("00"):rep(1025))))
      assert.equal("KEY_TYPE", select(3, hsm.emv.sm_mac(hsm.key.generate("AES_128"), "00")))
      assert.equal("KEY_USAGE", select(3, hsm.emv.sm_mac(tdes("0123456789ABCDEFFEDCBA9876543210", { usage = "E1" }), "00")))
      assert.equal("KEY_USAGE", select(3, hsm.emv.sm_mac(tdes("0123456789ABCDEFFEDCBA9876543210", { usage = "M3" }), "00")))
      assert.has_error(function() hsm.emv.sm_mac(k, "00", { length = 3 }) end)
      assert.has_error(function() hsm.emv.sm_mac(k, "00", { lenght = 4 }) end,
        "emv.sm_mac: unknown option 'lenght' (expected one of: length)")
    end)
  end)

  describe("sm_encrypt() and sm_decrypt()", function()
    local k = tdes("0123456789ABCDEFFEDCBA9876543210")
    it("EMV: padding method 2 always, CBC [pyemv]", function()
      assert.equal("5A862D1381CCB94822CFDD706A376178", hsm.emv.sm_encrypt(k, "249999FFFFFFFFFF", { type = "EMV" }))
      assert.equal("5A862D1381CCB94822CFDD706A376178", hsm.emv.sm_encrypt(k, "249999ffffffffff"))
      assert.equal("249999FFFFFFFFFF", hsm.emv.sm_decrypt(k, "5A862D1381CCB94822CFDD706A376178", { type = "EMV" }))
    end)
    it("MASTERCARD: padding only when the data is not whole blocks [pyemv]", function()
      assert.equal("9859240AE52820C3", hsm.emv.sm_encrypt(k, "241234FFFFFFFFFF", { type = "MASTERCARD" }))
      local kab = tdes("AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB")
      assert.equal(hsm.emv.sm_encrypt(kab, "1234800000000000", { type = "MASTERCARD" }),
        hsm.emv.sm_encrypt(kab, "1234", { type = "MASTERCARD" }))
      assert.equal("241234FFFFFFFFFF", hsm.emv.sm_decrypt(k, "9859240AE52820C3", { type = "MASTERCARD" }))
    end)
    it("VISA: length byte, padding method 2; CBC by default, ECB (Visa VIS) on request [pyemv]", function()
      local smc = sk(imk_smc(), "VISA", { atc = "FFFF" })
      assert.equal("BD7C46", smc:kcv())
      -- pyemv's Visa vectors are enciphered in ECB, as Visa VIS issuers do
      assert.equal("D421231A6FD2F0FAEE671384F0D3A7B9", hsm.emv.sm_encrypt(smc, "049999FFC4B001F1", { type = "VISA", mode = "ECB" }))
      assert.equal("049999FFC4B001F1", hsm.emv.sm_decrypt(smc, "D421231A6FD2F0FAEE671384F0D3A7B9", { type = "VISA", mode = "ECB" }))
      -- ECB: the second block (F1 80 00 ..) is the same whatever the first
      assert.equal("EE671384F0D3A7B9", hsm.emv.sm_encrypt(smc, "8C1199FFC4B001F1", { type = "VISA", mode = "ECB" }):sub(17))
      -- the default chaining is CBC from a zero IV: the first block is ECB's, the second is not
      local cbc = hsm.emv.sm_encrypt(smc, "049999FFC4B001F1", { type = "VISA" })
      assert.equal(cbc, hsm.emv.sm_encrypt(smc, "049999FFC4B001F1", { type = "VISA", mode = "CBC" }))
      assert.equal("D421231A6FD2F0FA", cbc:sub(1, 16))
      assert.are_not.equal("EE671384F0D3A7B9", cbc:sub(17))
      assert.equal("049999FFC4B001F1", hsm.emv.sm_decrypt(smc, cbc, { type = "VISA" }))
    end)
    it("round trips every length for every type", function()
      local smc = tdes("0123456789ABCDEFFEDCBA9876543210", { usage = "E1" })
      for _, t in ipairs { "EMV", "VISA", "MASTERCARD" } do
        for n = 0, 40 do
          local data = ("A5"):rep(n)
          if not (t == "MASTERCARD" and n == 0) then
            local c = hsm.emv.sm_encrypt(smc, data, { type = t })
            assert.equal(0, #c % 16)
            local back = hsm.emv.sm_decrypt(smc, c, { type = t })
            if t == "MASTERCARD" and n % 8 ~= 0 then
              assert.equal(data .. "80", back:sub(1, 2 * n + 2))
            else
              assert.equal(data, back)
            end
          end
        end
      end
    end)
    it("refuses bad input and the wrong key", function()
      local smc = tdes("0123456789ABCDEFFEDCBA9876543210", { usage = "E1" })
      assert.equal("BAD_HEX", select(3, hsm.emv.sm_encrypt(smc, "ZZ")))
      assert.equal("BAD_LENGTH", select(3, hsm.emv.sm_encrypt(smc, "", { type = "MASTERCARD" })))
      assert.equal("BAD_LENGTH", select(3, hsm.emv.sm_encrypt(smc, ("00"):rep(256), { type = "VISA" })))
      assert.equal("BAD_LENGTH", select(3, hsm.emv.sm_encrypt(smc, ("00"):rep(1025))))
      assert.equal("BAD_LENGTH", select(3, hsm.emv.sm_decrypt(smc, ("00"):rep(12))))
      assert.equal("BAD_LENGTH", select(3, hsm.emv.sm_decrypt(smc, "")))
      assert.equal("SM_PADDING", select(3, hsm.emv.sm_decrypt(smc, "9859240AE52820C3", { type = "EMV" })))
      -- a VISA block whose length byte does not fit
      local c = hsm.emv.sm_encrypt(smc, "0102030480", { type = "MASTERCARD" })
      assert.equal("SM_PADDING", select(3, hsm.emv.sm_decrypt(smc, c, { type = "VISA", mode = "CBC" })))
      assert.equal("KEY_USAGE", select(3, hsm.emv.sm_encrypt(tdes("0123456789ABCDEFFEDCBA9876543210", { usage = "E2" }), "00")))
      assert.equal("KEY_USAGE", select(3, hsm.emv.sm_decrypt(tdes("0123456789ABCDEFFEDCBA9876543210", { mode = "E" }), ("00"):rep(8))))
      assert.equal("KEY_TYPE", select(3, hsm.emv.sm_encrypt(hsm.key.generate("TDES_3KEY"), "00")))
      assert.has_error(function() hsm.emv.sm_encrypt(smc, "00", { type = "AMEX" }) end)
      assert.has_error(function() hsm.emv.sm_encrypt(smc, "00", { tpye = "EMV" }) end)
      assert.has_error(function() hsm.emv.sm_decrypt(smc, ("00"):rep(8), { mode = "OFB" }) end)
    end)
  end)

  describe("derive_sm_session_key()", function()
    it("common derivation from R, Visa from the ATC [pyemv]", function()
      local mk = hsm.emv.derive_icc_master_key(imk_smc(), PAN, PSN, "EMV_OPTION_A")
      assert.equal("6B0F76", mk:kcv())
      assert.equal("E1", mk.usage)
      local s = hsm.emv.derive_sm_session_key(mk, "EMV_COMMON", { arqc = R })
      assert.equal("D694B8", s:kcv())
      assert.equal("E1", s.usage)
      assert.equal("N", s.mode)
      assert.equal("D694B8", hsm.emv.derive_sm_session_key(mk, "MASTERCARD", { arqc = R }):kcv())
      assert.equal("F088F8", sk(imk_smi(), "EMV_COMMON", { arqc = R }):kcv())
      assert.equal("A41D47", sk(imk_smi(), "VISA", { atc = "FFFF" }):kcv())
      -- pyemv kd.derive_visa_sm_sk docstring: MK 0123..3210, ATC 001C
      assert.equal("0123456789ABCDF2FEDCBA987654CDF2",
        hsm.emv.derive_sm_session_key(tdes("0123456789ABCDEFFEDCBA9876543210"), "VISA", { atc = "001C" }):export())
      -- the same keys as derive_session_key's common derivation when R is ATC || 00..00
      local mk2 = tdes("0123456789ABCDEFFEDCBA9876543210")
      assert.equal(hsm.emv.derive_session_key(mk2, "EMV_COMMON", { atc = "0012" }):export(),
        hsm.emv.derive_sm_session_key(mk2, "EMV_COMMON", { arqc = "0012000000000000" }):export())
    end)
    it("refuses bad input", function()
      local mk = tdes("0123456789ABCDEFFEDCBA9876543210")
      assert.equal("EMV_ARQC", select(3, hsm.emv.derive_sm_session_key(mk, "EMV_COMMON", { arqc = "12" })))
      assert.equal("EMV_ARQC", select(3, hsm.emv.derive_sm_session_key(mk, "EMV_COMMON", { arqc = ("ZZ"):rep(8) })))
      assert.equal("EMV_ATC", select(3, hsm.emv.derive_sm_session_key(mk, "VISA", { atc = "FFFFF" })))
      assert.equal("KEY_USAGE", select(3, hsm.emv.derive_sm_session_key(tdes(("11"):rep(16), { usage = "P0" }), "VISA", { atc = "0001" })))
      assert.has_error(function() hsm.emv.derive_sm_session_key(mk, "EMV_COMMON", {}) end)
      assert.has_error(function() hsm.emv.derive_sm_session_key(mk, "EMV2000", { atc = "0001" }) end)
      assert.has_error(function() hsm.emv.derive_sm_session_key(mk, "VISA", { atc = "0001", un = "00" }) end)
    end)
  end)

  describe("pin_change()", function()
    local function p(t)
      local q = { pan = PAN, psn = PSN, mode = "EMV_OPTION_A", pek = PEK, pin_block = pinblock("9999"),
        message_data = "8424000210" }
      for f, v in pairs(t) do q[f] = v end
      return q
    end
    it("Mastercard: ISO format 2 block, no padding [pyemv]", function()
      local r = hsm.emv.pin_change(imk_smc(), imk_smi(), p { derivation = "MASTERCARD", arqc = R })
      assert.same({ encrypted_pin_block = "28367E05DE3381C2", mac = "8C4D10091A093B5B" }, r)
      r = hsm.emv.pin_change(imk_smc(), imk_smi(), p { derivation = "MASTERCARD", arqc = R,
        pin_block = pinblock("999999999999") })
      assert.same({ encrypted_pin_block = "99AD3AF9EB3ECF0C", mac = "1471D88C6393BE21" }, r)
    end)
    it("EMV common (CCD): ISO format 2 block, padding method 2 [pyemv]", function()
      local r = hsm.emv.pin_change(imk_smc(), imk_smi(), p { arqc = R })
      assert.same({ encrypted_pin_block = "28367E05DE3381C29D30A6055A8DEB86", mac = "69DA1EE208823022" }, r)
      r = hsm.emv.pin_change(imk_smc(), imk_smi(), p { derivation = "EMV_COMMON", arqc = R, mac_length = 4 })
      assert.equal("69DA1EE2", r.mac)
    end)
    it("Visa: VIS PIN block, with and without the current PIN [pyemv]", function()
      local r = hsm.emv.pin_change(imk_smc(), imk_smi(), p { derivation = "VISA", atc = "FFFF", imk_ac = imk_ac() })
      assert.same({ encrypted_pin_block = "D421231A6FD2F0FAEE671384F0D3A7B9", mac = "F67E37E67B06AB99" }, r)
      r = hsm.emv.pin_change(imk_smc(), imk_smi(), p { derivation = "VISA", atc = "FFFF", imk_ac = imk_ac(),
        current_pin_block = pinblock("8888"), message_data = "8424000110" })
      assert.same({ encrypted_pin_block = "C29371CC36BA70C1EE671384F0D3A7B9", mac = "6AB3AD15D8B0621A" }, r)
      r = hsm.emv.pin_change(imk_smc(), imk_smi(), p { derivation = "VISA", atc = "FFFF", imk_ac = imk_ac(),
        pin_block = pinblock("999999999999"), current_pin_block = pinblock("888888888888"), message_data = "8424000110" })
      assert.same({ encrypted_pin_block = "622066A74F1E974AEE671384F0D3A7B9", mac = "829AC5DE4B88074D" }, r)
    end)
    it("takes the new PIN in ISO formats 1 and 3 and under its own PEK for the current PIN", function()
      local pek2 = tdes("FFEEDDCCBBAA99887766554433221100", { usage = "P0" })
      local b3 = hsm.pin.encrypt(PEK, "ISO_FORMAT_3", "9999", PAN)
      local b1 = hsm.pin.encrypt(PEK, "ISO_FORMAT_1", "9999", PAN)
      for _, q in ipairs { { pin_block = b3, format = "ISO_FORMAT_3" }, { pin_block = b1, format = "ISO_FORMAT_1" } } do
        q.derivation, q.arqc = "MASTERCARD", R
        assert.equal("28367E05DE3381C2", hsm.emv.pin_change(imk_smc(), imk_smi(), p(q)).encrypted_pin_block)
      end
      local r = hsm.emv.pin_change(imk_smc(), imk_smi(), p { derivation = "VISA", atc = "FFFF", imk_ac = imk_ac(),
        current_pek = pek2, current_pin_block = hsm.pin.encrypt(pek2, "ISO_FORMAT_0", "8888", PAN), message_data = "8424000110" })
      assert.equal("6AB3AD15D8B0621A", r.mac)
    end)
    it("the MAC covers the message data and the enciphered block, as sm_mac does", function()
      local r = hsm.emv.pin_change(imk_smc(), imk_smi(), p { arqc = R, message_data = "8424000218" })
      local smi = sk(imk_smi(), "EMV_COMMON", { arqc = R })
      assert.equal(hsm.emv.sm_mac(smi, "8424000218" .. r.encrypted_pin_block), r.mac)
      local smc = sk(imk_smc(), "EMV_COMMON", { arqc = R })
      assert.equal("249999FFFFFFFFFF", hsm.emv.sm_decrypt(smc, r.encrypted_pin_block))
      local e = hsm.emv.pin_change(imk_smc(), imk_smi(), p { arqc = R, encryption_mode = "ECB", type = "MASTERCARD" })
      assert.equal("28367E05DE3381C2", e.encrypted_pin_block) -- one block: ECB = CBC from a zero IV
    end)
    it("refuses bad input and the wrong keys", function()
      local function code(q, a, b) return select(3, hsm.emv.pin_change(a or imk_smc(), b or imk_smi(), p(q))) end
      assert.equal("PIN_FORMAT", code { arqc = R, pin_block = hsm.pin.encrypt(PEK, "ISO_FORMAT_0", "9999", "4111111111111111") })
      assert.equal("BAD_LENGTH", code { arqc = R, pin_block = "0011" })
      assert.equal("BAD_HEX", code { arqc = R, message_data = "84240002G0" })
      assert.equal("BAD_LENGTH", code { arqc = R, message_data = ("00"):rep(1025) })
      assert.equal("EMV_ARQC", code { arqc = "1234" })
      assert.equal("EMV_ATC", code { derivation = "VISA", atc = "1", imk_ac = imk_ac() })
      assert.equal("EMV_PSN", code { arqc = R, psn = "001" })
      assert.equal("PAN_DIGITS", code { arqc = R, pan = "12345678901234X6" })
      assert.equal("KEY_USAGE", code({ arqc = R }, imk_smi(), imk_smc()))
      assert.equal("KEY_USAGE", code { arqc = R, pek = tdes(("12"):rep(16), { usage = "D0" }) })
      assert.equal("KEY_USAGE", code { derivation = "VISA", atc = "FFFF", imk_ac = imk_smc() })
      assert.equal("KEY_TYPE", code({ arqc = R }, hsm.key.generate("AES_128")))
      assert.equal("PIN_FORMAT", code { derivation = "VISA", atc = "FFFF", imk_ac = imk_ac(), current_pin_block = ("00"):rep(8) })
      assert.has_error(function() hsm.emv.pin_change(imk_smc(), imk_smi(), p { arqc = R, pinblock = "00" }) end)
      assert.has_error(function() hsm.emv.pin_change(imk_smc(), imk_smi(), p { derivation = "VISA", atc = "FFFF" }) end)
      assert.has_error(function() hsm.emv.pin_change(imk_smc(), imk_smi(), p {}) end) -- no arqc
      assert.has_error(function() hsm.emv.pin_change(imk_smc(), imk_smi(), p { arqc = R, current_pin_block = pinblock("8888") }) end)
      assert.has_error(function() hsm.emv.pin_change(imk_smc(), imk_smi(), p { arqc = R, mac_length = 9 }) end)
      assert.has_error(function() hsm.emv.pin_change(imk_smc(), imk_smi(), p { arqc = R, derivation = "AMEX" }) end)
    end)
  end)
end)
