-- TDES and AES in ECB, CBC, CFB (1-bit, 8-bit, full-block) and OFB (csrc/cipher.c).
local hsm = require "payhsm"

-- Sources:
--  [38a]  NIST SP 800-38A Appendix F: F.1.1/F.1.2 ECB-AES128, F.2.1/F.2.2 CBC-AES128,
--         F.1.5 ECB-AES256, F.2.5 CBC-AES256.
--  [67]   NIST SP 800-67 Rev.1 Appendix B example: TDEA ECB of "The qufck brown fox jump".
--  [38a-stream] NIST SP 800-38A Appendix F: F.3.1 CFB1-AES128 (2 bytes), F.3.7 CFB8-AES128
--         (18 bytes), F.3.13 CFB128-AES128, F.4.1 OFB-AES128 (the same key and IV as F.2.1).
--  [pyca] python3-cryptography's TripleDES (K1 K2 K1) in CFB (64-bit), CFB8 and OFB on the
--         FIPS 113 message, IV 1234567890ABCDEF.
--  [113]  FIPS 113 / ANSI X9.9 example: DES CBC of "Now is the time for all " under
--         0123456789ABCDEF, zero IV (last block 70A30640CC76DD8B is the CBC-MAC).
local P = "6BC1BEE22E409F96E93D7E117393172AAE2D8A571E03AC9C9EB76FAC45AF8E51"
local vectors = {
  { "38a F.1.1", "AES_128", "2B7E151628AED2A6ABF7158809CF4F3C", "ECB", nil, P,
    "3AD77BB40D7A3660A89ECAF32466EF97F5D3D58503B9699DE785895A96FDBAAF" },
  { "38a F.2.1", "AES_128", "2B7E151628AED2A6ABF7158809CF4F3C", "CBC", "000102030405060708090A0B0C0D0E0F", P,
    "7649ABAC8119B246CEE98E9B12E9197D5086CB9B507219EE95DB113A917678B2" },
  { "38a F.1.5", "AES_256", "603DEB1015CA71BE2B73AEF0857D77811F352C073B6108D72D9810A30914DFF4", "ECB", nil, P,
    "F3EED1BDB5D2A03C064B5A7E3DB181F8591CCB10D410ED26DC5BA74A31362870" },
  { "38a F.2.5", "AES_256", "603DEB1015CA71BE2B73AEF0857D77811F352C073B6108D72D9810A30914DFF4", "CBC",
    "000102030405060708090A0B0C0D0E0F", P,
    "F58C4C04D6E5F1BA779EABFB5F7BFBD69CFC4E967EDB808D679F777BC6702C7D" },
  { "67", "TDES_3KEY", "0123456789ABCDEF23456789ABCDEF01456789ABCDEF0123", "ECB", nil,
    "54686520717566636B2062726F776E20666F78206A756D70",
    "A826FD8CE53B855FCCE21C8112256FE668D5C05DD9B6B900" },
  { "38a F.3.1", "AES_128", "2B7E151628AED2A6ABF7158809CF4F3C", "CFB1", "000102030405060708090A0B0C0D0E0F", "6BC1",
    "68B3" },
  { "38a F.3.7", "AES_128", "2B7E151628AED2A6ABF7158809CF4F3C", "CFB8", "000102030405060708090A0B0C0D0E0F",
    "6BC1BEE22E409F96E93D7E117393172AAE2D", "3B79424C9C0DD436BACE9E0ED4586A4F32B9" },
  { "38a F.3.13", "AES_128", "2B7E151628AED2A6ABF7158809CF4F3C", "CFB128", "000102030405060708090A0B0C0D0E0F", P,
    "3B3FD92EB72DAD20333449F8E83CFB4AC8A64537A0B3A93FCDE3CDAD9F1CE58B" },
  { "38a F.3.13", "AES_128", "2B7E151628AED2A6ABF7158809CF4F3C", "CFB", "000102030405060708090A0B0C0D0E0F", P,
    "3B3FD92EB72DAD20333449F8E83CFB4AC8A64537A0B3A93FCDE3CDAD9F1CE58B" },
  { "38a F.4.1", "AES_128", "2B7E151628AED2A6ABF7158809CF4F3C", "OFB", "000102030405060708090A0B0C0D0E0F", P,
    "3B3FD92EB72DAD20333449F8E83CFB4A7789508D16918F03F53C52DAC54ED825" },
  { "pyca", "TDES_2KEY", "0123456789ABCDEFFEDCBA9876543210", "CFB64", "1234567890ABCDEF",
    "4E6F77206973207468652074696D6520666F7220616C6C20", "09F180E1858D44D84E4421F76F47E1082F619C22461DEF7D" },
  { "pyca", "TDES_2KEY", "0123456789ABCDEFFEDCBA9876543210", "CFB", "1234567890ABCDEF", "4E6F772069",
    "09F180E185" },
  { "pyca", "TDES_3KEY", "0123456789ABCDEFFEDCBA98765432100123456789ABCDEF", "CFB8", "1234567890ABCDEF",
    "4E6F77206973207468652074696D6520666F7220616C6C20", "09F4F76112ED2AEC66EE23C20CF50F3383993EF54B2D1571" },
  { "pyca", "TDES_2KEY", "0123456789ABCDEFFEDCBA9876543210", "OFB", "1234567890ABCDEF",
    "4E6F77206973207468652074696D6520666F7220616C6C20", "09F180E1858D44D8DB39BBCC33965C3DC534CC0E193FD62C" },
  { "113", "DES", "0123456789ABCDEF", "CBC", "0000000000000000",
    "4E6F77206973207468652074696D6520666F7220616C6C20",
    "3FA40E8A984D48150B2E73F88DC5856A70A30640CC76DD8B" },
}

