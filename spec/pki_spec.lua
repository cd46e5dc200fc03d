-- core.digest, core.sigv4.signing_key and core.pki (X.509 certificates and RSA-OAEP key
-- cryptograms) with known answers and openssl's command line as the independent side.
local hsm = require "payhsm"
local core = hsm.core

local function sh(cmd)
  local p = io.popen("env -u LD_PRELOAD " .. cmd .. " 2>&1")
  local out = p:read("*a")
  local ok = p:close()
  return out, ok
end

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

describe("core.digest", function()
  -- FIPS 180-2 Appendix B.1, D.1 and C.1: the one-block message "abc"
  it("has FIPS 180-2's answers for \"abc\"", function()
    assert.equal("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD", core.digest("SHA256", "abc"))
    assert.equal("CB00753F45A35E8BB5A03D699AC65007272C32AB0EDED1631A8B605A43FF5BED8086072BA1E7CC2358BAECA134C825A7",
      core.digest("SHA384", "abc"))
    assert.equal("DDAF35A193617ABACC417349AE20413112E6FA4E89A97EA20A9EEEE64B55D39A"
      .. "2192992A274FC1A836BA3C23A3FEEBBD454D4423643CE80E2A9AC94FA54CA49F", core.digest("SHA512", "abc"))
    assert.equal("E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855", core.digest("SHA256", ""))
  end)
  it("raises on an unknown algorithm", function()
    assert.has_error(function() core.digest("MD5", "abc") end)
  end)
end)

describe("core.sigv4.signing_key", function()
  -- AWS General Reference, "Examples of how to derive a signing key for Signature Version 4":
  -- secret wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, 20120215, us-east-1, iam gives
  -- kSigning f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d; the HMAC
  -- below under that kSigning was computed with Python's hmac module.
  it("derives AWS's example signing key (seen through one HMAC under it)", function()
    local k = core.sigv4.signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam")
    assert.equal("EBAF99E64967981C6CBE0308C2841EEDE9D7C9667817D461100A764CACB25DA9", hsm.hmac(k, "payhsm"))
    assert.equal("HMAC_SHA256", k.algorithm)
    assert.equal("M7", k.usage)
    assert.matches("^payhsm.Key%(HMAC_SHA256, usage M7", tostring(k))
    k:close()
  end)
  it("raises on an empty secret", function()
    assert.has_error(function() core.sigv4.signing_key("", "20120215", "us-east-1", "iam") end)
  end)
end)

