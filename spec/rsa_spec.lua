-- core.rsa (csrc/rsa.c): RSA key pairs, RFC 5649 key wrap, AES-GCM and the hybrid
-- RSA-OAEP + AES-256-GCM card-data encryption of the multi-use public key service.
-- Cross-checked against pyca/cryptography by tools/crosscheck/rsa_pyca.py.
local core = require "payhsm.core"
local rsa = core.rsa

-- RFC 5649 section 6: the two examples, under the 192-bit KEK.
local KWP = {
  kek = "5840DF6E29B02AF1AB493B705BF16EA1AE8338F4DCC176A8",
  { key = "C37B7E6492584340BED12207808941155068F738",
    wrapped = "138BDEAA9B8FA7FC61F97742E72248EE5AE6AE5360D1AE6A5F54F373FA543B6A" },
  { key = "466F7250617369", wrapped = "AFBEB0F07DFBF5419200F2CCB50BB24F" },
}

-- McGrew and Viega, "The Galois/Counter Mode of Operation (GCM)", test cases 13-16
-- (AES-256; the test vectors NIST SP 800-38D's validation refers to).
local K16 = "FEFFE9928665731C6D6A8F9467308308FEFFE9928665731C6D6A8F9467308308"
local P16 = "D9313225F88406E5A55909C5AFF5269A86A7A9531534F7DA2E4C303D8A318A72" ..
            "1C3C0C95956809532FCF0E2449A6B525B16AEDF5AA0DE657BA637B391AAFD255"
local GCM = {
  { name = "13", key = ("00"):rep(32), iv = ("00"):rep(12), pt = "", ct = "",
    tag = "530F8AFBC74536B9A963B4F1C4CB738B" },
  { name = "14", key = ("00"):rep(32), iv = ("00"):rep(12), pt = ("00"):rep(16),
    ct = "CEA7403D4D606B6E074EC5D3BAF39D18", tag = "D0D1C8A799996BF0265B98B5D48AB919" },
  { name = "16", key = K16, iv = "CAFEBABEFACEDBADDECAF888", pt = P16:sub(1, 120),
    aad = "FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2",
    ct = "522DC1F099567D07F47F37A32A84427D643A8CDCBFE5C0C97598A2BD2555D1AA" ..
         "8CB08E48590DBB3DA7B08B1056828838C5F61E6393BA7A0ABCC9F662",
    tag = "76FC6ECE0F4E1768CDDF8853BB2D551B" },
}

-- A PKCS#8 PrivateKeyInfo DER (hex) made outside payhsm, by the openssl command line.
local pkcs8_hex
local function pkcs8_der()
  if pkcs8_hex then return pkcs8_hex end
  local path = os.tmpname()
  assert(os.execute("env -u LD_PRELOAD openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 2>/dev/null" ..
    " | env -u LD_PRELOAD openssl pkcs8 -topk8 -nocrypt -outform DER -out " .. path), "openssl genpkey")
  local f = assert(io.open(path, "rb"))
  local bin = f:read("*a")
  f:close()
  os.remove(path)
  pkcs8_hex = (bin:gsub(".", function(c) return ("%02X"):format(c:byte()) end))
  return pkcs8_hex
end
local function util_bin(hex) return (hex:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end)) end

local priv, kek -- one 2048-bit key for the suite (generation costs ~50 ms)
setup(function()
  priv = rsa.generate()
  kek = core.key.generate("AES_256", { usage = "K0" })
end)

local function flip(hex, i)
  i = i or 1
  local d = tonumber(hex:sub(i, i), 16)
  local c = d % 2 == 0 and d + 1 or d - 1 -- the low bit flipped
  return hex:sub(1, i - 1) .. ("%X"):format(c) .. hex:sub(i + 1)
end

