-- `bin/payhsm serve aws` driven by the official AWS SDKs for JavaScript, unpatched and
-- pointed at it by endpoint override: aws-sdk v2 (AWS.PaymentCryptography, model
-- payment-cryptography-2021-09-14) and @aws-sdk/client-payment-cryptography v3
-- (tools/node/package-lock.json pins both; `make deps` installs them). Every control-
-- plane operation, every exception class, the SigV4 refusals and a restart of the
-- server on its sqlite store. Node and the SDKs are required: without them this spec
-- fails, it does not skip.
local cjson = require "cjson"
local serve = require "spec.support.serve"
local shapes = require "payhsm.aws.shapes"

local KEY_ID, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
local STORAGE_KEY = ("0123456789ABCDEF"):rep(4)
local NODE_MODULES = "tools/node/node_modules"

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

local function config(db, extra)
  return ([[{listen = "127.0.0.1:0", region = "us-east-1", account = "111122223333",
    credentials = {%s = %q}, store = {backend = "sqlite", path = %q},
    storage_key = {algorithm = "AES_256", hex = %q}%s}]]):format(KEY_ID, SECRET, db, STORAGE_KEY, extra or "")
end

-- Runs steps through spec/support/aws/sdk.js against port; returns the results array.
local function sdk(port, steps)
  local input = os.tmpname()
  local f = assert(io.open(input, "w"))
  f:write(cjson.encode(steps))
  f:close()
  local p = io.popen(("env -u LD_PRELOAD AWS_ENDPOINT=http://127.0.0.1:%d AWS_KEY_ID=%s AWS_SECRET='%s' "
    .. "node spec/support/aws/sdk.js < %s 2>/dev/null"):format(port, KEY_ID, SECRET, input))
  local out = p:read("*a")
  p:close()
  os.remove(input)
  local ok, results = pcall(cjson.decode, out)
  assert(ok and type(results) == "table", "the SDK driver gave no JSON: " .. tostring(out))
  return results
end

local SYM = function(usage, alg, modes)
  return { KeyUsage = usage, KeyClass = "SYMMETRIC_KEY", KeyAlgorithm = alg, KeyModesOfUse = modes }
end
local CIPHER = { Encrypt = true, Decrypt = true, Wrap = true, Unwrap = true }
local ARN = "^arn:aws:payment%-cryptography:us%-east%-1:111122223333:key/[a-z2-7]+$"

-- Every control-plane operation, in an order where each finds what it needs.
local function all_operations(v, alias)
  return {
    { sdk = v, op = "CreateKey", input = { Exportable = true, KeyAttributes = SYM("TR31_K0_KEY_ENCRYPTION_KEY",
      "AES_256", CIPHER), Tags = { { Key = "team", Value = "issuing" } } } },                         -- 0 KEK
    { sdk = v, op = "CreateKey", input = { Exportable = true, KeyCheckValueAlgorithm = "ANSI_X9_24",
      KeyAttributes = SYM("TR31_D0_SYMMETRIC_DATA_ENCRYPTION_KEY", "AES_128", CIPHER) } },            -- 1 DEK
    { sdk = v, op = "GetKey", input = { KeyIdentifier = "$0.Key.KeyArn" } },                          -- 2
    { sdk = v, op = "CreateAlias", input = { AliasName = alias, KeyArn = "$0.Key.KeyArn" } },         -- 3
    { sdk = v, op = "GetAlias", input = { AliasName = alias } },                                       -- 4
    { sdk = v, op = "UpdateAlias", input = { AliasName = alias, KeyArn = "$1.Key.KeyArn" } },         -- 5
    { sdk = v, op = "ListAliases", input = { MaxResults = 100 } },                                     -- 6
    { sdk = v, op = "ExportKey", input = { ExportKeyIdentifier = alias, KeyMaterial = { Tr31KeyBlock = {
      WrappingKeyIdentifier = "$0.Key.KeyArn" } } } },                                                -- 7
    { sdk = v, op = "ImportKey", input = { KeyMaterial = { Tr31KeyBlock = { WrappingKeyIdentifier = "$0.Key.KeyArn",
      WrappedKeyBlock = "$7.WrappedKey.KeyMaterial" } }, KeyCheckValueAlgorithm = "ANSI_X9_24" } },   -- 8
    { sdk = v, op = "TagResource", input = { ResourceArn = "$8.Key.KeyArn", Tags = {
      { Key = "issuer", Value = "bank-a" }, { Key = "env", Value = "test" } } } },                    -- 9
    { sdk = v, op = "UntagResource", input = { ResourceArn = "$8.Key.KeyArn", TagKeys = { "env" } } }, -- 10
    { sdk = v, op = "ListTagsForResource", input = { ResourceArn = "$8.Key.KeyArn" } },               -- 11
    { sdk = v, op = "StopKeyUsage", input = { KeyIdentifier = "$8.Key.KeyArn" } },                    -- 12
    { sdk = v, op = "StartKeyUsage", input = { KeyIdentifier = "$8.Key.KeyArn" } },                   -- 13
    { sdk = v, op = "DeleteKey", input = { KeyIdentifier = "$8.Key.KeyArn", DeleteKeyInDays = 3 } },  -- 14
    { sdk = v, op = "ListKeys", input = { KeyState = "DELETE_PENDING" } },                            -- 15
    { sdk = v, op = "RestoreKey", input = { KeyIdentifier = "$8.Key.KeyArn" } },                      -- 16
    { sdk = v, op = "GetParametersForImport", input = { KeyMaterialType = "KEY_CRYPTOGRAM",
      WrappingKeyAlgorithm = "RSA_2048" } },                                                          -- 17
    { sdk = v, op = "GetParametersForExport", input = { KeyMaterialType = "TR34_KEY_BLOCK",
      SigningKeyAlgorithm = "RSA_2048" } },                                                           -- 18
    { sdk = v, op = "CreateKey", input = { Exportable = false, KeyAttributes = {
      KeyUsage = "TR31_S0_ASYMMETRIC_KEY_FOR_DIGITAL_SIGNATURE", KeyClass = "ASYMMETRIC_KEY_PAIR",
      KeyAlgorithm = "RSA_2048", KeyModesOfUse = { Sign = true, Verify = true } } } },                -- 19
    { sdk = v, op = "GetPublicKeyCertificate", input = { KeyIdentifier = "$19.Key.KeyArn" } },        -- 20
    { sdk = v, op = "DeleteAlias", input = { AliasName = alias } },                                    -- 21
    { sdk = v, op = "ListKeys", input = { MaxResults = 1 } },                                          -- 22
  }
