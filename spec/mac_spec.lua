-- MACs (csrc/mac.c): ISO 9797-1 algorithms 1 and 3, CMAC, HMAC.
local hsm = require "payhsm"

-- Sources:
--  [113]   FIPS 113 / ANSI X9.9: DES CBC-MAC of "Now is the time for all " under 0123456789ABCDEF.
--  [x919]  ANSI X9.19 retail MAC example: same text, key 0123456789ABCDEF FEDCBA9876543210.
--  [4493]  RFC 4493 / NIST SP 800-38B D.1: AES-128 CMAC examples 1-4.
--  [38b]   NIST SP 800-38B D.2, D.3: AES-192/AES-256 CMAC examples.
--  [38b-t] NIST CMAC TDEA examples (SP 800-38B D.4/D.5 keys); values confirmed with pyca/cryptography.
--  [4231]  RFC 4231 HMAC-SHA-224/256/384/512 test cases 1, 2, 4 and 6.
--  [psec3] ISO/IEC 9797-1:2011 padding method 3 (6.3.4: length block in bits, then the data
--          zero padded): MACs computed with psec (github.com/knovichikhin/psec, psec/mac.py
--          generate_cbc_mac / generate_retail_mac with padding=3; its pad_iso_3 is checked in
--          tests/test_mac.py, e.g. 1234 -> 0000000000000010 1234000000000000).
--  [pyca]  computed independently with pyca/cryptography (padding method 2, short data, AES CBC-MAC).
local NOW = "4E6F77206973207468652074696D6520666F7220616C6C20"
local M = "6BC1BEE22E409F96E93D7E117393172AAE2D8A571E03AC9C9EB76FAC45AF8E51" ..
          "30C81C46A35CE411E5FBC1191A0A52EFF69F2445DF4F9B17AD2B417BE66C3710"
local T2 = "0123456789ABCDEFFEDCBA9876543210"
local A128 = "2B7E151628AED2A6ABF7158809CF4F3C"
local A192 = "8E73B0F7DA0E6452C810F32B809079E562F8EAD2522C6B7B"
local A256 = "603DEB1015CA71BE2B73AEF0857D77811F352C073B6108D72D9810A30914DFF4"
local T3 = "8AA83BF8CBDA10620BC1BF19FBB6CD58BC313D4A371CA8B5"
local T2B = "4CF15134A2850DD58A3D10BA80570D38"

