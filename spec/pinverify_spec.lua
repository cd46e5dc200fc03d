-- PIN verification values (csrc/pinverify.c): Visa PVV and IBM 3624 offsets, from a clear
-- PIN and from an enciphered ISO 9564-1 PIN block.
local hsm = require "payhsm"

-- Sources:
--  [psec-pvv]  psec (github.com/knovichikhin/psec) tests/test_pin.py test_generate_visa_pvv,
--              PVK 0123456789ABCDEFFEDCBA9876543210: (PVKI 1, PIN 4524, PAN
--              1122334455667788) -> 8523, (2, 1912, ...7788) -> 3244, (1, 0570, ...7718) ->
--              3144, (1, 8299, ...7708) -> 4422; psec/pin.py docstring (3, 4524) -> 4021.
--  [psec-ibm]  psec tests/test_pin.py test_generate_ibm3624_pin / _offset, same PVK,
--              decimalization table 1234567890123456, PAN 1122334455667788 as validation
--              data (offset, length, pad): natural PIN 4524 (0, 16, F), 5518 (0, 14, F),
--              3675 (1, 14, "1"), 5550 (2, 14, "1"); offsets 1111 -> 5635, 6586 -> 0000,
--              7697 -> 1111, 7710 -> 1234.
--  [jpos]      jPOS (github.com/jpos/jPOS) jpos/src/test/java/org/jpos/security/jceadapter/
--              JCESecurityModuleTest.java: PVK 4 x 12345678, PIN 1234, account
--              1234567890123, PVKI 0 -> PVV 1226 (testCalculatePVVImpl1); ISO format 0
--              block ABE38E29B58EA392 under ZPK 4 x 12345678 for PAN 1234567890123456
--              holds PIN 1234 (pinUnderZPK). The PVVs of that PIN and PAN under the same
--              key (PVKI 0 -> 5588, PVKI 1 -> 1194) were computed with psec.
--  [9564-4]    ISO 9564-1:2017 format 4 example (AWS Payment Cryptography, psec docs): AES
--              key 00112233445566778899AABBCCDDEEFF, PAN 1234567890123456, block
--              E4BE5B623AF7E006AC319E5B93544564 -> PIN 1234; its PVV under PVK
--              0123456789ABCDEFFEDCBA9876543210 with PVKI 1 is 7880 and its IBM 3624
--              offset (table 0123456789012345, validation data PAN digits 5-15, pad F)
--              is 6013, both by psec.
--  [eftcalc]   nickntg/eftcalculator EFTCalculator.Core/Utility/Utility.vb GeneratePVV: a
--              PIN longer than 4 digits enters the TSP by its 4 leftmost digits.
-- tools/crosscheck/card_psec.py compares hundreds of random cases with psec.
local T2 = "0123456789ABCDEFFEDCBA9876543210"
local K12 = ("12345678"):rep(4)
local AES = "00112233445566778899AABBCCDDEEFF"
local F = function(n) return "ISO_FORMAT_" .. n end
local function key(hex, attrs, alg) return assert(hsm.key.import(alg or "TDES_2KEY", hex, attrs)) end
local function code(...) return select(3, ...) end
local IBM = { decimalization_table = "1234567890123456", validation_data = "1122334455667788", pad_char = "F" }
local function ibm(t)
  local p = {}
  for k, v in pairs(IBM) do p[k] = v end
  for k, v in pairs(t or {}) do p[k] = v end
  return p
end

