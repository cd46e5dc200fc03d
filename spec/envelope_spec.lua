-- MSK envelopes and HMAC signing (csrc/envelope.c), viopay's POS key provisioning guide.
local hsm = require "payhsm"

-- Sources:
--  [38a]  NIST SP 800-38A F.2.5 CBC-AES256.Encrypt (key 603DEB10..., IV 000102..0F, 4 blocks):
--         the first four ciphertext blocks; the fifth (PKCS#7 block of 0x10) computed with
--         pyca/cryptography (AES-256-CBC + PKCS7 padder).
--  [pyca] computed independently with pyca/cryptography.
--  [4231] RFC 4231 HMAC-SHA-256 test cases 1, 2 and 6.
local K = "603DEB1015CA71BE2B73AEF0857D77811F352C073B6108D72D9810A30914DFF4"
local IV = "000102030405060708090A0B0C0D0E0F"
local PT = "6BC1BEE22E409F96E93D7E117393172AAE2D8A571E03AC9C9EB76FAC45AF8E51" ..
           "30C81C46A35CE411E5FBC1191A0A52EFF69F2445DF4F9B17AD2B417BE66C3710"
local function unhex(h) return (h:gsub("..", function(x) return string.char(tonumber(x, 16)) end)) end

local vectors = {
  { "38a", unhex(PT), "F58C4C04D6E5F1BA779EABFB5F7BFBD69CFC4E967EDB808D679F777BC6702C7D" ..
    "39F23369A9D9BACFA530E26304231461B2EB05E2C39BE9FCDA6C19078C6A9D1B3F461796D6B0D6B2E0C2A72B4D80E644" },
  { "pyca", '{"amount":1000,"currency":"EUR"}', "39BE86496322792B62D6D106CA71DD994D1A2CE7498B6EB1B565BB4F69231C200A602A09896898867C225CBA1751AB49" },
  { "pyca", "", "7E9248E5D829CA7593F0C549DB2F5B8C" },
}

local function msk(attrs) return hsm.key.import("AES_256", K, attrs) end

describe("envelope", function()
  describe("seal()", function()
    for _, v in ipairs(vectors) do
      it(("AES-256-CBC + PKCS#7 known answer [%s], %d bytes"):format(v[1], #v[2]), function()
        local e = hsm.envelope.seal(msk(), v[2], { iv = IV })
        assert.same({ format = "TR31-DATA", ciphertext = v[3], initialization_vector = IV, mode = "CBC" }, e)
        assert.equal(v[2], hsm.envelope.open(msk(), e))
      end)
    end

    it("uses a fresh random IV each time", function()
      local k = msk()
      local a, b = hsm.envelope.seal(k, "same"), hsm.envelope.seal(k, "same")
      assert.are_not.equal(a.initialization_vector, b.initialization_vector)
      assert.are_not.equal(a.ciphertext, b.ciphertext)
      assert.matches("^%x+$", a.initialization_vector)
      assert.equal(32, #a.initialization_vector)
    end)

    it("chunks large bodies; the chunks joined are the unchunked ciphertext", function()
      local k = msk()
      local body = ("terminal parameters "):rep(5000) -- 100,000 bytes
      local c = hsm.envelope.seal(k, body, { chunked = true, iv = IV })
      local p = hsm.envelope.seal(k, body, { iv = IV })
      assert.equal("TR31-DATA-CHUNKED", c.format)
      assert.equal(16384, c.chunk_size)
      local chunks = 0
      for part in c.ciphertext:gmatch("[^.]+") do
        chunks = chunks + 1
        assert.is_true(#part == 2 * 16384 or #part <= 2 * 16384)
      end
      assert.equal(7, chunks) -- 100,000 bytes + padding = 100,016 -> 6 full chunks and 1,712 bytes
      assert.equal(p.ciphertext, (c.ciphertext:gsub("%.", "")))
      assert.equal(body, hsm.envelope.open(k, c))
      assert.equal(body, hsm.envelope.open(k, hsm.envelope.encode(c)))
      -- a receiver can decrypt chunk by chunk: chunk 2 under the last block of chunk 1 as IV
      local c1, c2 = c.ciphertext:match("^([^.]+)%.([^.]+)")
      local raw = hsm.key.import("AES_256", K)
      local d2 = hsm.cipher.decrypt(raw, "CBC", c2, c1:sub(-32))
      assert.equal(body:sub(16385, 16400), unhex(d2:sub(1, 32)))
    end)

    it("refuses keys that are not AES-256 data keys", function()
      local _, _, code = hsm.envelope.seal(hsm.key.generate("AES_128"), "x")
      assert.equal("KEY_TYPE", code)
      _, _, code = hsm.envelope.seal(msk { usage = "P0" }, "x")
      assert.equal("KEY_USAGE", code)
      _, _, code = hsm.envelope.seal(msk { usage = "D0", mode = "D" }, "x")
      assert.equal("KEY_USAGE", code)
      _, _, code = hsm.envelope.seal(msk(), "x", { iv = "0011" })
      assert.equal("IV_LENGTH", code)
      _, _, code = hsm.envelope.seal(msk(), "x", { iv = "zz" })
      assert.equal("BAD_HEX", code)
      assert.has_error(function() hsm.envelope.seal(msk(), "x", { chunked = true, chunk_size = 10 }) end)
      assert.has_error(function() hsm.envelope.seal(msk(), nil) end)
    end)
  end)

  describe("open()", function()
    local k = msk()
    local good = hsm.envelope.seal(k, '{"approved":true}', { iv = IV })
    local json = hsm.envelope.encode(good)

    it("opens the JSON text, in any field order and spacing, ignoring unknown fields", function()
      assert.equal('{"approved":true}', hsm.envelope.open(k, json))
      local other = ('{ "mode" : "CBC",\n "initialization_vector": "%s", "extra": [1, {"a": null}],'
        .. ' "ciphertext": "%s", "format": "TR31-DATA" }'):format(IV:lower(), good.ciphertext:lower())
      assert.equal('{"approved":true}', hsm.envelope.open(k, other))
    end)

    local function with(field, value)
      local e = { format = good.format, ciphertext = good.ciphertext, initialization_vector = good.initialization_vector,
                  mode = good.mode }
      e[field] = value
      return e
    end
    local bad = {
      { "bad hex ciphertext", with("ciphertext", "ZZ" .. good.ciphertext:sub(3)), "BAD_HEX" },
      { "odd-length ciphertext", with("ciphertext", good.ciphertext:sub(2)), "BAD_HEX" },
      { "bad hex IV", with("initialization_vector", "G" .. IV:sub(2)), "BAD_HEX" },
      { "short IV", with("initialization_vector", IV:sub(3)), "IV_LENGTH" },
      { "long IV", with("initialization_vector", IV .. "00"), "IV_LENGTH" },
      { "ciphertext not whole blocks", with("ciphertext", good.ciphertext:sub(3)), "BAD_LENGTH" },
      { "empty ciphertext", with("ciphertext", ""), "BAD_LENGTH" },
      { "unknown format", with("format", "TR31"), "ENVELOPE_FORMAT" },
      { "mode not CBC", with("mode", "ECB"), "ENVELOPE_FORMAT" },
      { "missing IV", with("initialization_vector", nil), "ENVELOPE_FORMAT" },
      { "chunked without chunk_size", with("format", "TR31-DATA-CHUNKED"), "ENVELOPE_FORMAT" },
      { "dots in a plain envelope", with("ciphertext", good.ciphertext:sub(1, 32) .. "." .. good.ciphertext:sub(33)), "BAD_HEX" },
      { "altered last block", with("ciphertext", good.ciphertext:sub(1, -3) .. (good.ciphertext:sub(-2) == "00" and "01" or "00")), "ENVELOPE_PADDING" },
      { "JSON not an object", "[1,2]", "ENVELOPE_FORMAT" },
      { "truncated JSON", json:sub(1, -2), "ENVELOPE_FORMAT" },
      { "JSON with trailing data", json .. "x", "ENVELOPE_FORMAT" },
      { "escaped string value", json:gsub('"CBC"', '"C\\u0042C"'), "ENVELOPE_FORMAT" },
      { "non-string field", json:gsub('"CBC"', "5"), "ENVELOPE_FORMAT" },
      { "empty text", "", "ENVELOPE_FORMAT" },
    }
    for _, c in ipairs(bad) do
      it(("%s -> %s"):format(c[1], c[3]), function()
        local pt, msg, code = hsm.envelope.open(k, c[2])
        assert.is_nil(pt)
        assert.equal(c[3], code, msg)
        assert.is_nil(msg:find(K, 1, true))
      end)
    end

    it("detects a wrong key through the padding (almost always) and never returns garbage silently", function()
      local refused = 0
      for _ = 1, 200 do
        local pt = hsm.envelope.open(hsm.key.generate("AES_256"), good)
        if pt == nil then refused = refused + 1 end
      end
      assert.is_true(refused >= 190) -- a random key yields valid padding about 1 time in 256
    end)

    it("refuses malformed chunk layouts", function()
      local c = hsm.envelope.seal(k, ("x"):rep(100), { chunked = true, chunk_size = 32, iv = IV })
      local e = { format = c.format, ciphertext = c.ciphertext, initialization_vector = IV, mode = "CBC", chunk_size = 32 }
      assert.equal(("x"):rep(100), hsm.envelope.open(k, e))
      e.chunk_size = 48
      assert.equal("ENVELOPE_FORMAT", select(3, hsm.envelope.open(k, e)))
      e.chunk_size = 32
      e.ciphertext = c.ciphertext .. "."
      assert.equal("ENVELOPE_FORMAT", select(3, hsm.envelope.open(k, e)))
      e.chunk_size = nil
      e.ciphertext = c.ciphertext
      e.format = "TR31-DATA"
      assert.equal("BAD_HEX", select(3, hsm.envelope.open(k, e)))
    end)

    it("verifies the HMAC over the JSON text before decrypting", function()
      local mk = hsm.key.import("HMAC_SHA256", ("0B"):rep(32), { usage = "M7" })
      local sig = hsm.hmac(mk, json)
      assert.equal('{"approved":true}', hsm.envelope.open(k, json, { mac_key = mk, hmac = sig }))
      local tampered = json:gsub('"CBC"', '"CBD"')
      local pt, _, code = hsm.envelope.open(k, tampered, { mac_key = mk, hmac = sig })
      assert.is_nil(pt)
      assert.equal("MAC_MISMATCH", code) -- not ENVELOPE_FORMAT: nothing is read before the MAC
      _, _, code = hsm.envelope.open(k, json, { mac_key = mk, hmac = sig:sub(3) })
      assert.equal("MAC_LENGTH", code)
      _, _, code = hsm.envelope.open(k, json, { mac_key = mk, hmac = "XY" })
      assert.equal("BAD_HEX", code)
      assert.has_error(function() hsm.envelope.open(k, good, { mac_key = mk, hmac = sig }) end)
    end)
  end)

  describe("hmac()", function()
    local cases = {
      { "4231 #1", ("0B"):rep(20), "Hi There", "B0344C61D8DB38535CA8AFCEAF0BF12B881DC200C9833DA726E9376C2E32CFF7" },
      { "4231 #2", "4A656665", "what do ya want for nothing?", "5BDCC146BF60754E6A042426089575C75A003F089D2739839DEC58B964EC3843" },
      { "4231 #6", ("AA"):rep(131), "Test Using Larger Than Block-Size Key - Hash Key First",
        "60E431591EE0B67F0D8A26AACBF5B77F8E0BC6213728C5140546040F0EE37F54" },
    }
    for _, c in ipairs(cases) do
      it(("HMAC-SHA-256 [%s]"):format(c[1]), function()
        local mk = hsm.key.import("HMAC_SHA256", c[2])
        assert.equal(c[4], hsm.hmac(mk, c[3]))
        assert.is_true(hsm.hmac_verify(mk, c[3], c[4]))
        assert.is_true(hsm.hmac_verify(mk, c[3], c[4]:lower()))
        local ok, _, code = hsm.hmac_verify(mk, c[3] .. ".", c[4])
        assert.is_false(ok)
        assert.equal("MAC_MISMATCH", code)
      end)
    end

    it("refuses wrong keys, lengths and hex", function()
      local mk = hsm.key.import("HMAC_SHA256", ("0B"):rep(32))
      local ok, _, code = hsm.hmac_verify(mk, "m", ("00"):rep(16))
      assert.is_false(ok)
      assert.equal("MAC_LENGTH", code)
      ok, _, code = hsm.hmac_verify(mk, "m", "nothex")
      assert.is_false(ok)
      assert.equal("BAD_HEX", code)
      local _, _, c2 = hsm.hmac(hsm.key.generate("AES_256"), "m")
      assert.equal("KEY_TYPE", c2)
      _, _, c2 = hsm.hmac(hsm.key.import("HMAC_SHA256", ("0B"):rep(32), { usage = "M7", mode = "V" }), "m")
      assert.equal("KEY_USAGE", c2)
      ok, _, c2 = hsm.hmac_verify(hsm.key.import("HMAC_SHA256", ("0B"):rep(32), { usage = "M7", mode = "G" }), "m", ("00"):rep(32))
      assert.is_false(ok)
      assert.equal("KEY_USAGE", c2)
    end)
  end)
end)
