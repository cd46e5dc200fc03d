-- ISO 9564-1 PIN blocks (csrc/pinblock.c).
local hsm = require "payhsm"

-- Sources:
--  [9564-0]  ISO 9564-1 / ANSI X9.8 format 0 worked example (as reproduced on Wikipedia's
--            "ISO 9564" page): PIN 1234, PAN 43219876543210987 -> 0412AC89ABCDEF67.
--  [x98]     format 0 PAN field rule: 12 rightmost digits excluding the check digit.
--  [9564-4]  ISO 9564-1:2017 format 4 example used by AWS Payment Cryptography and psec's
--            documentation: AES key 00112233445566778899AABBCCDDEEFF, PAN 1234567890123456,
--            block E4BE5B623AF7E006AC319E5B93544564 -> PIN 1234; PIN field 441234AAAAAAAAAA...
--  [9564-pan] ISO 9564-1:2017 9.4.2: a PAN under 12 digits gives M = 0 and the PAN left padded
--            with zeros to 12 digits (format 4); formats 0 and 3 take the rightmost digits
--            without the check digit, left padded with zeros (9.3.1). Format 4 blocks below
--            computed with pyca/cryptography from PIN field 441234AAAAAAAAAA548ED7FD65495950 and
--            deciphered by psec (psec/pinblock.py decipher_pinblock_iso_4, which pads the same way).
--  [pyca]    TDES-ECB encipherment computed independently with pyca/cryptography.
--  The psec cross-check (tools/crosscheck/pin_psec.py) covers formats 0, 2, 3, 4 randomly.
local K4 = "00112233445566778899AABBCCDDEEFF"
local T2 = "0123456789ABCDEFFEDCBA9876543210"
local F = function(n) return "ISO_FORMAT_" .. n end