describe("core.pki", function()
  local dir
  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir)
  end)
  teardown(function() os.execute("rm -rf " .. dir) end)

  it("issues certificates that openssl verifies, and parses them back", function()
    local ca = core.rsa.generate(2048)
    local leaf = core.rsa.generate(2048)
    local ca_pem = core.pki.certificate(ca, ca, { subject = "Test Root", issuer = "Test Root", ca = true, days = 2,
      not_before = 1700000000 })
    local leaf_pem = core.pki.certificate(ca, leaf:public(), { subject = "Test Wrap", issuer = "Test Root",
      usage = "encipher", days = 2, not_before = 1700000000 })
    write(dir .. "/ca.pem", ca_pem)
    write(dir .. "/leaf.pem", leaf_pem)
    local out = sh(("openssl verify -attime 1700000100 -CAfile %s/ca.pem %s/leaf.pem"):format(dir, dir))
    assert.matches("leaf.pem: OK", out)
    out = sh(("openssl x509 -in %s/leaf.pem -noout -text"):format(dir))
    assert.matches("Key Encipherment", out)
    assert.matches("CA:FALSE", out)
    local p = assert(core.pki.parse(leaf_pem))
    assert.equal("CN=Test Wrap", p.subject)
    assert.equal("CN=Test Root", p.issuer)
    assert.is_false(p.ca)
    assert.equal(1700000000, p.not_before)
    assert.equal(1700000000 + 2 * 86400, p.not_after)
    assert.equal(leaf:public_der(), p.public_key:public_der())
    assert.is_true(core.pki.parse(ca_pem).ca)
    assert.is_true(core.pki.verify(leaf_pem, ca:public()))
    assert.same({ false, "pki.verify: the certificate is not signed by this key", "PKI_SIGNATURE" },
      { core.pki.verify(leaf_pem, leaf) })
  end)

  it("reads a certificate openssl made", function()
    local _, ok = sh(("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=issuer -keyout %s/o.key "
      .. "-out %s/o.pem"):format(dir, dir))
    assert.is_true(ok and true or false)
    local f = assert(io.open(dir .. "/o.pem"))
    local pem = f:read("*a")
    f:close()
    local p = assert(core.pki.parse(pem))
    assert.equal("CN=issuer", p.subject)
    assert.is_true(p.ca)
    assert.is_true(core.pki.verify(pem, p.public_key))
  end)

  it("parses EC certificates, and refuses what is not a PEM RSA or EC certificate", function()
    assert.same({ nil, "pki.parse: not a PEM X.509 certificate", "PKI_CERT" }, { core.pki.parse("hello") })
    local _, ok = sh(("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=e "
      .. "-keyout %s/e.key -out %s/e.pem"):format(dir, dir))
    assert.is_true(ok and true or false)
    local f = assert(io.open(dir .. "/e.pem"))
    local pem = f:read("*a")
    f:close()
    -- openssl's self-signed P-256 certificate: an EC public key that verifies it
    local p = assert(core.pki.parse(pem))
    assert.equal("P-256", p.public_key:curve())
    assert.is_true(core.pki.verify(pem, p.public_key))
    -- an Ed25519 key is neither RSA nor EC on AWS's curves
    _, ok = sh(("openssl req -x509 -newkey ed25519 -nodes -days 2 -subj /CN=e "
      .. "-keyout %s/d.key -out %s/d.pem"):format(dir, dir))
    assert.is_true(ok and true or false)
    f = assert(io.open(dir .. "/d.pem"))
    pem = f:read("*a")
    f:close()
    assert.same({ nil, "pki.parse: the certificate's key is neither RSA nor EC on P-256, P-384 or P-521", "PKI_CERT" },
      { core.pki.parse(pem) })
    assert.has_error(function() core.pki.certificate(core.rsa.generate(2048), core.rsa.generate(2048), { subjet = "x" }) end)
  end)

  it("wraps keys with RSA-OAEP that openssl unwraps, and unwraps what openssl wraps", function()
    local rsa = core.rsa.generate(2048)
    local pub = rsa:public()
    local KEY = "2B7E151628AED2A6ABF7158809CF4F3C"
    local key = hsm.key.import("AES_128", KEY, { usage = "K0", mode = "B", exportability = "E" })
    write(dir .. "/pub.der", (pub:public_der():gsub("%x%x", function(b) return string.char(tonumber(b, 16)) end)))
    for _, md in ipairs { "SHA_256", "SHA_512" } do
      local c = assert(core.pki.oaep_wrap(pub, key, md))
      assert.equal(512, #c)
      local back = assert(core.pki.oaep_unwrap(rsa, c, md, "AES_128", { usage = "K0", mode = "B" }))
      assert.equal(key:kcv("CMAC"), back:kcv("CMAC"))
      assert.equal("K0", back.usage)
      -- openssl encrypts the same key; payhsm unwraps it
      local omd = md == "SHA_256" and "sha256" or "sha512"
      write(dir .. "/k.bin", (KEY:gsub("%x%x", function(b) return string.char(tonumber(b, 16)) end)))
      local _, ok = sh(("openssl pkeyutl -encrypt -pubin -keyform DER -inkey %s/pub.der -in %s/k.bin -out %s/c.bin "
        .. "-pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:%s -pkeyopt rsa_mgf1_md:%s"):format(dir, dir, dir, omd, omd))
      assert.is_true(ok and true or false)
      local f = assert(io.open(dir .. "/c.bin", "rb"))
      local hex = f:read("*a"):gsub(".", function(ch) return ("%02X"):format(ch:byte()) end)
      f:close()
      local k2 = assert(core.pki.oaep_unwrap(rsa, hex, md, "AES_128"))
      assert.equal(key:kcv("CMAC"), k2:kcv("CMAC"))
    end
    local c = core.pki.oaep_wrap(pub, key, "SHA_256")
    assert.same({ nil, "pki.oaep_unwrap: the cryptogram does not decrypt under this key (OAEP)", "RSA_DECRYPT" },
      { core.pki.oaep_unwrap(rsa, c, "SHA_512", "AES_128") })
    assert.same({ nil, "pki.oaep_unwrap: the cryptogram holds 16 bytes, not a AES_256 key", "KEY_LENGTH" },
      { core.pki.oaep_unwrap(rsa, c, "SHA_256", "AES_256") })
    assert.equal("BAD_HEX", select(3, core.pki.oaep_unwrap(rsa, "XYZ", "SHA_256", "AES_128")))
    local sealed = hsm.key.import("AES_128", KEY, { exportability = "N" })
    assert.same({ nil, "pki.oaep_wrap: the key is not exportable", "KEY_EXPORTABILITY" },
      { core.pki.oaep_wrap(pub, sealed, "SHA_256") })
    assert.has_error(function() core.pki.oaep_wrap(pub, key, "SHA_1") end)
  end)
end)