local vectors = {
  -- source, key alg, key, mac alg, data, padding, expected
  { "113", "DES", "0123456789ABCDEF", "ISO9797_ALGORITHM1", NOW, 1, "70A30640CC76DD8B" },
  { "pyca", "DES", "0123456789ABCDEF", "ISO9797_ALGORITHM1", NOW, 2, "10E1F0F108341B6D" },
  { "pyca", "TDES_2KEY", T2, "ISO9797_ALGORITHM1", "0102030405", 1, "8600B865686D8E39" },
  { "pyca", "AES_128", A128, "ISO9797_ALGORITHM1", NOW, 2, "00FAC211E9DB574BEE19C3CA9EDF4808" },
  { "pyca", "AES_128", A128, "ISO9797_ALGORITHM1", "", 1, "7DF76B0C1AB899B33E42F047B91B546F" },
  { "x919", "TDES_2KEY", T2, "ISO9797_ALGORITHM3", NOW, 1, "A1C72E74EA3FA9B6" },
  { "pyca", "TDES_2KEY", T2, "ISO9797_ALGORITHM3", NOW, 2, "E9086230CA3BE796" },
  { "pyca", "TDES_2KEY", T2, "ISO9797_ALGORITHM3", "0102030405", 1, "8600B865686D8E39" },
  { "pyca", "TDES_2KEY", T2, "ISO9797_ALGORITHM3", "0102030405", 2, "9641578026EC9F02" },
  { "psec3", "DES", "0123456789ABCDEF", "ISO9797_ALGORITHM1", NOW, 3, "2C58FB8FF12AAEAC" },
  { "psec3", "TDES_2KEY", T2, "ISO9797_ALGORITHM1", "0102030405", 3, "0727AE043E72B265" },
  { "psec3", "AES_128", A128, "ISO9797_ALGORITHM1", NOW, 3, "7F9FA30EA2FA38DF4B8969B7A2AD9589" },
  { "psec3", "AES_128", A128, "ISO9797_ALGORITHM1", "", 3, "A9DCF5AA138056E259E7BE57958E72D8" },
  { "psec3", "TDES_2KEY", T2, "ISO9797_ALGORITHM3", NOW, 3, "AB059463D7A7D170" },
  { "psec3", "TDES_2KEY", T2, "ISO9797_ALGORITHM3", "0102030405", 3, "40718F2B211AD03B" },
  { "psec3", "TDES_2KEY", T2, "ISO9797_ALGORITHM3", "", 3, "F893B64CA9357DCD" },
  { "psec3", "TDES_2KEY", T2, "ISO9797_ALGORITHM3", "1234567890ABCDEF", 3, "D6E62DA408438847" },
  { "4493", "AES_128", A128, "CMAC", "", nil, "BB1D6929E95937287FA37D129B756746" },
  { "4493", "AES_128", A128, "CMAC", M:sub(1, 32), nil, "070A16B46B4D4144F79BDD9DD04A287C" },
  { "4493", "AES_128", A128, "CMAC", M:sub(1, 80), nil, "DFA66747DE9AE63030CA32611497C827" },
  { "4493", "AES_128", A128, "CMAC", M, nil, "51F0BEBF7E3B9D92FC49741779363CFE" },
  { "38b", "AES_192", A192, "CMAC", "", nil, "D17DDF46ADAACDE531CAC483DE7A9367" },
  { "38b", "AES_192", A192, "CMAC", M:sub(1, 80), nil, "8A1DE5BE2EB31AAD089A82E6EE908B0E" },
  { "38b", "AES_192", A192, "CMAC", M, nil, "A1D5DF0EED790F794D77589659F39A11" },
  { "38b", "AES_256", A256, "CMAC", "", nil, "028962F61B7BF89EFC6B551F4667D983" },
  { "38b", "AES_256", A256, "CMAC", M:sub(1, 80), nil, "AAF3D8F1DE5640C232F5B169B9C911E6" },
  { "38b", "AES_256", A256, "CMAC", M, nil, "E1992190549F6ED5696A2C056C315410" },
  { "38b-t", "TDES_3KEY", T3, "CMAC", "", nil, "B7A688E122FFAF95" },
  { "38b-t", "TDES_3KEY", T3, "CMAC", M:sub(1, 40), nil, "743DDBE0CE2DC2ED" },
  { "38b-t", "TDES_3KEY", T3, "CMAC", M:sub(1, 64), nil, "33E6B1092400EAE5" },
  { "38b-t", "TDES_2KEY", T2B, "CMAC", "", nil, "BD2EBF9A3BA00361" },
  { "38b-t", "TDES_2KEY", T2B, "CMAC", M:sub(1, 40), nil, "62DD1B471902BD4E" },
  { "38b-t", "TDES_2KEY", T2B, "CMAC", M:sub(1, 64), nil, "31B1E431DABC4EB8" },
  { "4231 #1", "HMAC_SHA256", ("0B"):rep(20), "HMAC_SHA256", "4869205468657265", nil,
    "B0344C61D8DB38535CA8AFCEAF0BF12B881DC200C9833DA726E9376C2E32CFF7" },
  { "4231 #1", "HMAC_SHA224", ("0B"):rep(20), "HMAC_SHA224", "4869205468657265", nil,
    "896FB1128ABBDF196832107CD49DF33F47B4B1169912BA4F53684B22" },
  { "4231 #2", "HMAC_SHA224", "4A656665", "HMAC",
    "7768617420646F2079612077616E7420666F72206E6F7468696E673F", nil,
    "A30E01098BC6DBBF45690F3A7E9E6D0F8BBEA2A39E6148008FD05E44" },
  { "4231 #2", "HMAC_SHA384", "4A656665", "HMAC_SHA384",
    "7768617420646F2079612077616E7420666F72206E6F7468696E673F", nil,
    "AF45D2E376484031617F78D2B58A6B1B9C7EF464F5A01B47E42EC3736322445E8E2240CA5E69E2C78B3239ECFAB21649" },
  { "4231 #4", "HMAC_SHA512", "0102030405060708090A0B0C0D0E0F10111213141516171819", "HMAC_SHA512",
    ("CD"):rep(50), nil,
    "B0BA465637458C6990E5A8C5F61D4AF7E576D97FF94B872DE76F8050361EE3DBA91CA5C11AA25EB4D679275CC5788063A5F19741120C4F2DE2ADEBEB10A298DD" },
  { "4231 #6", "HMAC_SHA256", ("AA"):rep(131), "HMAC",
    "54657374205573696E67204C6172676572205468616E20426C6F636B2D53697A65204B6579202D2048617368204B6579204669727374",
    nil, "60E431591EE0B67F0D8A26AACBF5B77F8E0BC6213728C5140546040F0EE37F54" },
}