describe("pin verification", function()
  describe("visa_pvv()", function()
    it("psec's known answers [psec-pvv]", function()
      local pvk = key(T2)
      assert.equal("8523", hsm.pin.visa_pvv(pvk, "4524", "1122334455667788", "1"))
      assert.equal("3244", hsm.pin.visa_pvv(pvk, "1912", "1122334455667788", "2"))
      assert.equal("3144", hsm.pin.visa_pvv(pvk, "0570", "1122334455667718", "1"))
      assert.equal("4422", hsm.pin.visa_pvv(pvk, "8299", "1122334455667708", "1"))
      assert.equal("4021", hsm.pin.visa_pvv(pvk, "4524", "1122334455667788", "3"))
    end)

    it("jPOS's known answer and PVK usage V2 [jpos]", function()
      assert.equal("1226", hsm.pin.visa_pvv(key(K12), "1234", "1234567890123", "0"))
      assert.equal("1226", hsm.pin.visa_pvv(key(K12, { usage = "V2" }), "1234", "1234567890123", "0"))
      assert.equal("1226", hsm.pin.visa_pvv(key(K12 .. "1234567812345678", nil, "TDES_3KEY"), "1234", "1234567890123", "0"))
    end)

    it("takes the 4 leftmost digits of a longer PIN [eftcalc]", function()
      local pvk = key(T2)
      assert.equal("8523", hsm.pin.visa_pvv(pvk, "452499", "1122334455667788", "1"))
      assert.equal("8523", hsm.pin.visa_pvv(pvk, "452412345678", "1122334455667788", "1"))
    end)

    it("refuses malformed input with its code", function()
      local pvk = key(T2)
      assert.equal("PIN_LENGTH", code(hsm.pin.visa_pvv(pvk, "452", "1122334455667788", "1")))
      assert.equal("PIN_LENGTH", code(hsm.pin.visa_pvv(pvk, "4524123456789", "1122334455667788", "1")))
      assert.equal("PIN_DIGITS", code(hsm.pin.visa_pvv(pvk, "45A4", "1122334455667788", "1")))
      assert.equal("PAN_LENGTH", code(hsm.pin.visa_pvv(pvk, "4524", "11223344556", "1")))
      assert.equal("PAN_LENGTH", code(hsm.pin.visa_pvv(pvk, "4524", ("1"):rep(20), "1")))
      assert.equal("PAN_DIGITS", code(hsm.pin.visa_pvv(pvk, "4524", "112233445566778X", "1")))
      assert.equal("PIN_PVKI", code(hsm.pin.visa_pvv(pvk, "4524", "1122334455667788", "7")))
      assert.equal("PIN_PVKI", code(hsm.pin.visa_pvv(pvk, "4524", "1122334455667788", "11")))
      assert.equal("PIN_PVKI", code(hsm.pin.visa_pvv(pvk, "4524", "1122334455667788", "A")))
      local v, msg = hsm.pin.visa_pvv(pvk, "45A4", "1122334455667788", "1")
      assert.is_nil(v)
      assert.equal("pin.visa_pvv: PIN must be decimal digits", msg)
    end)

    it("refuses a PVK of another usage or type", function()
      assert.equal("KEY_USAGE", code(hsm.pin.visa_pvv(key(T2, { usage = "V1" }), "4524", "1122334455667788", "1")))
      assert.equal("KEY_USAGE", code(hsm.pin.visa_pvv(key(T2, { usage = "P0" }), "4524", "1122334455667788", "1")))
      assert.equal("KEY_USAGE", code(hsm.pin.visa_pvv(key(T2, { usage = "V2", mode = "V" }), "4524", "1122334455667788", "1")))
      assert.equal("KEY_TYPE", code(hsm.pin.visa_pvv(key(AES, nil, "AES_128"), "4524", "1122334455667788", "1")))
      assert.equal("KEY_TYPE", code(hsm.pin.visa_pvv(key("0123456789ABCDEF", nil, "DES"), "4524", "1122334455667788", "1")))
    end)
  end)

  describe("ibm3624_offset() and ibm3624_natural_pin()", function()
    local pvk = key(T2)

    it("psec's natural PINs [psec-ibm]", function()
      assert.equal("4524", hsm.pin.ibm3624_natural_pin(pvk, ibm()))
      assert.equal("4524", hsm.pin.ibm3624_natural_pin(pvk, ibm { pad_char = "f" }))
      assert.equal("5518", hsm.pin.ibm3624_natural_pin(pvk, ibm { validation_data = "11223344556677" }))
      assert.equal("3675", hsm.pin.ibm3624_natural_pin(pvk, ibm { validation_data = "12233445566778", pad_char = "1" }))
      assert.equal("5550", hsm.pin.ibm3624_natural_pin(pvk, ibm { validation_data = "22334455667788", pad_char = "1" }))
      assert.equal("45240", hsm.pin.ibm3624_natural_pin(pvk, ibm { pin_length = 5 }):sub(1, 4) .. "0")
      assert.equal(12, #hsm.pin.ibm3624_natural_pin(pvk, ibm { pin_length = 12 }))
    end)

    it("psec's offsets [psec-ibm]", function()
      assert.equal("0000", hsm.pin.ibm3624_offset(pvk, "4524", ibm()))
      assert.equal("1111", hsm.pin.ibm3624_offset(pvk, "5635", ibm()))
      assert.equal("6586", hsm.pin.ibm3624_offset(pvk, "0000", ibm()))
      assert.equal("7697", hsm.pin.ibm3624_offset(pvk, "1111", ibm()))
      assert.equal("7710", hsm.pin.ibm3624_offset(pvk, "1234", ibm { pin_length = 4 }))
      assert.equal("0000", hsm.pin.ibm3624_offset(pvk, "5518", ibm { validation_data = "11223344556677" }))
      assert.equal("0000", hsm.pin.ibm3624_offset(pvk, "3675", ibm { validation_data = "12233445566778", pad_char = "1" }))
      assert.equal("0000", hsm.pin.ibm3624_offset(pvk, "5550", ibm { validation_data = "22334455667788", pad_char = "1" }))
    end)

    it("accepts PVK usage V1 or none, refuses others", function()
      assert.equal("7710", hsm.pin.ibm3624_offset(key(T2, { usage = "V1" }), "1234", ibm()))
      assert.equal("KEY_USAGE", code(hsm.pin.ibm3624_offset(key(T2, { usage = "V2" }), "1234", ibm())))
      assert.equal("KEY_USAGE", code(hsm.pin.ibm3624_natural_pin(key(T2, { usage = "C0" }), ibm())))
      assert.equal("KEY_TYPE", code(hsm.pin.ibm3624_natural_pin(key(AES, nil, "AES_128"), ibm())))
    end)

    it("validates the decimalization table, validation data, pad character and lengths", function()
      assert.equal("PIN_DECIMALIZATION_TABLE", code(hsm.pin.ibm3624_offset(pvk, "1234", ibm { decimalization_table = "123456789012345" })))
      assert.equal("PIN_DECIMALIZATION_TABLE", code(hsm.pin.ibm3624_offset(pvk, "1234", ibm { decimalization_table = "12345678901234567" })))
      assert.equal("PIN_DECIMALIZATION_TABLE", code(hsm.pin.ibm3624_natural_pin(pvk, ibm { decimalization_table = "123456789012345A" })))
      assert.equal("PIN_VALIDATION_DATA", code(hsm.pin.ibm3624_offset(pvk, "1234", ibm { validation_data = "" })))
      assert.equal("PIN_VALIDATION_DATA", code(hsm.pin.ibm3624_offset(pvk, "1234", ibm { validation_data = ("1"):rep(17) })))
      assert.equal("BAD_HEX", code(hsm.pin.ibm3624_offset(pvk, "1234", ibm { validation_data = "11223344G" })))
      assert.equal("PIN_PAD_CHAR", code(hsm.pin.ibm3624_offset(pvk, "1234", ibm { pad_char = "X" })))
      assert.equal("PIN_PAD_CHAR", code(hsm.pin.ibm3624_offset(pvk, "1234", ibm { pad_char = "FF" })))
      assert.equal("PIN_PAD_CHAR", code(hsm.pin.ibm3624_offset(pvk, "1234", ibm { pad_char = "" })))
      assert.equal("PIN_LENGTH", code(hsm.pin.ibm3624_offset(pvk, "123", ibm())))
      assert.equal("PIN_DIGITS", code(hsm.pin.ibm3624_offset(pvk, "12E4", ibm())))
      assert.equal("PIN_LENGTH", code(hsm.pin.ibm3624_offset(pvk, "1234", ibm { pin_length = 5 })))
      assert.equal("PIN_LENGTH", code(hsm.pin.ibm3624_natural_pin(pvk, ibm { pin_length = 3 })))
      assert.equal("PIN_LENGTH", code(hsm.pin.ibm3624_natural_pin(pvk, ibm { pin_length = 13 })))
      assert.equal("PIN_LENGTH", code(hsm.pin.ibm3624_natural_pin(pvk, ibm { pin_length = -4 })))
    end)

    it("raises on a misspelt option or a missing required field", function()
      assert.has_error(function() hsm.pin.ibm3624_offset(pvk, "1234", ibm { decimalisation_table = "0123456789012345" }) end,
        "pin.ibm3624_offset: unknown option 'decimalisation_table' (expected one of: decimalization_table, validation_data, pad_char, pin_length)")
      assert.has_error(function() hsm.pin.ibm3624_natural_pin(pvk, { validation_data = "1122" }) end,
        "pin.ibm3624_natural_pin: field 'decimalization_table' is required")
      assert.has_error(function() hsm.pin.ibm3624_natural_pin(pvk, { decimalization_table = "0123456789012345" }) end,
        "pin.ibm3624_natural_pin: field 'validation_data' is required")
      assert.has_error(function() hsm.pin.ibm3624_offset(pvk, "1234") end)
    end)
  end)

  describe("verify() and generate_*() from an enciphered PIN block", function()
    local pvk, pek = key(K12), key(K12, { usage = "P0" })
    local JBLOCK, JPAN = "ABE38E29B58EA392", "1234567890123456"
    local aes_pek = key(AES, { usage = "P0" }, "AES_128")
    local A4 = "E4BE5B623AF7E006AC319E5B93544564"

    it("verifies jPOS's format 0 block by its PVV [jpos]", function()
      assert.is_true(hsm.pin.verify(pvk, pek, F(0), JBLOCK, JPAN, { method = "VISA_PVV", pvki = "0", pvv = "5588" }))
      assert.is_true(hsm.pin.verify(key(K12, { usage = "V2" }), pek, F(0), JBLOCK:lower(), JPAN, { method = "VISA_PVV", pvki = "1", pvv = "1194" }))
      assert.equal("5588", hsm.pin.generate_pvv(pvk, pek, F(0), JBLOCK, JPAN, "0"))
      local ok, msg, c = hsm.pin.verify(pvk, pek, F(0), JBLOCK, JPAN, { method = "VISA_PVV", pvki = "0", pvv = "5589" })
      assert.is_false(ok)
      assert.equal("VERIFICATION_FAILED", c)
      assert.equal("pin.verify: PIN does not verify", msg)
      -- the PVKI enters the TSP
      assert.is_false(hsm.pin.verify(pvk, pek, F(0), JBLOCK, JPAN, { method = "VISA_PVV", pvki = "1", pvv = "5588" }))
    end)

    it("verifies the ISO 9564-1 format 4 example by PVV and by IBM 3624 offset [9564-4]", function()
      local p2 = key(T2)
      assert.is_true(hsm.pin.verify(p2, aes_pek, F(4), A4, JPAN, { method = "VISA_PVV", pvki = "1", pvv = "7880" }))
      assert.equal("7880", hsm.pin.generate_pvv(p2, aes_pek, F(4), A4, JPAN, "1"))
      local v = { method = "IBM3624", offset = "6013", decimalization_table = "0123456789012345",
                  validation_data = JPAN:sub(5, 15), pad_char = "F" }
      assert.is_true(hsm.pin.verify(p2, aes_pek, F(4), A4, JPAN, v))
      assert.equal("6013", hsm.pin.generate_offset(p2, aes_pek, F(4), A4, JPAN,
        { decimalization_table = "0123456789012345", validation_data = JPAN:sub(5, 15), pad_char = "F", pin_length = 4 }))
      v.offset = "6014"
      assert.equal("VERIFICATION_FAILED", code(hsm.pin.verify(p2, aes_pek, F(4), A4, JPAN, v)))
      v.offset = "60130"
      assert.equal("VERIFICATION_FAILED", code(hsm.pin.verify(p2, aes_pek, F(4), A4, JPAN, v)))
    end)

    it("verifies every ISO format, PINs of 4 to 12 digits, against the clear-PIN forms", function()
      local pvk2 = key(T2)
      local pan = "4000001234567899"
      for fmt = 0, 4 do
        local k = fmt == 4 and aes_pek or pek
        for _, pin in ipairs { "1234", "98765", "000000", "123456789012" } do
          local blk = hsm.pin.encrypt(k, F(fmt), pin, pan)
          local pvv = hsm.pin.visa_pvv(pvk2, pin, pan, "3")
          assert.equal(pvv, hsm.pin.generate_pvv(pvk2, k, F(fmt), blk, pan, "3"))
          assert.is_true(hsm.pin.verify(pvk2, k, F(fmt), blk, pan, { method = "VISA_PVV", pvki = "3", pvv = pvv }))
          local p = ibm { pin_length = #pin }
          local off = hsm.pin.ibm3624_offset(pvk2, pin, p)
          local bpan = (fmt == 1 or fmt == 2) and nil or pan -- formats 1 and 2 carry no PAN
          assert.equal(off, hsm.pin.generate_offset(pvk2, k, F(fmt), blk, bpan, p))
          assert.is_true(hsm.pin.verify(pvk2, k, F(fmt), blk, bpan, ibm { method = "IBM3624", offset = off }))
          local wrong = hsm.pin.encrypt(k, F(fmt), ("%d"):format((tonumber(pin:sub(1, 1)) + 1) % 10) .. pin:sub(2), pan)
          assert.equal("VERIFICATION_FAILED", code(hsm.pin.verify(pvk2, k, F(fmt), wrong, pan, { method = "VISA_PVV", pvki = "3", pvv = pvv })))
          assert.equal("VERIFICATION_FAILED", code(hsm.pin.verify(pvk2, k, F(fmt), wrong, bpan, ibm { method = "IBM3624", offset = off })))
        end
      end
    end)

    it("answers false with the code for malformed input", function()
      local function vv(t)
        local v = { method = "VISA_PVV", pvki = "0", pvv = "5588" }
        for k, x in pairs(t or {}) do v[k] = x end
        return v
      end
      local cases = {
        { "PIN_PVV", { pvk, pek, F(0), JBLOCK, JPAN, vv { pvv = "558" } } },
        { "PIN_PVV", { pvk, pek, F(0), JBLOCK, JPAN, vv { pvv = "55A8" } } },
        { "PIN_PVKI", { pvk, pek, F(0), JBLOCK, JPAN, vv { pvki = "9" } } },
        { "PAN_LENGTH", { pvk, pek, F(0), JBLOCK, "12345678901", vv() } },
        { "PAN_LENGTH", { pvk, pek, F(1), JBLOCK, nil, vv() } },
        { "PAN_DIGITS", { pvk, pek, F(0), JBLOCK, "123456789012345X", vv() } },
        { "BAD_HEX", { pvk, pek, F(0), "ZZE38E29B58EA392", JPAN, vv() } },
        { "BAD_LENGTH", { pvk, pek, F(0), JBLOCK .. "00", JPAN, vv() } },
        { "BAD_LENGTH", { pvk, aes_pek, F(4), JBLOCK, JPAN, vv() } },
        { "PIN_FORMAT", { pvk, key(T2, { usage = "P0" }), F(0), JBLOCK, JPAN, vv() } },
        { "PIN_FORMAT", { pvk, pek, F(0), JBLOCK, "4000001234567899", vv() } },
        { "KEY_USAGE", { key(K12, { usage = "V1" }), pek, F(0), JBLOCK, JPAN, vv() } },
        { "KEY_USAGE", { key(K12, { usage = "V2", mode = "G" }), pek, F(0), JBLOCK, JPAN, vv() } },
        { "KEY_USAGE", { pvk, key(K12, { usage = "M3" }), F(0), JBLOCK, JPAN, vv() } },
        { "KEY_USAGE", { pvk, key(K12, { usage = "P0", mode = "E" }), F(0), JBLOCK, JPAN, vv() } },
        { "KEY_TYPE", { pvk, aes_pek, F(0), JBLOCK, JPAN, vv() } },
        { "KEY_TYPE", { key(AES, nil, "AES_128"), pek, F(0), JBLOCK, JPAN, vv() } },
        { "PIN_OFFSET", { pvk, pek, F(0), JBLOCK, JPAN, ibm { method = "IBM3624", offset = "123" } } },
        { "PIN_OFFSET", { pvk, pek, F(0), JBLOCK, JPAN, ibm { method = "IBM3624", offset = "12A4" } } },
        { "PIN_OFFSET", { pvk, pek, F(0), JBLOCK, JPAN, ibm { method = "IBM3624", offset = "1234567890123" } } },
        { "PIN_DECIMALIZATION_TABLE", { pvk, pek, F(0), JBLOCK, JPAN, ibm { method = "IBM3624", offset = "1234", decimalization_table = "01234" } } },
        { "PIN_VALIDATION_DATA", { pvk, pek, F(0), JBLOCK, JPAN, ibm { method = "IBM3624", offset = "1234", validation_data = ("0"):rep(17) } } },
        { "PIN_PAD_CHAR", { pvk, pek, F(0), JBLOCK, JPAN, ibm { method = "IBM3624", offset = "1234", pad_char = "G" } } },
        { "KEY_USAGE", { key(K12, { usage = "V2" }), pek, F(0), JBLOCK, JPAN, ibm { method = "IBM3624", offset = "1234" } } },
      }
      for i, c in ipairs(cases) do
        local a = c[2]
        local ok, msg, got = hsm.pin.verify(a[1], a[2], a[3], a[4], a[5], a[6])
        assert.is_false(ok, "case " .. i)
        assert.equal(c[1], got, "case " .. i .. ": " .. tostring(msg))
        assert.matches("^pin%.verify: ", msg)
        assert.is_nil(msg:find("1234", 1, true), "no PIN digits in messages")
      end
      assert.equal("PIN_PVKI", code(hsm.pin.generate_pvv(pvk, pek, F(0), JBLOCK, JPAN, "7")))
      assert.equal("PIN_FORMAT", code(hsm.pin.generate_pvv(pvk, pek, F(0), JBLOCK, "4000001234567899", "0")))
      assert.equal("KEY_USAGE", code(hsm.pin.generate_pvv(pvk, key(K12, { usage = "D0" }), F(0), JBLOCK, JPAN, "0")))
      assert.equal("PIN_LENGTH", code(hsm.pin.generate_offset(pvk, pek, F(0), JBLOCK, JPAN, ibm { pin_length = 6 })))
      assert.equal("PIN_DECIMALIZATION_TABLE", code(hsm.pin.generate_offset(pvk, pek, F(0), JBLOCK, JPAN, ibm { decimalization_table = "X" })))
      assert.equal("BAD_HEX", code(hsm.pin.generate_offset(pvk, pek, F(0), "XX", JPAN, ibm())))
    end)

    it("raises on an unknown method, a misspelt field or a field of the other method", function()
      assert.has_error(function() hsm.pin.verify(pvk, pek, F(0), JBLOCK, JPAN, { method = "VISA", pvki = "0", pvv = "5588" }) end)
      assert.has_error(function() hsm.pin.verify(pvk, pek, F(0), JBLOCK, JPAN, { pvki = "0", pvv = "5588" }) end)
      assert.has_error(function() hsm.pin.verify(pvk, pek, F(0), JBLOCK, JPAN, { method = "VISA_PVV", pvki = "0", pv = "5588" }) end,
        "pin.verify: unknown option 'pv' (expected one of: method, pvki, pvv)")
      assert.has_error(function() hsm.pin.verify(pvk, pek, F(0), JBLOCK, JPAN, { method = "VISA_PVV", pvki = "0", pvv = "5588", offset = "1234" }) end,
        "pin.verify: unknown option 'offset' (expected one of: method, pvki, pvv)")
      assert.has_error(function() hsm.pin.verify(pvk, pek, F(0), JBLOCK, JPAN, ibm { method = "IBM3624", offset = "1234", pin_length = 4 }) end,
        "pin.verify: unknown option 'pin_length' (expected one of: method, offset, decimalization_table, validation_data, pad_char)")
      assert.has_error(function() hsm.pin.verify(pvk, pek, F(0), JBLOCK, JPAN, { method = "VISA_PVV", pvki = "0" }) end,
        "pin.verify: VISA_PVV needs fields 'pvki' and 'pvv'")
      assert.has_error(function() hsm.pin.verify(pvk, pek, F(0), JBLOCK, JPAN, ibm { method = "IBM3624" }) end,
        "pin.verify: IBM3624 needs field 'offset'")
      assert.has_error(function() hsm.pin.verify(pvk, pek, "ISO_FORMAT_9", JBLOCK, JPAN, { method = "VISA_PVV", pvki = "0", pvv = "5588" }) end)
      assert.has_error(function() hsm.pin.generate_offset(pvk, pek, F(0), JBLOCK, JPAN, ibm { offset = "1234" }) end)
    end)
  end)
end)