describe("rsa", function()
  describe("kwp_wrap() / kwp_verify()", function()
    it("gives the RFC 5649 section 6 answers (wrap compared, unwrap checked inside C)", function()
      local k = core.key.import("AES_192", KWP.kek, { usage = "K0" })
      for _, v in ipairs(KWP) do
        assert.equal(v.wrapped, rsa.kwp_wrap(k, v.key))
        assert.is_true(rsa.kwp_verify(k, v.wrapped:lower(), v.key))
      end
    end)
    it("refuses altered data, a wrong KEK and another plaintext", function()
      local k = core.key.import("AES_192", KWP.kek, { usage = "K0" })
      local ok, msg, code = rsa.kwp_verify(k, flip(KWP[1].wrapped, 40), KWP[1].key)
      assert.is_false(ok)
      assert.equal("KWP_UNWRAP", code)
      assert.matches("^rsa.kwp_verify: ", msg)
      local other = core.key.generate("AES_192", { usage = "K0" })
      assert.equal("KWP_UNWRAP", select(3, rsa.kwp_verify(other, KWP[1].wrapped, KWP[1].key)))
      assert.equal("KWP_MISMATCH", select(3, rsa.kwp_verify(k, KWP[1].wrapped, flip(KWP[1].key))))
      assert.equal("KWP_MISMATCH", select(3, rsa.kwp_verify(k, KWP[1].wrapped, KWP[2].key)))
      assert.equal("BAD_LENGTH", select(3, rsa.kwp_verify(k, "0011223344556677", "00")))
      assert.equal("BAD_HEX", select(3, rsa.kwp_verify(k, "XY", "00")))
      assert.equal("BAD_HEX", select(3, rsa.kwp_verify(k, KWP[1].wrapped, "0")))
      assert.is_false((rsa.kwp_verify(k, "XY", "00")))
    end)
    it("raises for a non-AES KEK and refuses a KEK of the wrong usage", function()
      assert.has_error(function() rsa.kwp_wrap(core.key.generate("TDES_3KEY"), "00") end)
      local d0 = core.key.generate("AES_256", { usage = "D0" })
      assert.equal("KEY_USAGE", select(3, rsa.kwp_wrap(d0, "0011")))
      local ok, _, code = rsa.kwp_verify(d0, KWP[2].wrapped, KWP[2].key)
      assert.is_false(ok)
      assert.equal("KEY_USAGE", code)
    end)
    it("has no unwrap that returns bytes (private keys never leave C in clear)", function()
      assert.is_nil(rsa.kwp_unwrap)
    end)
  end)

  describe("gcm_encrypt() / gcm_decrypt()", function()
    for _, v in ipairs(GCM) do
      it("gives McGrew-Viega test case " .. v.name, function()
        local k = core.key.import("AES_256", v.key)
        local ct, tag = rsa.gcm_encrypt(k, v.iv, v.pt, v.aad)
        assert.equal(v.ct, ct)
        assert.equal(v.tag, tag)
        assert.equal(v.pt, rsa.gcm_decrypt(k, v.iv, v.ct, v.tag, v.aad))
      end)
    end
    it("refuses a flipped tag, ciphertext or AAD byte", function()
      local v = GCM[3]
      local k = core.key.import("AES_256", v.key)
      assert.equal("GCM_TAG", select(3, rsa.gcm_decrypt(k, v.iv, v.ct, flip(v.tag), v.aad)))
      assert.equal("GCM_TAG", select(3, rsa.gcm_decrypt(k, v.iv, flip(v.ct, 9), v.tag, v.aad)))
      assert.equal("GCM_TAG", select(3, rsa.gcm_decrypt(k, v.iv, v.ct, v.tag, flip(v.aad))))
      assert.equal("BAD_LENGTH", select(3, rsa.gcm_decrypt(k, v.iv, v.ct, v.tag:sub(1, 30), v.aad)))
    end)
  end)

  describe("generate()", function()
    it("makes RSA-2048 by default with a DER SubjectPublicKeyInfo", function()
      assert.equal(2048, priv:bits())
      local der = priv:public_der()
      assert.matches("^30820122300D06092A864886F70D0101010500", der) -- rsaEncryption, 2048
      assert.equal(294 * 2, #der)
    end)
    it("takes 2048..4096 bits and raises outside", function()
      assert.equal(3072, rsa.generate(3072):bits())
      assert.has_error(function() rsa.generate(1024) end)
      assert.has_error(function() rsa.generate(8192) end)
    end)
    it("never shows private material in tostring, and close wipes", function()
      local k = rsa.generate()
      local s = tostring(k)
      assert.matches("^payhsm.RsaKey%(RSA%-2048, SPKI SHA%-256 %x+%.%.%.%)$", s)
      k:close()
      k:close()
      assert.equal("payhsm.RsaKey(closed)", tostring(k))
      assert.has_error(function() k:public_der() end, "rsa key has been closed")
      assert.has_error(function() rsa.seal(k, "x") end)
    end)
  end)

  describe("public()", function()
    it("loads the DER SPKI back", function()
      local pub = assert(rsa.public(priv:public_der():lower()))
      assert.equal(priv:public_der(), pub:public_der())
      assert.matches("^payhsm.RsaPublicKey", tostring(pub))
      assert.equal(priv:public_der(), priv:public():public_der())
    end)
    it("refuses what is not an RSA SPKI", function()
      assert.equal("RSA_PUBLIC", select(3, rsa.public("3000")))
      assert.equal("RSA_PUBLIC", select(3, rsa.public(priv:public_der() .. "00")))
      assert.equal("BAD_HEX", select(3, rsa.public("30G0")))
    end)
    it("cannot open or wrap (a public key has no such methods)", function()
      local pub = rsa.public(priv:public_der())
      assert.is_nil(pub.wrap)
      assert.has_error(function() rsa.open(pub, {}) end)
    end)
  end)

  describe("wrap() / unwrap()", function()
    it("round-trips the private key under the KEK", function()
      local w = priv:wrap(kek)
      assert.matches("^%x+$", w)
      local k2 = assert(rsa.unwrap(kek, w))
      assert.equal(priv:public_der(), k2:public_der())
      local t = rsa.seal(priv, "card")
      assert.equal("card", rsa.open(k2, t))
    end)
    it("refuses a wrong KEK and altered data", function()
      local w = priv:wrap(kek)
      local other = core.key.generate("AES_256", { usage = "K0" })
      assert.equal("RSA_UNWRAP", select(3, rsa.unwrap(other, w)))
      assert.equal("RSA_UNWRAP", select(3, rsa.unwrap(kek, flip(w, 100))))
      assert.equal("RSA_UNWRAP", select(3, rsa.unwrap(kek, w:sub(1, 32))))
      assert.equal("BAD_HEX", select(3, rsa.unwrap(kek, "ZZ")))
    end)
    it("wraps exactly KWP(PKCS#8 PrivateKeyInfo DER), RFC 5208 / RFC 5649", function()
      -- an outside key: PKCS#8 DER from the openssl command line, brought in by KWP
      local der = pkcs8_der()
      assert.matches("^30820%x%x%x020100300D06092A864886F70D0101010500", der) -- PrivateKeyInfo v0, rsaEncryption
      local w = rsa.kwp_wrap(kek, der)
      local k = assert(rsa.unwrap(kek, w))
      assert.equal(w, k:wrap(kek)) -- KWP is deterministic: the same DER inside
      assert.is_true(rsa.kwp_verify(kek, k:wrap(kek), der))
      assert.equal("KWP_MISMATCH", select(3, rsa.kwp_verify(kek, priv:wrap(kek), der)))
    end)
    it("no core.rsa function returns the clear PKCS#8 of a wrapped key", function()
      local der = pkcs8_der()
      local w = rsa.kwp_wrap(kek, der)
      local k = assert(rsa.unwrap(kek, w))
      local probe = der:sub(-64) -- the last 32 bytes: inside qInv, private
      local function leaks(...)
        for i = 1, select("#", ...) do
          local v = select(i, ...)
          if type(v) == "string" and (v:upper():find(probe, 1, true) or v:find(util_bin(probe), 1, true)) then
            return true
          end
          if type(v) == "table" then
            for _, x in pairs(v) do if type(x) == "string" and x:upper():find(probe, 1, true) then return true end end
          end
        end
        return false
      end
      local tried = 0
      for name, fn in pairs(rsa) do
        for _, args in ipairs { { kek, w }, { kek, w, der }, { k }, { k, kek }, { w }, { kek, w, "" } } do
          tried = tried + 1
          assert.is_false(leaks(select(2, pcall(fn, (table.unpack or unpack)(args, 1, 3)))), name)
        end
      end
      for _, meth in ipairs { "public_der", "public", "wrap", "bits" } do
        assert.is_false(leaks(select(2, pcall(k[meth], k, kek))), meth)
      end
      assert.is_false(leaks(tostring(k)))
      assert.is_true(tried > 40)
    end)
  end)

  describe("seal() / open()", function()
    it("seals with the public key and opens with the private key", function()
      local pub = rsa.public(priv:public_der())
      local t = rsa.seal(pub, "4005550000000019=2512", "keyId")
      assert.equal(512, #t.encrypted_key)
      assert.equal(24, #t.iv)
      assert.equal(32, #t.tag)
      assert.equal(42, #t.ciphertext)
      assert.equal("4005550000000019=2512", rsa.open(priv, t, "keyId"))
      local t2 = rsa.seal(pub, "4005550000000019=2512", "keyId")
      assert.are_not.equal(t.encrypted_key, t2.encrypted_key) -- a fresh AES key and IV each time
      assert.are_not.equal(t.ciphertext, t2.ciphertext)
    end)
    it("seals empty data", function()
      assert.equal("", rsa.open(priv, rsa.seal(priv, "")))
    end)
    it("refuses tampered ciphertext, tag, IV, AAD", function()
      local t = rsa.seal(priv, "4111111111111111", "k1")
      local function try(field, aad)
        local c = { encrypted_key = t.encrypted_key, iv = t.iv, ciphertext = t.ciphertext, tag = t.tag }
        if field then c[field] = flip(c[field], 3) end
        return rsa.open(priv, c, aad or "k1")
      end
      assert.equal("4111111111111111", try())
      for _, f in ipairs { "ciphertext", "tag", "iv" } do
        local pt, msg, code = try(f)
        assert.is_nil(pt)
        assert.equal("GCM_TAG", code, f)
        assert.matches("^rsa.open: ", msg)
      end
      assert.equal("GCM_TAG", select(3, try(nil, "k2")))
      assert.equal("RSA_DECRYPT", select(3, try("encrypted_key")))
    end)
    it("refuses the wrong private key", function()
      local t = rsa.seal(priv, "4111111111111111")
      assert.equal("RSA_DECRYPT", select(3, rsa.open(rsa.generate(), t)))
    end)
    it("checks hex and lengths", function()
      local t = rsa.seal(priv, "x")
      local function with(f, v)
        local c = { encrypted_key = t.encrypted_key, iv = t.iv, ciphertext = t.ciphertext, tag = t.tag }
        c[f] = v
        return select(3, rsa.open(priv, c))
      end
      assert.equal("BAD_HEX", with("ciphertext", "GG"))
      assert.equal("BAD_HEX", with("iv", ("G"):rep(24)))
      assert.equal("BAD_LENGTH", with("iv", "00"))
      assert.equal("BAD_LENGTH", with("tag", t.tag .. "00"))
      assert.equal("BAD_LENGTH", with("encrypted_key", t.encrypted_key:sub(3)))
      assert.equal("BAD_LENGTH", with("tag", nil))
    end)
  end)
end)