describe("mac", function()
  describe("generate()", function()
    for _, v in ipairs(vectors) do
      it(("%s %s %s pad %s (%s)"):format(v[4], v[2], math.floor(#v[5] / 2) .. " bytes", tostring(v[6]), v[1]), function()
        local k = hsm.key.import(v[2], v[3])
        assert.are.equal(v[7], hsm.mac.generate(k, v[4], v[5], { padding = v[6] }))
        assert.are.equal(v[7], hsm.mac.generate(k, v[4], v[5]:lower(), { padding = v[6] }))
        assert.is_true(hsm.mac.verify(k, v[4], v[5], v[7], { padding = v[6] }))
      end)
    end

    it("defaults to padding method 1 and the whole block", function()
      local k = hsm.key.import("TDES_2KEY", T2)
      assert.are.equal("A1C72E74EA3FA9B6", hsm.mac.generate(k, "ISO9797_ALGORITHM3", NOW))
    end)

    it("truncates to opts.length bytes", function()
      local k = hsm.key.import("AES_128", A128)
      assert.are.equal("BB1D6929", hsm.mac.generate(k, "CMAC", "", { length = 4 }))
      assert.has_error(function() hsm.mac.generate(k, "CMAC", "", { length = 3 }) end)
      assert.has_error(function() hsm.mac.generate(k, "CMAC", "", { length = 17 }) end)
    end)

    it("raises on an unknown algorithm or padding method", function()
      local k = hsm.key.import("AES_128", A128)
      assert.has_error(function() hsm.mac.generate(k, "GMAC", "") end)
      assert.has_error(function() hsm.mac.generate(k, "ISO9797_ALGORITHM1", "", { padding = 4 }) end)
      assert.has_error(function() hsm.mac.generate(k, "ISO9797_ALGORITHM1", "", { padding = 0 }) end)
      assert.has_error(function() hsm.mac.generate(k, "ISO9797_ALGORITHM1", "", { pading = 2 }) end,
        "mac.generate: unknown option 'pading' (expected one of: length, padding)")
      assert.has_error(function() hsm.mac.verify(k, "ISO9797_ALGORITHM1", "", "00000000", { lenght = 4 }) end)
    end)

    it("padding method 3 binds the length: data and the same data with zeros differ [psec3]", function()
      local k = hsm.key.import("TDES_2KEY", T2)
      assert.are.equal("8600B865686D8E39", hsm.mac.generate(k, "ISO9797_ALGORITHM3", "0102030405000000", { padding = 1 }))
      assert.are.equal("40718F2B211AD03B", hsm.mac.generate(k, "ISO9797_ALGORITHM3", "0102030405", { padding = 3 }))
      assert.are_not.equal("40718F2B211AD03B", hsm.mac.generate(k, "ISO9797_ALGORITHM3", "0102030405000000", { padding = 3 }))
      assert.is_false(hsm.mac.verify(k, "ISO9797_ALGORITHM3", "0102030405", "8600B865686D8E39", { padding = 3 }))
      -- long data: past the stack buffer, into the scratch userdata
      local long = ("AB"):rep(700)
      assert.are.equal("9CF8EFF94890851F", hsm.mac.generate(k, "ISO9797_ALGORITHM3", long, { padding = 3 }))
      local a = hsm.key.import("AES_128", A128)
      assert.are.equal("B64944AB34548E564B2D4235B2D1005C", hsm.mac.generate(a, "ISO9797_ALGORITHM1", long, { padding = 3 }))
    end)
  end)

  describe("verify()", function()
    local k = hsm.key.import("TDES_2KEY", T2, { usage = "M3", mode = "C" })
    it("accepts a truncated MAC of 4 or more bytes", function()
      assert.is_true(hsm.mac.verify(k, "ISO9797_ALGORITHM3", NOW, "A1C72E74"))
      assert.is_true(hsm.mac.verify(k, "ISO9797_ALGORITHM3", NOW, "a1c72e74ea3f"))
    end)
    it("returns false with MAC_MISMATCH for every flipped bit of the MAC", function()
      local mac = "A1C72E74EA3FA9B6"
      for i = 1, #mac do
        local c = tonumber(mac:sub(i, i), 16)
        for bit = 0, 3 do
          local p = ({ 1, 2, 4, 8 })[bit + 1]
          local flipped = math.floor(c / p) % 2 == 1 and c - p or c + p
          local t = mac:sub(1, i - 1) .. ("%X"):format(flipped) .. mac:sub(i + 1)
          local ok, msg, code = hsm.mac.verify(k, "ISO9797_ALGORITHM3", NOW, t)
          assert.is_false(ok)
          assert.are.equal("MAC_MISMATCH", code)
          assert.are.equal("mac.verify: MAC does not match", msg)
        end
      end
    end)
    it("returns false for altered data", function()
      local ok, _, code = hsm.mac.verify(k, "ISO9797_ALGORITHM3", NOW:sub(1, -3) .. "21", "A1C72E74EA3FA9B6")
      assert.is_false(ok)
      assert.are.equal("MAC_MISMATCH", code)
    end)
    local bad = {
      { "MAC not hex", NOW, "A1C72E74EA3FA9BX", "BAD_HEX" },
      { "MAC too short", NOW, "A1C72E", "MAC_LENGTH" },
      { "MAC too long", NOW, "A1C72E74EA3FA9B600", "MAC_LENGTH" },
      { "data not hex", "XYZ0", "A1C72E74EA3FA9B6", "BAD_HEX" },
    }
    for _, b in ipairs(bad) do
      it("returns false with " .. b[4] .. " for " .. b[1], function()
        local ok, msg, code = hsm.mac.verify(k, "ISO9797_ALGORITHM3", b[2], b[3])
        assert.is_false(ok)
        assert.are.equal(b[4], code)
        assert.is_nil(msg:find("0123456789", 1, true))
      end)
    end
    it("checks opts.length against the MAC given", function()
      local ok, _, code = hsm.mac.verify(k, "ISO9797_ALGORITHM3", NOW, "A1C72E74", { length = 8 })
      assert.is_false(ok)
      assert.are.equal("MAC_LENGTH", code)
    end)
  end)

  describe("key checks", function()
    local cases = {
      { "retail MAC with an AES key", "AES_128", A128, {}, "ISO9797_ALGORITHM3", "KEY_TYPE" },
      { "retail MAC with a 3-key TDES key", "TDES_3KEY", T3, {}, "ISO9797_ALGORITHM3", "KEY_TYPE" },
      { "CMAC with an HMAC key", "HMAC_SHA256", ("AA"):rep(32), {}, "CMAC", "KEY_TYPE" },
      { "HMAC_SHA384 with an HMAC_SHA256 key", "HMAC_SHA256", ("AA"):rep(32), {}, "HMAC_SHA384", "KEY_TYPE" },
      { "HMAC with an AES key", "AES_128", A128, {}, "HMAC_SHA256", "KEY_TYPE" },
      { "CMAC with an M3 key", "AES_128", A128, { usage = "M3" }, "CMAC", "KEY_USAGE" },
      { "CMAC with a PIN key", "AES_128", A128, { usage = "P0" }, "CMAC", "KEY_USAGE" },
      { "retail MAC with an M1 key", "TDES_2KEY", T2, { usage = "M1" }, "ISO9797_ALGORITHM3", "KEY_USAGE" },
      { "generate with a verify-only key", "AES_128", A128, { usage = "M6", mode = "V" }, "CMAC", "KEY_USAGE" },
    }
    for _, c in ipairs(cases) do
      it("refuses " .. c[1] .. " with " .. c[6], function()
        local k = hsm.key.import(c[2], c[3], c[4])
        local mac, msg, code = hsm.mac.generate(k, c[5], "00")
        assert.is_nil(mac)
        assert.are.equal(c[6], code)
        assert.is_nil(msg:find(c[3]:sub(1, 8), 1, true))
      end)
    end
    it("lets a verify-only key verify but not generate", function()
      local k = hsm.key.import("AES_128", A128, { usage = "M6", mode = "V" })
      assert.is_true(hsm.mac.verify(k, "CMAC", "", "BB1D6929E95937287FA37D129B756746"))
      local g = hsm.key.import("AES_128", A128, { usage = "M6", mode = "G" })
      local ok, _, code = hsm.mac.verify(g, "CMAC", "", "BB1D6929E95937287FA37D129B756746")
      assert.is_false(ok)
      assert.are.equal("KEY_USAGE", code)
    end)
  end)
end)