end

describe("serve aws with the official AWS SDKs for JavaScript", function()
  local dir, srv, db
  setup(function()
    assert(os.execute("command -v node >/dev/null 2>&1"), "node is required (Debian package nodejs; make deps)")
    assert(read(NODE_MODULES .. "/aws-sdk/package.json"), "aws-sdk v2 is missing: run make deps")
    assert(read(NODE_MODULES .. "/@aws-sdk/client-payment-cryptography/package.json"),
      "@aws-sdk/client-payment-cryptography is missing: run make deps")
    dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir)
    db = dir .. "/aws.db"
    srv = serve.start("aws", config(db))
  end)
  teardown(function()
    if srv then srv.stop() srv.cleanup() end
    if dir then os.execute("rm -rf " .. dir) end
  end)

  it("has the operations and input shapes of AWS's model file", function()
    local model = cjson.decode(read(NODE_MODULES .. "/aws-sdk/apis/payment-cryptography-2021-09-14.min.json"))
    local n = 0
    for op, o in pairs(model.operations) do
      n = n + 1
      local mine = shapes.input[op]
      assert.is_table(mine, op)
      local want = {}
      for _, r in ipairs(o.input.required or {}) do want[#want + 1] = r end
      table.sort(want)
      local have = {}
      for _, r in ipairs(mine.required or {}) do have[#have + 1] = r end
      table.sort(have)
      assert.same(want, have, op .. " required members")
      for member in pairs(o.input.members) do assert.is_table(mine.members[member], op .. "." .. member) end
    end
    assert.equal(20, n)
    local n_mine = 0
    for _ in pairs(shapes.input) do n_mine = n_mine + 1 end
    assert.equal(20, n_mine)
  end)

  it("has the input members of @aws-sdk/client-payment-cryptography's types, required ones marked", function()
    local dts = read(NODE_MODULES .. "/@aws-sdk/client-payment-cryptography/dist-types/models/models_0.d.ts")
    assert.is_string(dts)
    local n = 0
    for op, shape in pairs(shapes.input) do
      local body = dts:match("export interface " .. op .. "Input {(.-)\n}")
      assert.is_string(body, op .. "Input not in the v3 types")
      local members, required = {}, {}
      for name, opt in body:gmatch("\n%s+([A-Z][%w]*)(%??):") do
        members[#members + 1] = name
        if opt == "" then required[#required + 1] = name end
      end
      local mine = {}
      for name in pairs(shape.members) do mine[#mine + 1] = name end
      table.sort(members)
      table.sort(mine)
      table.sort(required)
      local req = {}
      for _, r in ipairs(shape.required or {}) do req[#req + 1] = r end
      table.sort(req)
      assert.same(members, mine, op .. " members")
      assert.same(required, req, op .. " required members")
      n = n + 1
    end
    assert.equal(20, n)
  end)

  for _, v in ipairs { "v3", "v2" } do
    it("answers every control-plane operation through SDK " .. v, function()
      local r = sdk(srv.port, all_operations(v, "alias/issuer-" .. v))
      for i, res in ipairs(r) do assert.is_true(res.ok, ("step %d: %s"):format(i - 1, cjson.encode(res))) end
      local kek, dek = r[1].output.Key, r[2].output.Key
      assert.matches(ARN, kek.KeyArn)
      assert.equal("CREATE_COMPLETE", kek.KeyState)
      assert.equal("AWS_PAYMENT_CRYPTOGRAPHY", kek.KeyOrigin)
      assert.equal("CMAC", kek.KeyCheckValueAlgorithm)
      assert.matches("^%x%x%x%x%x%x$", kek.KeyCheckValue)
      assert.equal("ANSI_X9_24", dek.KeyCheckValueAlgorithm)
      assert.same(kek, r[3].output.Key)
      assert.equal(dek.KeyArn, r[6].output.Alias.KeyArn)
      local block = r[8].output.WrappedKey.KeyMaterial
      assert.equal("TR31_KEY_BLOCK", r[8].output.WrappedKey.WrappedKeyMaterialFormat)
      -- TR-31 version D, length 144 (the AES-128 key padded to 32 bytes), D0, AES, mode B, exportable
      assert.equal("D0144D0AB00E0000", block:sub(1, 16))
      -- the imported copy is the same key: same check value, EXTERNAL origin
      local imported = r[9].output.Key
      assert.equal(dek.KeyCheckValue, imported.KeyCheckValue)
      assert.equal("EXTERNAL", imported.KeyOrigin)
      assert.same({ { Key = "issuer", Value = "bank-a" } }, r[12].output.Tags)
      assert.is_false(r[13].output.Key.Enabled)
      assert.is_true(r[14].output.Key.Enabled)
      assert.equal("DELETE_PENDING", r[15].output.Key.KeyState)
      local found = false
      for _, k in ipairs(r[16].output.Keys) do if k.KeyArn == imported.KeyArn then found = true end end
      assert.is_true(found)
      assert.equal("CREATE_COMPLETE", r[17].output.Key.KeyState)
      assert.matches("^import%-token%-[a-z2-7]+$", r[18].output.ImportToken)
      assert.matches("^export%-token%-[a-z2-7]+$", r[19].output.ExportToken)
      local pem = require("payhsm.util").b64decode(r[21].output.KeyCertificate)
      assert.matches("^%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-", pem)
      assert.equal(1, #r[23].output.Keys)
      assert.is_string(r[23].output.NextToken)
    end)
  end

  it("raises each exception class of the model in both SDKs", function()
    -- a record the server cannot read: InternalServerException
    local store = require("payhsm.store.sqlite").new { path = db }
    store:put("aws:key:brokenbrokenbroken", "not a key record")
    store:close()
    local steps = {}
    local cases = {
      { "ValidationException", "CreateAlias", { AliasName = "no-prefix" } },
      { "ValidationException", "CreateKey", { Exportable = true, KeyAttributes = SYM("TR31_M1_ISO_9797_1_MAC_KEY",
        "AES_128", { Generate = true, Verify = true }) } },
      { "ResourceNotFoundException", "GetKey", { KeyIdentifier = "alias/nobody-has-this" } },
      { "AccessDeniedException", "GetKey",
        { KeyIdentifier = "arn:aws:payment-cryptography:us-east-1:999999999999:key/abcdefghijklmnop" } },
      { "ConflictException", "CreateAlias", { AliasName = "alias/twice" } },
      { "ServiceQuotaExceededException", "TagResource", { ResourceArn = "$0.Key.KeyArn", Tags = (function()
        local t = {}
        for i = 1, 51 do t[i] = { Key = "k" .. i, Value = "v" } end
        return t
      end)() } },
      { "InternalServerException", "GetKey",
        { KeyIdentifier = "arn:aws:payment-cryptography:us-east-1:111122223333:key/brokenbrokenbroken" } },
    }
    for _, v in ipairs { "v3", "v2" } do
      steps = { { sdk = v, op = "CreateKey", input = { Exportable = true,
        KeyAttributes = SYM("TR31_K0_KEY_ENCRYPTION_KEY", "AES_128", CIPHER) } },
        { sdk = v, op = "CreateAlias", input = { AliasName = "alias/twice" } } }
      for _, c in ipairs(cases) do steps[#steps + 1] = { sdk = v, op = c[2], input = c[3] } end
      local r = sdk(srv.port, steps)
      assert.is_true(r[1].ok and r[2].ok)
      for i, c in ipairs(cases) do
        local res = r[i + 2]
        assert.is_false(res.ok, c[1])
        assert.equal(c[1], res.name, cjson.encode(res))
        if v == "v3" then
          assert.equal(c[1], res.className) -- the SDK's own exception class
          assert.is_true(res.isModeled)
        end
        assert.equal(c[1] == "InternalServerException" and 500 or 400, res.status)
      end
      assert.matches("'aliasName'", r[3].message)
      assert.matches("KeyAlgorithm AES_128 is not allowed for KeyUsage TR31_M1_ISO_9797_1_MAC_KEY", r[4].message)
      local steps2 = { { sdk = v, op = "DeleteAlias", input = { AliasName = "alias/twice" } } }
      assert.is_true(sdk(srv.port, steps2)[1].ok)
    end
    -- ThrottlingException: a server allowing 2 requests and then 1 per 1000 s
    local tdir = os.tmpname()
    local t = serve.start("aws", config(tdir .. ".db", ", throttle = {rate = 0.001, burst = 2}"))
    local r = sdk(t.port, { { sdk = "v3", op = "ListKeys" }, { sdk = "v3", op = "ListKeys" },
      { sdk = "v3", op = "ListKeys" }, { sdk = "v2", op = "ListKeys" } })
    t.stop() t.cleanup()
    os.remove(tdir .. ".db")
    assert.is_true(r[1].ok and r[2].ok)
    assert.equal("ThrottlingException", r[3].name)
    assert.equal("ThrottlingException", r[3].className)
    assert.equal("ThrottlingException", r[4].name)
  end)

  it("refuses requests as AWS does: wrong secret, unknown key, skewed clock, body altered, no signature", function()
    local steps = {
      { sdk = "v3", op = "CreateKey", input = { Exportable = true,
        KeyAttributes = SYM("TR31_K0_KEY_ENCRYPTION_KEY", "AES_128", CIPHER) } },
    }
    for _, v in ipairs { "v3", "v2" } do
      local get = { KeyIdentifier = "$0.Key.KeyArn" }
      steps[#steps + 1] = { sdk = v, op = "GetKey", input = get, creds = { accessKeyId = KEY_ID, secretAccessKey = "wrong" } }
      steps[#steps + 1] = { sdk = v, op = "GetKey", input = get, creds = { accessKeyId = "AKIDUNKNOWN", secretAccessKey = SECRET } }
      steps[#steps + 1] = { sdk = v, op = "GetKey", input = get, alterBody = true }
    end
    steps[#steps + 1] = { sdk = "v2", op = "GetKey", input = { KeyIdentifier = "$0.Key.KeyArn" }, clockOffsetMs = -900000 }
    steps[#steps + 1] = { sdk = "v2", op = "GetKey", input = { KeyIdentifier = "$0.Key.KeyArn" }, clockOffsetMs = 900000 }
    -- v3 corrects its clock from the answer's Date header and retries, as against AWS
    steps[#steps + 1] = { sdk = "v3", op = "GetKey", input = { KeyIdentifier = "$0.Key.KeyArn" }, clockOffsetMs = 900000, attempts = 2 }
    local r = sdk(srv.port, steps)
    assert.is_true(r[1].ok)
    for i, want in ipairs { "InvalidSignatureException", "UnrecognizedClientException", "InvalidSignatureException",
      "InvalidSignatureException", "UnrecognizedClientException", "InvalidSignatureException" } do
      assert.equal(want, r[i + 1].name, cjson.encode(r[i + 1]))
      assert.equal(400, r[i + 1].status)
    end
    assert.matches("signature we calculated does not match", r[2].message)
    assert.equal("The security token included in the request is invalid.", r[3].message)
    assert.matches("^Signature expired: ", r[8].message)
    assert.matches("^Signature not yet current: ", r[9].message)
    assert.is_true(r[10].ok, cjson.encode(r[10]))
    assert.is_true(math.abs(r[10].clockOffsetMs) < 5000)
    -- no Authorization at all
    local c = require("payhsm.http_client").new { host = "127.0.0.1", port = srv.port }
    local resp = c:request { method = "POST", path = "/", body = "{}",
      headers = { ["x-amz-target"] = "PaymentCryptographyControlPlane.ListKeys" } }
    c:close()
    assert.equal(403, resp.status)
    assert.equal("MissingAuthenticationTokenException", resp.headers["x-amzn-errortype"])
    assert.same({ __type = "MissingAuthenticationTokenException", message = "Missing Authentication Token",
      Message = "Missing Authentication Token" }, cjson.decode(resp.body))
  end)

  it("imports by key cryptogram and certificates, exports by key cryptogram (openssl decrypts it)", function()
    -- an issuer's PKI made with the openssl command line: a root CA and a wrapping
    -- certificate it signed, RSA-2048 both
    local function sh(cmd) assert(os.execute("env -u LD_PRELOAD " .. cmd .. " >/dev/null 2>&1"), cmd) end
    sh(("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=issuer-root -keyout %s/root.key -out %s/root.pem")
      :format(dir, dir))
    sh(("openssl req -newkey rsa:2048 -nodes -subj /CN=issuer-wrap -keyout %s/wrap.key -out %s/wrap.csr"):format(dir, dir))
    sh(("openssl x509 -req -in %s/wrap.csr -CA %s/root.pem -CAkey %s/root.key -CAcreateserial -days 2 -out %s/wrap.pem")
      :format(dir, dir, dir, dir))
    local b64 = require("payhsm.util").b64encode
    local root, wrap = b64(read(dir .. "/root.pem")), b64(read(dir .. "/wrap.pem"))
    -- the AES-128 key of NIST SP 800-38B D.1 / FIPS 197 C.1 examples, as the issuer's key
    local KEY = "2B7E151628AED2A6ABF7158809CF4F3C"
    local kek_attrs = SYM("TR31_K0_KEY_ENCRYPTION_KEY", "AES_128", CIPHER)
    local r = sdk(srv.port, {
      { sdk = "v3", op = "GetParametersForImport", input = { KeyMaterialType = "KEY_CRYPTOGRAM",
        WrappingKeyAlgorithm = "RSA_2048" } },                                                             -- 0
      { sdk = "node", op = "oaepEncrypt", input = { Certificate = "$0.WrappingKeyCertificate", KeyHex = KEY,
        Hash = "sha256" } },                                                                                -- 1
      { sdk = "v3", op = "ImportKey", input = { KeyMaterial = { KeyCryptogram = { KeyAttributes = kek_attrs,
        Exportable = true, WrappedKeyCryptogram = "$1.Cryptogram", ImportToken = "$0.ImportToken" } } } },   -- 2
      { sdk = "node", op = "oaepEncrypt", input = { Certificate = "$0.WrappingKeyCertificate", KeyHex = KEY,
        Hash = "sha512" } },                                                                                -- 3
      { sdk = "v2", op = "ImportKey", input = { KeyMaterial = { KeyCryptogram = { KeyAttributes = kek_attrs,
        Exportable = false, WrappedKeyCryptogram = "$3.Cryptogram", ImportToken = "$0.ImportToken",
        WrappingSpec = "RSA_OAEP_SHA_512" } } } },                                                         -- 4
      { sdk = "v3", op = "ImportKey", input = { KeyMaterial = { RootCertificatePublicKey = { KeyAttributes = {
        KeyUsage = "TR31_S0_ASYMMETRIC_KEY_FOR_DIGITAL_SIGNATURE", KeyClass = "PUBLIC_KEY", KeyAlgorithm = "RSA_2048",
        KeyModesOfUse = { Verify = true } }, PublicKeyCertificate = root } } } },                          -- 5
      { sdk = "v2", op = "ImportKey", input = { KeyMaterial = { TrustedCertificatePublicKey = { KeyAttributes = {
        KeyUsage = "TR31_D1_ASYMMETRIC_KEY_FOR_DATA_ENCRYPTION", KeyClass = "PUBLIC_KEY", KeyAlgorithm = "RSA_2048",
        KeyModesOfUse = { Encrypt = true, Wrap = true } }, PublicKeyCertificate = wrap,
        CertificateAuthorityPublicKeyIdentifier = "$5.Key.KeyArn" } } } },                                 -- 6
      { sdk = "v3", op = "ExportKey", input = { ExportKeyIdentifier = "$2.Key.KeyArn", KeyMaterial = {
        KeyCryptogram = { CertificateAuthorityPublicKeyIdentifier = "$5.Key.KeyArn", WrappingKeyCertificate = wrap,
        WrappingSpec = "RSA_OAEP_SHA_256" } } } },                                                         -- 7
      { sdk = "v3", op = "ExportKey", input = { ExportKeyIdentifier = "$4.Key.KeyArn", KeyMaterial = {
        KeyCryptogram = { CertificateAuthorityPublicKeyIdentifier = "$5.Key.KeyArn", WrappingKeyCertificate = wrap } } } }, -- 8
      { sdk = "v3", op = "ImportKey", input = { KeyMaterial = { KeyCryptogram = { KeyAttributes = kek_attrs,
        Exportable = true, WrappedKeyCryptogram = "$1.Cryptogram", ImportToken = "import-token-aaaaaaaaaaaaaaaa" } } } }, -- 9
      { sdk = "v3", op = "ImportKey", input = { KeyMaterial = { Tr34KeyBlock = {
        CertificateAuthorityPublicKeyIdentifier = "$5.Key.KeyArn", SigningKeyCertificate = wrap,
        ImportToken = "$0.ImportToken", WrappedKeyBlock = "00", KeyBlockFormat = "X9_TR34_2012" } } } },   -- 10
      { sdk = "v2", op = "ExportKey", input = { ExportKeyIdentifier = "$2.Key.KeyArn", KeyMaterial = {
        Tr34KeyBlock = { CertificateAuthorityPublicKeyIdentifier = "$5.Key.KeyArn", WrappingKeyCertificate = wrap,
        ExportToken = "export-token-aaaaaaaaaaaaaaaa", KeyBlockFormat = "X9_TR34_2012" } } } },          -- 11
      { sdk = "v3", op = "GetPublicKeyCertificate", input = { KeyIdentifier = "$6.Key.KeyArn" } },         -- 12
    })
    for i = 1, 8 do assert.is_true(r[i].ok, ("step %d: %s"):format(i - 1, cjson.encode(r[i]))) end
    local hsm = require "payhsm"
    local want_kcv = hsm.kcv(hsm.key.import("AES_128", KEY), "CMAC")
    assert.equal(want_kcv, r[3].output.Key.KeyCheckValue)
    assert.equal("EXTERNAL", r[3].output.Key.KeyOrigin)
    assert.equal(want_kcv, r[5].output.Key.KeyCheckValue)
    assert.is_false(r[5].output.Key.Exportable)
    assert.equal("PUBLIC_KEY", r[6].output.Key.KeyAttributes.KeyClass)
    assert.equal("PUBLIC_KEY", r[7].output.Key.KeyAttributes.KeyClass)
    -- the exported cryptogram decrypts to the key under the issuer's own private key
    local wk = r[8].output.WrappedKey
    assert.equal("KEY_CRYPTOGRAM", wk.WrappedKeyMaterialFormat)
    assert.equal(want_kcv, wk.KeyCheckValue)
    local f = assert(io.open(dir .. "/cryptogram.bin", "wb"))
    f:write(require("payhsm.util").hex_to_bin(wk.KeyMaterial))
    f:close()
    sh(("openssl pkeyutl -decrypt -inkey %s/wrap.key -in %s/cryptogram.bin -out %s/clear.bin -pkeyopt "
      .. "rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256"):format(dir, dir, dir))
    assert.equal(KEY, (read(dir .. "/clear.bin"):gsub(".", function(c) return ("%02X"):format(c:byte()) end)))
    os.remove(dir .. "/clear.bin")
    -- a key imported as not exportable stays inside
    assert.equal("ValidationException", r[9].name)
    assert.matches("is not exportable", r[9].message)
    assert.equal("ValidationException", r[10].name)
    assert.matches("ImportToken is not valid", r[10].message)
    -- a KEY_CRYPTOGRAM import token is no TR-34 one; an unknown export token is refused
    assert.equal("ValidationException", r[11].name)
    assert.equal("ImportToken is not valid (unknown, expired, or not from GetParametersForImport with "
      .. "KeyMaterialType TR34_KEY_BLOCK)", r[11].message)
    assert.equal("ValidationException", r[12].name)
    assert.equal("ExportToken is not valid (unknown, expired, or not from GetParametersForExport)", r[12].message)
    assert.is_true(r[13].ok)
    assert.equal(read(dir .. "/wrap.pem"), require("payhsm.util").b64decode(r[13].output.KeyCertificate))
    assert.equal(read(dir .. "/root.pem"), require("payhsm.util").b64decode(r[13].output.KeyCertificateChain))
  end)

  -- The flows of AWS Payment Cryptography's user guide ("Import keys using asymmetric
  -- techniques (TR-34)", "Export keys ... (TR-34)") and of its import_tr34 / export_tr34
  -- samples, through both SDKs: the partner's CA imported as RootCertificatePublicKey,
  -- GetParametersForImport (TR34_KEY_BLOCK, RSA_2048), the token built by the partner
  -- (payhsm's hsm.tr34.wrap as KDH, two-pass with the partner's RandomNonce), ImportKey;
  -- then GetParametersForExport and ExportKey to the partner's KRD certificate, opened
  -- with hsm.tr34.unwrap.
  it("imports and exports a KEK by TR-34 (X9_TR34_2012), the KCV matching both ways", function()
    local hsm = require "payhsm"
    local b64 = require("payhsm.util").b64encode
    local P = require("spec.support.rsa_pki").make()
    finally(P.remove)
    local r = sdk(srv.port, {
      { sdk = "v3", op = "ImportKey", input = { KeyMaterial = { RootCertificatePublicKey = { KeyAttributes = {
        KeyUsage = "TR31_S0_ASYMMETRIC_KEY_FOR_DIGITAL_SIGNATURE", KeyClass = "PUBLIC_KEY", KeyAlgorithm = "RSA_2048",
        KeyModesOfUse = { Verify = true } }, PublicKeyCertificate = b64(P.ca_cert) } } } },                  -- 0
      { sdk = "v2", op = "GetParametersForImport", input = { KeyMaterialType = "TR34_KEY_BLOCK",
        WrappingKeyAlgorithm = "RSA_2048" } },                                                             -- 1
    })
    assert.is_true(r[1].ok and r[2].ok, cjson.encode(r))
    local ca_arn, params = r[1].output.Key.KeyArn, r[2].output
    -- TR-34-2019 B.2.2.2.1's TDES KEK (0123456789ABCDEFFEDCBA9876543210 repeated to 3 keys)
    local KEK = "0123456789ABCDEFFEDCBA98765432100123456789ABCDEF"
    local kek = hsm.key.import("TDES_3KEY", KEK, { usage = "K0", mode = "B" })
    local nonce = hsm.random(8)
    local block = assert(hsm.tr34.wrap(kek, { kdh_key = P.kdh_key, kdh_cert = P.kdh_cert,
      krd_cert = params.WrappingKeyCertificate, ca_cert = params.WrappingKeyCertificateChain, nonce = nonce }))
    local i = math.floor(#block * 0.4)
    local altered = block:sub(1, i - 1) .. (block:sub(i, i) == "0" and "1" or "0") .. block:sub(i + 1)
    local function tr34(wrapped, signer, n)
      return { KeyMaterial = { Tr34KeyBlock = { CertificateAuthorityPublicKeyIdentifier = ca_arn,
        SigningKeyCertificate = b64(signer or P.kdh_cert), ImportToken = params.ImportToken, WrappedKeyBlock = wrapped,
        KeyBlockFormat = "X9_TR34_2012", RandomNonce = n or nonce } } }
    end
    local n2 = hsm.random(8)
    r = sdk(srv.port, {
      { sdk = "v3", op = "ImportKey", input = tr34(block) },                                               -- 0
      { sdk = "v2", op = "GetParametersForExport", input = { KeyMaterialType = "TR34_KEY_BLOCK",
        SigningKeyAlgorithm = "RSA_2048" } },                                                              -- 1
      { sdk = "v3", op = "ExportKey", input = { ExportKeyIdentifier = "$0.Key.KeyArn", KeyMaterial = {
        Tr34KeyBlock = { CertificateAuthorityPublicKeyIdentifier = ca_arn, WrappingKeyCertificate = b64(P.krd_cert),
        ExportToken = "$1.ExportToken", KeyBlockFormat = "X9_TR34_2012", RandomNonce = n2 } } } },        -- 2
      { sdk = "v2", op = "ImportKey", input = tr34(altered) },                                             -- 3
      { sdk = "v3", op = "ImportKey", input = tr34(block, P.rogue_cert) },                                 -- 4
      { sdk = "v2", op = "ImportKey", input = tr34(block, nil, hsm.random(8)) },                           -- 5
    })
    for j = 1, 3 do assert.is_true(r[j].ok, ("step %d: %s"):format(j - 1, cjson.encode(r[j]))) end
    -- the KCV AWS reports for a TDES key: ANSI X9.24 (encrypt zeros, 3 bytes)
    local kcv = hsm.kcv(kek, "ANSI_X9_24")
    assert.same({ kcv, "ANSI_X9_24", "TR31_K0_KEY_ENCRYPTION_KEY", "TDES_3KEY", "EXTERNAL" },
      { r[1].output.Key.KeyCheckValue, r[1].output.Key.KeyCheckValueAlgorithm, r[1].output.Key.KeyAttributes.KeyUsage,
        r[1].output.Key.KeyAttributes.KeyAlgorithm, r[1].output.Key.KeyOrigin })
    local wk = r[3].output.WrappedKey
    assert.same({ "TR34_KEY_BLOCK", kcv }, { wk.WrappedKeyMaterialFormat, wk.KeyCheckValue })
    local key, info = hsm.tr34.unwrap(P.krd_key, wk.KeyMaterial, { kdh_cert = r[2].output.SigningKeyCertificate,
      ca_cert = r[2].output.SigningKeyCertificateChain, krd_cert = P.krd_cert, nonce = n2 })
    assert.is_userdata(key, info)
    assert.equal(kcv, hsm.kcv(key, "ANSI_X9_24"))
    assert.same({ "X9_TR34_2012", "TDES", "K0", "B", "E" }, { info.form, info.cipher, info.usage, info.mode,
      info.exportability })
    key:close()
    kek:close()
    -- refused as AWS refuses them: an altered block, a signer that is not the one that
    -- signed, a stale nonce
    for j, code in pairs { [4] = "TR34_ENVELOPE", [5] = "TR34_SIGNER", [6] = "TR34_NONCE" } do
      assert.equal("ValidationException", r[j].name, cjson.encode(r[j]))
      assert.matches("%(" .. code .. "%)$", r[j].message)
    end
  end)

  it("keeps keys, aliases, tags and states across a restart (sqlite)", function()
    local r = sdk(srv.port, {
      { sdk = "v3", op = "CreateKey", input = { Exportable = true, Tags = { { Key = "a", Value = "1" } },
        KeyAttributes = SYM("TR31_P0_PIN_ENCRYPTION_KEY", "TDES_2KEY", CIPHER) } },
      { sdk = "v3", op = "CreateAlias", input = { AliasName = "alias/durable", KeyArn = "$0.Key.KeyArn" } },
      { sdk = "v3", op = "StopKeyUsage", input = { KeyIdentifier = "alias/durable" } },
    })
    assert.is_true(r[3].ok)
    local before = r[3].output.Key
    srv.stop()
    os.execute("sleep 0.3")
    srv = serve.start("aws", config(db))
    local after = sdk(srv.port, {
      { sdk = "v2", op = "GetKey", input = { KeyIdentifier = "alias/durable" } },
      { sdk = "v2", op = "ListTagsForResource", input = { ResourceArn = before.KeyArn } },
    })
    assert.is_true(after[1].ok)
    assert.equal(before.KeyArn, after[1].output.Key.KeyArn)
    assert.equal(before.KeyCheckValue, after[1].output.Key.KeyCheckValue)
    assert.is_false(after[1].output.Key.Enabled)
    assert.same({ { Key = "a", Value = "1" } }, after[2].output.Tags)
  end)

  it("verifies SigV4 on the data plane's REST paths (key ARN in the path)", function()
    local r = sdk(srv.port, {
      { sdk = "v3", op = "CreateKey", input = { Exportable = true,
        KeyAttributes = SYM("TR31_D0_SYMMETRIC_DATA_ENCRYPTION_KEY", "AES_128", CIPHER) } },
      { sdk = "v2", service = "data", op = "EncryptData", input = { KeyIdentifier = "$0.Key.KeyArn",
        PlainText = "31323334313233343132333431323334", EncryptionAttributes = { Symmetric = { Mode = "ECB" } } } },
      { sdk = "v2", service = "data", op = "VerifyCardValidationData", input = { KeyIdentifier = "alias/cvk",
        PrimaryAccountNumber = "4111111111111111", ValidationData = "123",
        VerificationAttributes = { CardVerificationValue2 = { CardExpiryDate = "1230" } } } },
      { sdk = "v2", service = "data", op = "EncryptData", input = { KeyIdentifier = "$0.Key.KeyArn",
        PlainText = "31323334313233343132333431323334", EncryptionAttributes = { Symmetric = { Mode = "ECB" } } },
        creds = { accessKeyId = KEY_ID, secretAccessKey = "wrong" } },
    })
    assert.is_true(r[1].ok)
    assert.is_true(r[2].ok)
    assert.matches("^%x+$", r[2].output.CipherText)
    assert.equal(32, #r[2].output.CipherText)
    assert.equal("ResourceNotFoundException", r[3].name)
    assert.equal(404, r[3].status)
    assert.equal("InvalidSignatureException", r[4].name)
  end)

  it("validates data-plane requests against AWS's model, and refuses unknown config keys", function()
    local svc = require "payhsm.aws.server"
    assert.has_error(function()
      svc.new { region = "us-east-1", account = "111122223333", credentials = { A = "b" }, regoin = "x" }
    end, "aws: unknown config key 'regoin' (expected one of: account, clock, clock_skew, credentials, listen, log, "
      .. "region, storage_key, storage_key_file, store, throttle, tick_interval, tls)")
    local s = svc.new { region = "us-east-1", account = "111122223333", credentials = { [KEY_ID] = SECRET } }
    local sigv4 = require "payhsm.aws.sigv4"
    local req = sigv4.sign({ method = "POST", path = "/cardvalidationdata/verify", body = "{}",
      headers = { host = "localhost" } }, { access_key = KEY_ID, secret_key = SECRET, region = "us-east-1",
      service = "payment-cryptography" })
    local resp = s:handle(req)
    assert.equal(400, resp.status)
    assert.equal("ValidationException", resp.headers["x-amzn-ErrorType"])
    assert.matches("Value at 'keyIdentifier' failed to satisfy constraint: Member must not be null", resp.body)
  end)
end)