describe("pin", function()
  describe("format() and parse()", function()
    it("format 0 known answer [9564-0]", function()
      assert.equal("0412AC89ABCDEF67", hsm.pin.format(F(0), "1234", "43219876543210987"))
      assert.equal("1234", hsm.pin.parse(F(0), "0412AC89ABCDEF67", "43219876543210987"))
      assert.equal("1234", hsm.pin.parse(F(0), "0412ac89abcdef67", "43219876543210987"))
    end)

    it("format 0 uses the 12 rightmost PAN digits without the check digit [x98]", function()
      assert.equal("041225EEEEEEEEEE", hsm.pin.format(F(0), "1234", "4111111111111111"))
      -- a 12-digit PAN gives 11 digits, left padded with a zero
      assert.equal("041234FFFFFFFFFF", hsm.pin.format(F(0), "1234", "000000000000"))
    end)

    it("format 0 and 3 accept PANs under 12 digits, zero padded on the left [9564-pan]", function()
      assert.equal("041234FFFEDCBA98", hsm.pin.format(F(0), "1234", "12345678"))
      assert.equal("041234FFFFFFFFFF", hsm.pin.format(F(0), "1234", "1"))
      assert.equal("1234", hsm.pin.parse(F(0), "041234FFFEDCBA98", "12345678"))
      assert.matches("^341234", hsm.pin.format(F(3), "1234", "1"))
      local b3 = hsm.pin.format(F(3), "1234", "12345678")
      assert.equal("1234", hsm.pin.parse(F(3), b3, "12345678"))
    end)

    it("format 2 is the plain PIN field, F filled", function()
      assert.equal("2C123456789012FF", hsm.pin.format(F(2), "123456789012"))
      assert.equal("123456789012", hsm.pin.parse(F(2), "2C123456789012FF"))
    end)

    it("format 1 and 3 fill at random, within their alphabets", function()
      local seen1, seen3 = {}, {}
      for _ = 1, 50 do
        local b1 = hsm.pin.format(F(1), "1234", "4111111111111111")
        assert.matches("^141234%x+$", b1)
        seen1[b1] = true
        -- format 3 PIN field: the fill (after xor with the PAN field) is A-F
        local b3 = hsm.pin.format(F(3), "1234", "000000000000000")
        assert.matches("^341234[A-F]+$", b3)
        seen3[b3] = true
        assert.equal("1234", hsm.pin.parse(F(1), b1))
        assert.equal("1234", hsm.pin.parse(F(3), b3, "000000000000000"))
      end
      local n1, n3 = 0, 0
      for _ in pairs(seen1) do n1 = n1 + 1 end
      for _ in pairs(seen3) do n3 = n3 + 1 end
      assert.is_true(n1 > 40 and n3 > 40)
    end)

    it("format 4 PIN field: 4 N PIN A-fill, then 8 random bytes [9564-4]", function()
      local f = hsm.pin.format(F(4), "1234")
      assert.matches("^441234AAAAAAAAAA%x+$", f)
      assert.equal(32, #f)
      assert.equal("1234", hsm.pin.parse(F(4), "441234AAAAAAAAAA548ED7FD65495950"))
    end)

    local bad = {
      { "PIN too short", function() return hsm.pin.format(F(0), "123", "4111111111111111") end, "PIN_LENGTH" },
      { "PIN too long", function() return hsm.pin.format(F(0), "1234567890123", "4111111111111111") end, "PIN_LENGTH" },
      { "PIN not digits", function() return hsm.pin.format(F(4), "12a4") end, "PIN_DIGITS" },
      { "PAN empty", function() return hsm.pin.format(F(0), "1234", "") end, "PAN_LENGTH" },
      { "PAN empty (format 4)", function() return hsm.pin.encrypt(hsm.key.import("AES_128", K4), F(4), "1234", "") end, "PAN_LENGTH" },
      { "PAN too long", function() return hsm.pin.format(F(3), "1234", ("4"):rep(20)) end, "PAN_LENGTH" },
      { "PAN not digits", function() return hsm.pin.format(F(0), "1234", "4111-1111-1111") end, "PAN_DIGITS" },
      { "PAN missing for format 0", function() return hsm.pin.format(F(0), "1234") end, "PAN_LENGTH" },
      { "format 0 block with a bad fill", function() return hsm.pin.parse(F(0), "0412AC89ABCDEF66", "43219876543210987") end, "PIN_FORMAT" },
      { "format 0 block, wrong PAN", function() return hsm.pin.parse(F(0), "0412AC89ABCDEF67", "4111111111111111") end, "PIN_FORMAT" },
      { "format 2 block with a 3-digit PIN", function() return hsm.pin.parse(F(2), "23123FFFFFFFFFFF") end, "PIN_FORMAT" },
      { "format 2 block with a 13-digit PIN", function() return hsm.pin.parse(F(2), "2D1234567890123F") end, "PIN_FORMAT" },
      { "format 2 block with a non-digit PIN", function() return hsm.pin.parse(F(2), "24123AFFFFFFFFFF") end, "PIN_FORMAT" },
      { "format 2 block with the wrong control", function() return hsm.pin.parse(F(2), "041234FFFFFFFFFF") end, "PIN_FORMAT" },
      { "format 3 fill below A", function() return hsm.pin.parse(F(3), "3412349AAAAAAAAA", "000000000000000") end, "PIN_FORMAT" },
      { "format 4 fill not A", function() return hsm.pin.parse(F(4), "441234AAAAAAAAAB548ED7FD65495950") end, "PIN_FORMAT" },
      { "block not hex", function() return hsm.pin.parse(F(2), "2412ZZFFFFFFFFFF") end, "BAD_HEX" },
      { "block of the wrong length", function() return hsm.pin.parse(F(4), "441234AAAAAAAAAA") end, "BAD_LENGTH" },
    }
    for _, c in ipairs(bad) do
      it(("%s -> %s"):format(c[1], c[3]), function()
        local v, msg, code = c[2]()
        assert.is_nil(v)
        assert.equal(c[3], code, msg)
        assert.is_nil(msg:find("1234", 1, true)) -- no PIN digits in messages
      end)
    end

    it("raises on an unknown format name", function()
      assert.has_error(function() hsm.pin.format("ISO_FORMAT_5", "1234", "4111111111111111") end)
    end)
  end)

  describe("encrypt() and decrypt()", function()
    it("format 4 known answer [9564-4]", function()
      local k = hsm.key.import("AES_128", K4, { usage = "P0" })
      assert.equal("1234", hsm.pin.decrypt(k, F(4), "E4BE5B623AF7E006AC319E5B93544564", "1234567890123456"))
    end)

    it("format 4 with PANs under 12 digits: M = 0, PAN left padded [9564-pan]", function()
      local k = hsm.key.import("AES_128", K4, { usage = "P0" })
      assert.equal("1234", hsm.pin.decrypt(k, F(4), "AD62A9F8EE1927CCE1CB4A6EC28AACCA", "12345678901"))
      assert.equal("1234", hsm.pin.decrypt(k, F(4), "952B7DB1D1A7DDCA50EC12FB6630A2A6", "5"))
      assert.equal("1234", hsm.pin.decrypt(k, F(4), "881F33EC4B99CC50A922703EB73B628B", "123456789012"))
      -- the padding is not the same as a 12-digit PAN of leading zeros with M = 0 by accident:
      -- "012345678901" and "12345678901" share the PAN field, as ISO 9564-1 defines it
      assert.equal("1234", hsm.pin.decrypt(k, F(4), "AD62A9F8EE1927CCE1CB4A6EC28AACCA", "012345678901"))
      assert.equal("PIN_FORMAT", select(3, hsm.pin.decrypt(k, F(4), "AD62A9F8EE1927CCE1CB4A6EC28AACCA", "1234567890")))
      local b = hsm.pin.encrypt(k, F(4), "987654", "5")
      assert.equal("987654", hsm.pin.decrypt(k, F(4), b, "5"))
    end)

    it("format 0 under TDES with an 8-digit PAN [9564-pan + pyca]", function()
      local k = hsm.key.import("TDES_2KEY", T2, { usage = "P0" })
      assert.equal("90B725E011E91F74", hsm.pin.encrypt(k, F(0), "1234", "12345678"))
      assert.equal("1234", hsm.pin.decrypt(k, F(0), "90B725E011E91F74", "12345678"))
      local t = hsm.key.import("AES_128", K4, { usage = "P0" })
      local b4 = hsm.pin.translate(k, F(0), "90B725E011E91F74", t, F(4), "12345678")
      assert.equal("1234", hsm.pin.decrypt(t, F(4), b4, "12345678"))
      assert.equal("90B725E011E91F74", hsm.pin.translate(t, F(4), b4, k, F(0), "12345678"))
    end)

    it("format 0 under TDES known answer [9564-0 + pyca]", function()
      local k = hsm.key.import("TDES_2KEY", T2, { usage = "P0" })
      assert.equal("1234", hsm.pin.decrypt(k, F(0), "C967C8198151A458", "43219876543210987"))
      assert.equal("C967C8198151A458", hsm.pin.encrypt(k, F(0), "1234", "43219876543210987"))
    end)

    for _, c in ipairs {
      { 0, "TDES_2KEY" }, { 1, "TDES_3KEY" }, { 2, "TDES_2KEY" }, { 3, "TDES_3KEY" },
      { 4, "AES_128" }, { 4, "AES_192" }, { 4, "AES_256" },
    } do
      it(("round trips format %d under %s for every PIN length"):format(c[1], c[2]), function()
        local k = hsm.key.generate(c[2], { usage = "P0", mode = "B" })
        for n = 4, 12 do
          local pin = ("9876543210987"):sub(1, n)
          local b = hsm.pin.encrypt(k, F(c[1]), pin, "5413330089020011")
          assert.equal(c[1] == 4 and 32 or 16, #b)
          assert.equal(pin, hsm.pin.decrypt(k, F(c[1]), b, "5413330089020011"))
        end
      end)
    end

    it("format 4 blocks are randomised, formats 0 and 2 are not", function()
      local k4 = hsm.key.import("AES_128", K4)
      assert.are_not.equal(hsm.pin.encrypt(k4, F(4), "1234", "1234567890123456"), hsm.pin.encrypt(k4, F(4), "1234", "1234567890123456"))
      local t = hsm.key.import("TDES_2KEY", T2)
      assert.equal(hsm.pin.encrypt(t, F(0), "1234", "1234567890123456"), hsm.pin.encrypt(t, F(0), "1234", "1234567890123456"))
    end)

    it("refuses keys of the wrong type or usage", function()
      local aes, tdes = hsm.key.import("AES_128", K4), hsm.key.import("TDES_2KEY", T2)
      assert.equal("KEY_TYPE", select(3, hsm.pin.encrypt(aes, F(0), "1234", "4111111111111111")))
      assert.equal("KEY_TYPE", select(3, hsm.pin.decrypt(tdes, F(4), ("00"):rep(16), "4111111111111111")))
      assert.equal("KEY_TYPE", select(3, hsm.pin.encrypt(hsm.key.generate("HMAC_SHA256"), F(0), "1234", "4111111111111111")))
      -- single DES is not allowed for PINs (ISO 9564-1, ANSI X9.8)
      assert.equal("KEY_TYPE", select(3, hsm.pin.encrypt(hsm.key.generate("DES"), F(0), "1234", "4111111111111111")))
      local mac = hsm.key.import("TDES_2KEY", T2, { usage = "M3" })
      assert.equal("KEY_USAGE", select(3, hsm.pin.encrypt(mac, F(0), "1234", "4111111111111111")))
      local enc_only = hsm.key.import("AES_128", K4, { usage = "P0", mode = "E" })
      assert.equal("KEY_USAGE", select(3, hsm.pin.decrypt(enc_only, F(4), "E4BE5B623AF7E006AC319E5B93544564", "1234567890123456")))
    end)

    it("a wrong key or PAN gives PIN_FORMAT, never a wrong PIN silently for format 4", function()
      local wrong = hsm.key.generate("AES_128")
      local n = 0
      for _ = 1, 50 do
        local pin, _, code = hsm.pin.decrypt(wrong, F(4), "E4BE5B623AF7E006AC319E5B93544564", "1234567890123456")
        if pin == nil and code == "PIN_FORMAT" then n = n + 1 end
      end
      assert.equal(50, n)
      local k = hsm.key.import("AES_128", K4)
      assert.equal("PIN_FORMAT", select(3, hsm.pin.decrypt(k, F(4), "E4BE5B623AF7E006AC319E5B93544564", "1234567890123457")))
    end)
  end)

  describe("translate()", function()
    it("moves a PIN between keys and formats without it leaving C", function()
      local tpk = hsm.key.import("TDES_2KEY", T2, { usage = "P0", mode = "B" })
      local zpk = hsm.key.import("AES_128", K4, { usage = "P0", mode = "B" })
      local b0 = hsm.pin.encrypt(tpk, F(0), "4321", "4000123412341234")
      local b4 = hsm.pin.translate(tpk, F(0), b0, zpk, F(4), "4000123412341234")
      assert.equal("4321", hsm.pin.decrypt(zpk, F(4), b4, "4000123412341234"))
      local back = hsm.pin.translate(zpk, F(4), b4, tpk, F(3), "4000123412341234")
      assert.equal("4321", hsm.pin.decrypt(tpk, F(3), back, "4000123412341234"))
      -- to another PAN (e.g. a token)
      local other = hsm.pin.translate(tpk, F(0), b0, tpk, F(0), "4000123412341234", "4999999999999995")
      assert.equal("4321", hsm.pin.decrypt(tpk, F(0), other, "4999999999999995"))
      -- the format 4 known answer re-enciphered to format 0
      local k4 = hsm.key.import("AES_128", K4)
      local t0 = hsm.pin.translate(k4, F(4), "E4BE5B623AF7E006AC319E5B93544564", tpk, F(0), "1234567890123456")
      assert.equal(hsm.pin.encrypt(tpk, F(0), "1234", "1234567890123456"), t0)
    end)

    -- PCI PIN Security Requirement 3 (as Visa states it), AWS Payment Cryptography
    -- TranslatePinData ("formats 0,3,4 cannot be translated to a format (format 1) that does
    -- not require a PAN"), IBM CCA's PIN block translation table (ISO-2 only to ISO-2)
    it("keeps a PAN-bound PIN PAN-bound: 0/3/4 only to 0/3/4, format 2 only to 2, format 1 to any", function()
      local tpk = hsm.key.import("TDES_2KEY", T2, { usage = "P0", mode = "B" })
      local zpk = hsm.key.import("AES_128", K4, { usage = "P0", mode = "B" })
      local pan = "4000123412341234"
      local blocks = { [0] = hsm.pin.encrypt(tpk, F(0), "4321", pan), [1] = hsm.pin.encrypt(tpk, F(1), "4321"),
        [2] = hsm.pin.encrypt(tpk, F(2), "4321"), [3] = hsm.pin.encrypt(tpk, F(3), "4321", pan),
        [4] = hsm.pin.encrypt(zpk, F(4), "4321", pan) }
      local allowed = { [0] = { 0, 3, 4 }, [1] = { 0, 1, 2, 3, 4 }, [2] = { 2 }, [3] = { 0, 3, 4 }, [4] = { 0, 3, 4 } }
      for from = 0, 4 do
        local ok_to = {}
        for _, t in ipairs(allowed[from]) do ok_to[t] = true end
        for to = 0, 4 do
          local kin, kout = from == 4 and zpk or tpk, to == 4 and zpk or tpk
          local out, msg, code = hsm.pin.translate(kin, F(from), blocks[from], kout, F(to), pan)
          if ok_to[to] then
            assert.is_string(out, ("%d -> %d: %s"):format(from, to, tostring(msg)))
            assert.equal("4321", hsm.pin.decrypt(kout, F(to), out, pan))
          else
            assert.is_nil(out, ("%d -> %d"):format(from, to))
            assert.equal("PIN_TRANSLATION", code)
            assert.matches("ISO format " .. from .. " cannot be translated to ISO format " .. to, msg)
          end
        end
      end
    end)

    it("checks both keys and the incoming block", function()
      local tpk = hsm.key.import("TDES_2KEY", T2, { usage = "P0", mode = "D" })
      local zpk = hsm.key.import("AES_128", K4, { usage = "P0", mode = "E" })
      local b0 = "C967C8198151A458"
      assert.is_string(hsm.pin.translate(tpk, F(0), b0, zpk, F(4), "43219876543210987"))
      assert.equal("KEY_USAGE", select(3, hsm.pin.translate(zpk, F(4), ("00"):rep(16), tpk, F(0), "43219876543210987")))
      assert.equal("PIN_FORMAT", select(3, hsm.pin.translate(tpk, F(0), "0000000000000000", zpk, F(4), "43219876543210987")))
      assert.equal("BAD_LENGTH", select(3, hsm.pin.translate(tpk, F(0), "C967C8198151A4", zpk, F(4), "43219876543210987")))
      assert.equal("PAN_LENGTH", select(3, hsm.pin.translate(tpk, F(0), b0, zpk, F(4), "43219876543210987", "")))
      assert.equal("PAN_LENGTH", select(3, hsm.pin.translate(tpk, F(0), b0, zpk, F(4), "43219876543210987", ("1"):rep(20))))
    end)
  end)
end)
