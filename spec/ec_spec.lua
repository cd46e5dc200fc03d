-- core.ec (csrc/ec.c): elliptic-curve key pairs on P-256, P-384 and P-521, ECDH, and the two
-- KDFs AWS Payment Cryptography names for ECDH key agreement (NIST_SP800: the one-step KDF of
-- NIST SP 800-56C rev 2 4.1 with a hash; ANSI_X963: ANSI X9.63 5.6.3).
--
-- Known answers: the ECDH keys and shared secrets of RFC 5903 section 8 (8.1 P-256, 8.2
-- P-384, 8.3 P-521), loaded here as PKCS#8 and SubjectPublicKeyInfo DER built from the RFC's
-- numbers; the derived keys expected from each shared secret were computed with
-- pyca/cryptography's ConcatKDFHash and X963KDF (an independent implementation of the two
-- KDFs). tools/crosscheck/ecdh_pyca.py checks random keys, curves, KDFs, hashes and key
-- algorithms against pyca the same way (300/300).
local core = require "payhsm.core"
local hsm = require "payhsm"
local ec = core.ec

-- RFC 5903 section 8: i, g^i = (gix, giy), r, g^r = (grx, gry), and the shared x-coordinate.
local RFC5903 = {
  ["P-256"] = {
    pkcs8 = "308187020100301306072A8648CE3D020106082A8648CE3D030107046D306B0201010420", mid = "A14403420004",
    spki = "3059301306072A8648CE3D020106082A8648CE3D03010703420004",
    i = "C88F01F510D9AC3F70A292DAA2316DE544E9AAB8AFE84049C62A9C57862D1433",
    gix = "DAD0B65394221CF9B051E1FECA5787D098DFE637FC90B9EF945D0C3772581180",
    giy = "5271A0461CDB8252D61F1C456FA3E59AB1F45B33ACCF5F58389E0577B8990BB3",
    r = "C6EF9C5D78AE012A011164ACB397CE2088685D8F06BF9BE0B283AB46476BEE53",
    grx = "D12DFB5289C8D4F81208B70270398C342296970A0BCCB74C736FC7554494BF63",
    gry = "56FBF3CA366CC23E8157854C13C58D6AAC23F046ADA30F8353E74F33039872AB",
    derived = { "3E5350FEDC9793D24E4863A71FA056CB", "EA8AEF9732450794FD0B5151A220A4F8341FD0EC898C9DEF",
      "BFE0A5211F510ECAC92B2F4D3C0A91CF823BFCA84D29D6E8AD7073CE8DD07F7E",
      "1478508E1D3F7890E59B7C2D6F25BB0E7B178E9EB7473A9BF149CFF281DA0373" },
  },
  ["P-384"] = {
    pkcs8 = "3081B6020100301006072A8648CE3D020106052B8104002204819E30819B0201010430", mid = "A16403620004",
    spki = "3076301006072A8648CE3D020106052B8104002203620004",
    i = "099F3C7034D4A2C699884D73A375A67F7624EF7C6B3C0F160647B67414DCE655E35B538041E649EE3FAEF896783AB194",
    gix = "667842D7D180AC2CDE6F74F37551F55755C7645C20EF73E31634FE72B4C55EE6DE3AC808ACB4BDB4C88732AEE95F41AA",
    giy = "9482ED1FC0EEB9CAFC4984625CCFC23F65032149E0E144ADA024181535A0F38EEB9FCFF3C2C947DAE69B4C634573A81C",
    r = "41CB0779B4BDB85D47846725FBEC3C9430FAB46CC8DC5060855CC9BDA0AA2942E0308312916B8ED2960E4BD55A7448FC",
    grx = "E558DBEF53EECDE3D3FCCFC1AEA08A89A987475D12FD950D83CFA41732BC509D0D1AC43A0336DEF96FDA41D0774A3571",
    gry = "DCFBEC7AACF3196472169E838430367F66EEBE3C6E70C416DD5F0C68759DD1FFF83FA40142209DFF5EAAD96DB9E6386C",
    derived = { "CCCF8FC863C0968D7F8DEE1380A1F7D7", "C14A2CB34CABCB92C2FD46E52C02AE520DEF23FBFB32409B",
      "AB906BAAA8364A0388EDE40369FC9E9152415823C4614B41BFA3572669FD1EF5",
      "1AF36B03357668404745BF719DF8DC36CECAFFE0992F345B352FCD87E46CD131" },
  },
  ["P-521"] = {
    pkcs8 = "3081EE020100301006072A8648CE3D020106052B810400230481D63081D30201010442", mid = "A181890381860004",
    spki = "30819B301006072A8648CE3D020106052B810400230381860004",
    i = "0037ADE9319A89F4DABDB3EF411AACCCA5123C61ACAB57B5393DCE47608172A095AA85A30FE1C2952C6771D937BA9777F5957B2639BA"
      .. "B072462F68C27A57382D4A52",
    gix = "0015417E84DBF28C0AD3C278713349DC7DF153C897A1891BD98BAB4357C9ECBEE1E3BF42E00B8E380AEAE57C2D107564941885942AF5"
      .. "A7F4601723C4195D176CED3E",
    giy = "017CAE20B6641D2EEB695786D8C946146239D099E18E1D5A514C739D7CB4A10AD8A788015AC405D7799DC75E7B7D5B6CF2261A6A7F15"
      .. "07438BF01BEB6CA3926F9582",
    r = "0145BA99A847AF43793FDD0E872E7CDFA16BE30FDC780F97BCCC3F078380201E9C677D600B343757A3BDBF2A3163E4C2F869CCA7458AA4"
      .. "A4EFFC311F5CB151685EB9",
    grx = "00D0B3975AC4B799F5BEA16D5E13E9AF971D5E9B984C9F39728B5E5739735A219B97C356436ADC6E95BB0352F6BE64A6C2912D4EF2D0"
      .. "433CED2B6171640012D9460F",
    gry = "015C68226383956E3BD066E797B623C27CE0EAC2F551A10C2C724D9852077B87220B6536C5C408A1D2AEBB8E86D678AE49CB57091F47"
      .. "32296579AB44FCD17F0FC56A",
    derived = { "572D0D86333EF83305DA02345C319D81", "B383BA971CBCB546459B975119A7B645FDB3C25737978652",
      "C337BEF42BC5504119512DFB1AF88328F9919CF24B133EEC928650F29E19FE4F",
      "BCE23D940EA8F0BABA407EF75699DD99641DB2A78EB441C96080834D3E176304" },
  },
}
-- the derivations, in the order of each curve's `derived`
local DERIVATIONS = {
  { kdf = "NIST_SP800", hash = "SHA_512", algorithm = "AES_128", shared_info = "0102030405060708090A0B0C0D0E0F10" },
  { kdf = "ANSI_X963", hash = "SHA_256", algorithm = "TDES_3KEY", shared_info = "A1B2C3D4" },
  { kdf = "NIST_SP800", hash = "SHA_384", algorithm = "HMAC_SHA256", shared_info = "5041594853" },
  { kdf = "ANSI_X963", hash = "SHA_512", algorithm = "AES_256", shared_info = "00" },
}