describe("cipher", function()
  describe("encrypt() and decrypt()", function()
    for _, v in ipairs(vectors) do
      it(("%s %s-%s known answer"):format(v[1], v[2], v[4]), function()
        local k = hsm.key.import(v[2], v[3])
        assert.are.equal(v[7], hsm.cipher.encrypt(k, v[4], v[6], v[5]))
        assert.are.equal(v[6], hsm.cipher.decrypt(k, v[4], v[7], v[5]))
        assert.are.equal(v[6], hsm.cipher.decrypt(k, v[4], v[7]:lower(), v[5] and v[5]:lower()))
      end)
    end

    it("uses a zero IV for CBC when none is given", function()
      local k = hsm.key.import("DES", "0123456789ABCDEF")
      assert.are.equal("3FA40E8A984D48150B2E73F88DC5856A70A30640CC76DD8B",
        hsm.cipher.encrypt(k, "CBC", "4E6F77206973207468652074696D6520666F7220616C6C20"))
    end)

    it("reuses the key's contexts correctly across modes and directions", function()
      local k = hsm.key.import("AES_128", "2B7E151628AED2A6ABF7158809CF4F3C")
      for _ = 1, 3 do
        assert.are.equal(vectors[2][7], hsm.cipher.encrypt(k, "CBC", P, vectors[2][5]))
        assert.are.equal(vectors[1][7], hsm.cipher.encrypt(k, "ECB", P))
        assert.are.equal(P, hsm.cipher.decrypt(k, "CBC", vectors[2][7], vectors[2][5]))
      end
    end)

    local k = hsm.key.import("AES_128", "2B7E151628AED2A6ABF7158809CF4F3C")
    local bad = {
      { "data not hex", function() return hsm.cipher.encrypt(k, "ECB", ("ZZ"):rep(16)) end, "BAD_HEX" },
      { "odd hex", function() return hsm.cipher.encrypt(k, "ECB", ("0"):rep(31)) end, "BAD_HEX" },
      { "not a block multiple", function() return hsm.cipher.encrypt(k, "ECB", ("00"):rep(15)) end, "BAD_LENGTH" },
      { "empty", function() return hsm.cipher.decrypt(k, "CBC", "") end, "BAD_LENGTH" },
      { "empty (CFB)", function() return hsm.cipher.decrypt(k, "CFB8", "") end, "BAD_LENGTH" },
      { "CFB64 with an AES key", function() return hsm.cipher.encrypt(k, "CFB64", "00") end, "KEY_TYPE" },
      { "CFB128 with a TDES key", function()
        return hsm.cipher.encrypt(hsm.key.import("TDES_2KEY", ("01"):rep(16)), "CFB128", "00") end, "KEY_TYPE" },
      { "OFB IV of the wrong length", function() return hsm.cipher.encrypt(k, "OFB", "00", ("00"):rep(8)) end,
        "IV_LENGTH" },
      { "short IV", function() return hsm.cipher.encrypt(k, "CBC", ("00"):rep(16), ("00"):rep(8)) end, "IV_LENGTH" },
      { "IV not hex", function() return hsm.cipher.encrypt(k, "CBC", ("00"):rep(16), ("QQ"):rep(16)) end, "BAD_HEX" },
      { "HMAC key", function()
        return hsm.cipher.encrypt(hsm.key.import("HMAC_SHA256", ("00"):rep(32)), "ECB", ("00"):rep(16))
      end, "KEY_TYPE" },
      { "PIN key", function()
        return hsm.cipher.encrypt(hsm.key.import("AES_128", ("01"):rep(16), { usage = "P0" }), "ECB", ("00"):rep(16))
      end, "KEY_USAGE" },
      { "decrypt-only key encrypting", function()
        return hsm.cipher.encrypt(hsm.key.import("AES_128", ("01"):rep(16), { usage = "D0", mode = "D" }), "ECB", ("00"):rep(16))
      end, "KEY_USAGE" },
      { "encrypt-only key decrypting", function()
        return hsm.cipher.decrypt(hsm.key.import("AES_128", ("01"):rep(16), { usage = "D0", mode = "E" }), "ECB", ("00"):rep(16))
      end, "KEY_USAGE" },
    }
    for _, b in ipairs(bad) do
      it("refuses " .. b[1] .. " with " .. b[3], function()
        local r, msg, code = b[2]()
        assert.is_nil(r)
        assert.are.equal(b[3], code)
        assert.truthy(msg:match("^cipher%.%a+: "))
        assert.is_nil(msg:find("2B7E1516", 1, true))
      end)
    end

    it("raises on misuse: unknown mode, IV with ECB, not a key", function()
      assert.has_error(function() hsm.cipher.encrypt(k, "CTR", ("00"):rep(16)) end)
      assert.has_error(function() hsm.cipher.encrypt(k, "ECB", ("00"):rep(16), ("00"):rep(16)) end)
      assert.has_error(function() hsm.cipher.encrypt("key", "ECB", ("00"):rep(16)) end)
    end)
  end)
end)