local KEK = hsm.key.import("AES_256", ("5A"):rep(32))
-- a private key from its RFC 5903 numbers, brought in as PKCS#8 under a KEK
local function private(v, side)
  local x, y = side == "i" and v.gix or v.grx, side == "i" and v.giy or v.gry
  return assert(ec.unwrap(KEK, assert(core.rsa.kwp_wrap(KEK, v.pkcs8 .. v[side] .. v.mid .. x .. y))))
end
local function public(v, side)
  return assert(ec.public(v.spki .. (side == "i" and v.gix .. v.giy or v.grx .. v.gry)))
end

describe("core.ec", function()
  for _, curve in ipairs { "P-256", "P-384", "P-521" } do
    local v = RFC5903[curve]
    it(curve .. ": RFC 5903's keys load, and ECDH + each KDF gives pyca's key from both sides", function()
      local i, r = private(v, "i"), private(v, "r")
      assert.equal(curve, i:curve())
      assert.equal(v.spki .. v.gix .. v.giy, i:public_der())
      assert.equal(v.spki .. v.grx .. v.gry, r:public():public_der())
      for n, d in ipairs(DERIVATIONS) do
        local a = assert(ec.derive(i, public(v, "r"), d))
        local b = assert(ec.derive(r, i, d)) -- an EcKey as the peer: its public half
        assert.equal(v.derived[n], a:export(), curve .. " " .. d.kdf .. " " .. d.hash)
        assert.equal(v.derived[n], b:export())
        assert.equal(d.algorithm, a.algorithm)
      end
    end)
  end

  it("derived keys take TR-31 attributes, and TDES keys get odd parity", function()
    local v = RFC5903["P-256"]
    local k = assert(ec.derive(private(v, "i"), public(v, "r"), { kdf = "ANSI_X963", hash = "SHA_256",
      algorithm = "TDES_2KEY", shared_info = "A1B2C3D4", attrs = { usage = "P0", mode = "B", exportability = "N" } }))
    assert.equal("P0", k.usage)
    assert.equal("N", k.exportability)
    -- X9.63 output is the TDES_3KEY answer's first 16 bytes, parity already set
    local i = private(v, "i")
    local k3 = assert(ec.derive(i, public(v, "r"), DERIVATIONS[2]))
    local k2 = assert(ec.derive(i, public(v, "r"), { kdf = "ANSI_X963", hash = "SHA_256", algorithm = "TDES_2KEY",
      shared_info = "A1B2C3D4" }))
    assert.equal(k3:export():sub(1, 32), k2:export())
  end)

  it("generates key pairs on each curve that agree with each other", function()
    for _, curve in ipairs { "P-256", "P-384", "P-521" } do
      local a, b = ec.generate(curve), ec.generate(curve)
      local opts = { kdf = "NIST_SP800", hash = "SHA_256", algorithm = "AES_256", shared_info = "0A0B" }
      assert.equal(ec.derive(a, b:public(), opts):export(), ec.derive(b, a:public(), opts):export())
      -- the private key survives a wrap under a KEK
      local again = assert(ec.unwrap(KEK, a:wrap(KEK)))
      assert.equal(a:public_der(), again:public_der())
    end
  end)

  it("never shows private material: tostring names the curve and a digest of the public key", function()
    local v = RFC5903["P-256"]
    local i = private(v, "i")
    local s = tostring(i)
    assert.matches("^payhsm%.EcKey%(P%-256, SPKI SHA%-256 %x+%.%.%.%)$", s)
    assert.is_nil(s:find(v.i:sub(1, 8), 1, true))
    assert.matches("^payhsm%.EcPublicKey%(P%-256", tostring(i:public()))
    i:close()
    assert.equal("payhsm.EcKey(closed)", tostring(i))
    assert.has_error(function() i:public_der() end, "ec key has been closed")
  end)

  it("refuses keys on different curves (EC_CURVE)", function()
    local a, b = ec.generate("P-256"), ec.generate("P-384")
    local k, msg, code = ec.derive(a, b, { kdf = "NIST_SP800", hash = "SHA_256", algorithm = "AES_128" })
    assert.is_nil(k)
    assert.equal("EC_CURVE", code)
    assert.matches("not on one curve", msg)
  end)

  it("refuses bad options: unknown fields, KDFs, hashes, algorithms, bad hex", function()
    local a, b = ec.generate("P-256"), ec.generate("P-256")
    local ok = { kdf = "NIST_SP800", hash = "SHA_256", algorithm = "AES_128" }
    local function with(k, val)
      local t = {}
      for key, x in pairs(ok) do t[key] = x end
      t[k] = val
      return t
    end
    assert.has_error(function() ec.derive(a, b, with("sharedinfo", "00")) end)
    assert.has_error(function() ec.derive(a, b, with("kdf", "HKDF")) end)
    assert.has_error(function() ec.derive(a, b, with("hash", "SHA_1")) end)
    assert.has_error(function() ec.derive(a, b, with("algorithm", "DES")) end)
    assert.has_error(function() ec.derive(a, b, with("algorithm", "AES_512")) end)
    assert.has_error(function() ec.derive(b:public(), a, ok) end) -- a public key cannot derive
    assert.has_error(function() ec.derive(a, core.rsa.generate(2048), ok) end)
    local k, _, code = ec.derive(a, b, with("shared_info", "ABC"))
    assert.is_nil(k)
    assert.equal("BAD_HEX", code)
  end)

  it("refuses what is not an EC key on a supported curve", function()
    local rsa = core.rsa.generate(2048)
    local k, _, code = ec.public(rsa:public_der())
    assert.is_nil(k)
    assert.equal("EC_PUBLIC", code)
    k, _, code = ec.public("3059")
    assert.is_nil(k)
    assert.equal("EC_PUBLIC", code)
    -- secp256k1 (SEC 2) is not one of AWS's curves
    k, _, code = ec.public("3056301006072A8648CE3D020106052B8104000A03420004" .. RFC5903["P-256"].gix ..
      RFC5903["P-256"].giy)
    assert.is_nil(k)
    assert.equal("EC_PUBLIC", code)
    assert.has_error(function() ec.generate("P-224") end)
    -- an RSA private key does not unwrap as an EC key; a wrong KEK fails the integrity check
    k, _, code = ec.unwrap(KEK, rsa:wrap(KEK))
    assert.is_nil(k)
    assert.equal("EC_UNWRAP", code)
    k, _, code = ec.unwrap(hsm.key.import("AES_256", ("A5"):rep(32)), ec.generate("P-256"):wrap(KEK))
    assert.is_nil(k)
    assert.equal("EC_UNWRAP", code)
  end)

  it("certificates: EC subjects (keyAgreement) under RSA or EC issuers, parsed back as EC public keys", function()
    local ca_ec, ca_rsa, leaf = ec.generate("P-256"), core.rsa.generate(2048), ec.generate("P-384")
    for _, ca in ipairs { ca_ec, ca_rsa } do
      local root = core.pki.certificate(ca, ca, { subject = "Test CA", issuer = "Test CA", ca = true })
      local pem = core.pki.certificate(ca, leaf, { subject = "client", issuer = "Test CA", usage = "agree" })
      local c = assert(core.pki.parse(pem))
      assert.equal(leaf:public_der(), c.public_key:public_der())
      assert.equal("P-384", c.public_key:curve())
      assert.is_true(core.pki.verify(pem, assert(core.pki.parse(root)).public_key))
      assert.is_false(core.pki.verify(pem, ec.generate("P-256")))
      -- openssl reads the key usage
      local path = os.tmpname()
      local f = assert(io.open(path, "w"))
      f:write(pem)
      f:close()
      local text = io.popen("env -u LD_PRELOAD openssl x509 -noout -text -in " .. path):read("*a")
      os.remove(path)
      assert.matches("Key Agreement", text)
      assert.matches(ca == ca_ec and "ecdsa%-with%-SHA256" or "sha256WithRSAEncryption", text)
    end
  end)
end)
