-- `bin/payhsm serve aws`'s data plane driven over HTTP by the official AWS SDK for
-- JavaScript v2, unpatched, endpoint override (spec/support/aws/sdk.js):
-- AWS.PaymentCryptographyData for the eleven operations its model
-- (payment-cryptography-data-2022-02-03 as aws-sdk 2.1693 ships it) has; the three the
-- current model added since (GenerateMacEmvPinChange, GenerateAs2805KekValidation,
-- TranslateKeyMaterial) as raw requests signed by the same SDK's SigV4 signer
-- (AWS.Signers.V4), since v2 has no method for them. Every VerificationFailedException
-- reason. Keys: the KEK as an RSA-OAEP key cryptogram made by Node's crypto, working keys
-- as TR-31 blocks made here. Expected values as in spec/aws_data_spec.lua ([psec], [pyemv],
-- [FIPS-197], [X9.24], [AWS-AS2805]; sources named there).
local cjson = require "cjson"
local hsm = require "payhsm"
local serve = require "spec.support.serve"
local shapes = require "payhsm.aws.shapes"
require "payhsm.aws.data_shapes"

local KEY_ID, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
local NODE_MODULES = "tools/node/node_modules"
local KEK = "2B7E151628AED2A6ABF7158809CF4F3C"
local K2 = "0123456789ABCDEFFEDCBA9876543210"
local PVK = "FEDCBA98765432100123456789ABCDEF"
local PEK = "89ABCDEF0123456776543210FEDCBA98"
local PAN = "4123456789012345"
local TX = "0000000010000000000000000840000000000840230101005A8CE1B200000000"

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

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

local kek = assert(hsm.key.import("AES_128", KEK, { usage = "K0", mode = "B" }))
local CODE = { C = { "Generate", "Verify" }, B = { "Encrypt", "Decrypt", "Wrap", "Unwrap" }, X = { "DeriveKey" } }
-- ImportKey of a TR-31 block under the KEK (step 2 of the run)
local function tr31(alg, hex, usage, mode)
  local key = assert(hsm.key.import(alg, hex, { usage = usage, mode = mode, exportability = "E" }))
  local block = assert(hsm.tr31.wrap(kek, key, { version = "D" }))
  assert(CODE[mode])
  return { sdk = "v2", op = "ImportKey", input = { KeyMaterial = { Tr31KeyBlock = {
    WrappingKeyIdentifier = "$2.Key.KeyArn", WrappedKeyBlock = block } } } }
end
-- Steps 0-2 of a run (the KEK in as a key cryptogram: RSA-OAEP by Node's crypto under
-- GetParametersForImport's certificate), then `rest` from step 3 on.
local function with_kek(rest)
  local steps = {
    { sdk = "v3", op = "GetParametersForImport", input = { KeyMaterialType = "KEY_CRYPTOGRAM",
      WrappingKeyAlgorithm = "RSA_2048" } },
    { sdk = "node", op = "oaepEncrypt", input = { Certificate = "$0.WrappingKeyCertificate", KeyHex = KEK,
      Hash = "sha256" } },
    { sdk = "v3", op = "ImportKey", input = { KeyMaterial = { KeyCryptogram = { KeyAttributes = {
      KeyUsage = "TR31_K0_KEY_ENCRYPTION_KEY", KeyClass = "SYMMETRIC_KEY", KeyAlgorithm = "AES_128",
      KeyModesOfUse = { Encrypt = true, Decrypt = true, Wrap = true, Unwrap = true } }, Exportable = true,
      WrappedKeyCryptogram = "$1.Cryptogram", ImportToken = "$0.ImportToken" } } } },
  }
  for _, step in ipairs(rest) do steps[#steps + 1] = step end
  return steps
end
local function data(op, input) return { sdk = "v2", service = "data", op = op, input = input } end
local function raw(path, input) return { sdk = "raw", path = path, input = input } end

describe("serve aws data plane with the official AWS SDK for JavaScript", function()
  local dir, srv
  setup(function()
    assert(os.execute("command -v node >/dev/null 2>&1"), "node is required (Debian package nodejs; make deps)")
    assert(read(NODE_MODULES .. "/aws-sdk/package.json"), "aws-sdk v2 is missing: run make deps")
    dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir)
    srv = serve.start("aws", ([[{listen = "127.0.0.1:0", region = "us-east-1", account = "111122223333",
      credentials = {%s = %q}, store = {backend = "sqlite", path = %q},
      storage_key = {algorithm = "AES_256", hex = %q}}]]):format(KEY_ID, SECRET, dir .. "/aws.db",
      ("0123456789ABCDEF"):rep(4)))
  end)
  teardown(function()
    if srv then srv.stop() srv.cleanup() end
    if dir then os.execute("rm -rf " .. dir) end
  end)

  it("has the operations and input members of the v2 SDK's data-plane model", function()
    -- the current model (botocore 1.43's service-2.json, which the shapes come from) made
    -- the PAN optional where a PIN block format carries none (ISO format 1)
    local relaxed = { ["GeneratePinData requires PrimaryAccountNumber"] = true,
      ["VerifyPinData requires PrimaryAccountNumber"] = true }
    local model = cjson.decode(read(NODE_MODULES .. "/aws-sdk/apis/payment-cryptography-data-2022-02-03.min.json"))
    local function walk(ms, ours, path)
      if ms.shape then ms = model.shapes[ms.shape] end
      if ms.type ~= "structure" and ms.members == nil then return end
      assert(ours and ours.members, path)
      for name, m in pairs(ms.members) do
        if m.location ~= "uri" then
          assert(ours.members[name], path .. "." .. name)
          walk(m, ours.members[name], path .. "." .. name)
        end
      end
      for _, r in ipairs(ms.required or {}) do
        if ms.members[r].location ~= "uri" and not relaxed[path .. " requires " .. r] then
          local found = false
          for _, x in ipairs(ours.required or {}) do found = found or x == r end
          assert(found, path .. " requires " .. r)
        end
      end
      assert.equal(ms.union == true, ours.union == true, path)
    end
    local n = 0
    for op, o in pairs(model.operations) do
      n = n + 1
      walk(o.input, shapes.input[op], op)
    end
    assert.equal(11, n)
  end)

  it("answers every data-plane operation and every VerificationFailedException reason", function()
    local arqc = { KeyIdentifier = "$4.Key.KeyArn", TransactionData = TX, AuthRequestCryptogram = "13437BD21D9827D8",
      MajorKeyDerivationMode = "EMV_OPTION_A", SessionKeyDerivationAttributes = { EmvCommon = {
        PrimaryAccountNumber = PAN, PanSequenceNumber = "00", ApplicationTransactionCounter = "0001" } },
      AuthResponseAttributes = { ArpcMethod1 = { AuthResponseCode = "3030" } } }
    local bad_arqc = cjson.decode(cjson.encode(arqc))
    bad_arqc.AuthRequestCryptogram = "13437BD21D9827D9"
    local mac = { KeyIdentifier = "$5.Key.KeyArn", MessageData = "4E6F77206973207468652074696D6520666F7220616C6C20",
      Mac = "A1C72E74EA3FA9B6", VerificationAttributes = { Algorithm = "ISO9797_ALGORITHM3" } }
    local bad_mac = { KeyIdentifier = "$5.Key.KeyArn", MessageData = mac.MessageData, Mac = "A1C72E74EA3FA9B7",
      VerificationAttributes = mac.VerificationAttributes }
    local pin = { VerificationKeyIdentifier = "$6.Key.KeyArn", EncryptionKeyIdentifier = "$7.Key.KeyArn",
      PrimaryAccountNumber = PAN, PinBlockFormat = "ISO_FORMAT_0", EncryptedPinBlock = "31D4BEB2D4BC4E03",
      VerificationAttributes = { VisaPin = { PinVerificationKeyIndex = 1, VerificationValue = "2845" } } }
    local bad_pin = cjson.decode(cjson.encode(pin))
    bad_pin.VerificationAttributes.VisaPin.VerificationValue = "2846"
    local cvv = { KeyIdentifier = "$3.Key.KeyArn", PrimaryAccountNumber = PAN, ValidationData = "636",
      VerificationAttributes = { CardVerificationValue2 = { CardExpiryDate = "8701" } } }
    local bad_cvv = { KeyIdentifier = "$3.Key.KeyArn", PrimaryAccountNumber = PAN, ValidationData = "637",
      VerificationAttributes = cvv.VerificationAttributes }
    local pin_change = { NewPinPekIdentifier = "$7.Key.KeyArn", NewEncryptedPinBlock = "31D4BEB2D4BC4E03",
      PinBlockFormat = "ISO_FORMAT_0", SecureMessagingIntegrityKeyIdentifier = "$9.Key.KeyArn",
      SecureMessagingConfidentialityKeyIdentifier = "$10.Key.KeyArn", MessageData = "8424000210000000",
      DerivationMethodAttributes = { Mastercard = { MajorKeyDerivationMode = "EMV_OPTION_A", PrimaryAccountNumber = PAN,
        PanSequenceNumber = "00", ApplicationCryptogram = "13437BD21D9827D8" } } }
    local r = sdk(srv.port, with_kek {
      tr31("TDES_2KEY", K2, "C0", "C"),                                                                    -- 3 CVK
      tr31("TDES_2KEY", K2, "E0", "X"),                                                                    -- 4 IMK-AC
      tr31("TDES_2KEY", K2, "M3", "C"),                                                                    -- 5
      tr31("TDES_2KEY", PVK, "V2", "C"),                                                                   -- 6 PVK
      tr31("TDES_2KEY", PEK, "P0", "B"),                                                                   -- 7 PEK
      tr31("TDES_2KEY", K2, "B0", "X"),                                                                    -- 8 BDK
      tr31("TDES_2KEY", K2, "E2", "X"),                                                                    -- 9 SMI
      tr31("TDES_2KEY", PVK, "E1", "X"),                                                                   -- 10 SMC
      tr31("TDES_2KEY", K2, "K0", "B"),                                                                    -- 11 KEK
      tr31("AES_128", "000102030405060708090A0B0C0D0E0F", "D0", "B"),                                      -- 12 DEK
      data("EncryptData", { KeyIdentifier = "$12.Key.KeyArn", PlainText = "00112233445566778899AABBCCDDEEFF",
        EncryptionAttributes = { Symmetric = { Mode = "ECB" } } }),                                        -- 13
      data("DecryptData", { KeyIdentifier = "$12.Key.KeyArn", CipherText = "69C4E0D86A7B0430D8CDB78070B4C55A",
        DecryptionAttributes = { Symmetric = { Mode = "ECB" } } }),                                        -- 14
      data("ReEncryptData", { IncomingKeyIdentifier = "$12.Key.KeyArn", OutgoingKeyIdentifier = "$12.Key.KeyArn",
        CipherText = "69C4E0D86A7B0430D8CDB78070B4C55A", IncomingEncryptionAttributes = { Symmetric = { Mode = "ECB" } },
        OutgoingEncryptionAttributes = { Symmetric = { Mode = "ECB" } } }),                                -- 15
      data("GenerateCardValidationData", { KeyIdentifier = "$3.Key.KeyArn", PrimaryAccountNumber = PAN,
        GenerationAttributes = { CardVerificationValue2 = { CardExpiryDate = "8701" } } }),                -- 16
      data("VerifyCardValidationData", cvv),                                                               -- 17
      data("VerifyCardValidationData", bad_cvv),                                                           -- 18
      data("GenerateMac", { KeyIdentifier = "$5.Key.KeyArn", MessageData = mac.MessageData,
        GenerationAttributes = { Algorithm = "ISO9797_ALGORITHM3" } }),                                    -- 19
      data("VerifyMac", mac),                                                                              -- 20
      data("VerifyMac", bad_mac),                                                                          -- 21
      data("GeneratePinData", { GenerationKeyIdentifier = "$6.Key.KeyArn", EncryptionKeyIdentifier = "$7.Key.KeyArn",
        PrimaryAccountNumber = PAN, PinBlockFormat = "ISO_FORMAT_0", GenerationAttributes = {
          VisaPinVerificationValue = { EncryptedPinBlock = "31D4BEB2D4BC4E03", PinVerificationKeyIndex = 1 } } }), -- 22
      data("VerifyPinData", pin),                                                                          -- 23
      data("VerifyPinData", bad_pin),                                                                      -- 24
      data("TranslatePinData", { IncomingKeyIdentifier = "$8.Key.KeyArn", OutgoingKeyIdentifier = "$7.Key.KeyArn",
        EncryptedPinBlock = "1B9C1845EB993A7A", IncomingDukptAttributes = { KeySerialNumber = "FFFF9876543210E00001" },
        IncomingTranslationAttributes = { IsoFormat0 = { PrimaryAccountNumber = "4012345678909" } },
        OutgoingTranslationAttributes = { IsoFormat0 = { PrimaryAccountNumber = "4012345678909" } } }),   -- 25
      data("VerifyAuthRequestCryptogram", arqc),                                                           -- 26
      data("VerifyAuthRequestCryptogram", bad_arqc),                                                       -- 27
      raw("/macemvpinchange/generate", pin_change),                                                        -- 28
      raw("/as2805kekvalidation/generate", { KeyIdentifier = "$11.Key.KeyArn",
        RandomKeySendVariantMask = "VARIANT_MASK_82", KekValidationType = { KekValidationResponse = {
          RandomKeySend = "9217DC67B8763BABCFDF3DADFCD0F84A" } } }),                                    -- 29
      raw("/keymaterial/translate", { IncomingKeyMaterial = { DiffieHellmanTr31KeyBlock = {
        PrivateKeyIdentifier = "alias/x", CertificateAuthorityPublicKeyIdentifier = "alias/y",
        PublicKeyCertificate = "AA", DeriveKeyAlgorithm = "AES_128", KeyDerivationFunction = "NIST_SP800",
        KeyDerivationHashAlgorithm = "SHA_256", DerivationData = { SharedInformation = "00" },
        WrappedKeyBlock = ("A"):rep(56) } }, OutgoingKeyMaterial = { Tr31KeyBlock = {
          WrappingKeyIdentifier = "alias/z" } } }),                                                        -- 30
      raw("/cardvalidationdata/verify", bad_cvv),                                                         -- 31
      raw("/mac/verify", bad_mac),                                                                         -- 32
      raw("/pindata/verify", bad_pin),                                                                     -- 33
      raw("/cryptogram/verify", bad_arqc),                                                                 -- 34
    })
    for i = 1, 17 do assert(r[i].ok, i - 1 .. ": " .. tostring(r[i].message)) end
    assert.equal("69C4E0D86A7B0430D8CDB78070B4C55A", r[14].output.CipherText)        -- [FIPS-197]
    assert.equal("00112233445566778899AABBCCDDEEFF", r[15].output.PlainText)
    assert.equal("69C4E0D86A7B0430D8CDB78070B4C55A", r[16].output.CipherText)
    assert.equal("636", r[17].output.ValidationData)                                   -- [psec]
    assert.is_true(r[18].ok)
    assert.equal(r[4].output.Key.KeyArn, r[18].output.KeyArn)
    assert.equal("A1C72E74EA3FA9B6", r[20].output.Mac)                                 -- [psec]
    assert.is_true(r[21].ok)
    assert.equal("2845", r[23].output.PinData.VerificationValue)                       -- [psec]
    assert.is_true(r[24].ok)
    assert.equal("33358C5F4C389652", r[26].output.PinBlock)                            -- [X9.24], [psec]
    assert.equal("EC3D07BA7E04F151", r[27].output.AuthResponseValue)                   -- [pyemv]
    assert.is_true(r[29].ok, r[29].message)
    assert.equal(16, #r[29].output.EncryptedPinBlock)
    assert.equal("E9C48FAB0A4D69F23C9A3B42F61E9FC9", r[30].output.RandomKeyReceive)    -- [AWS-AS2805]
    assert.equal("ResourceNotFoundException", r[31].name) -- alias/x: the ECDH flows are the next test
    -- the four reasons: the v2 SDK's exception class and status, the body's Reason
    for i, reason in pairs { [19] = "INVALID_VALIDATION_DATA", [22] = "INVALID_MAC", [25] = "INVALID_PIN",
      [28] = "INVALID_AUTH_REQUEST_CRYPTOGRAM" } do
      assert.is_false(r[i].ok)
      assert.equal("VerificationFailedException", r[i].name)
      assert.equal(400, r[i].status)
    end
    for i, reason in pairs { [32] = "INVALID_VALIDATION_DATA", [33] = "INVALID_MAC", [34] = "INVALID_PIN",
      [35] = "INVALID_AUTH_REQUEST_CRYPTOGRAM" } do
      assert.equal("VerificationFailedException", r[i].name)
      assert.equal(reason, r[i].reason)
    end
  end)
  it("runs AWS's ECDH flows: v3 control plane for the keys, SigV4-signed raw requests for the data plane", function()
    local core, util = hsm.core, require "payhsm.util"
    -- the client's certificate authority and key pair (AWS Private CA and the mobile app in
    -- AWS's ecdh_flows sample)
    local ca = core.ec.generate("P-256")
    local root = core.pki.certificate(ca, ca, { subject = "Client CA", issuer = "Client CA", ca = true })
    local client = core.ec.generate("P-256")
    local client_cert = util.b64encode(core.pki.certificate(ca, client, { subject = "app", issuer = "Client CA",
      usage = "agree" }))
    local r1 = sdk(srv.port, with_kek {
      tr31("TDES_2KEY", PEK, "P0", "B"),                                                                   -- 3 PEK
      { sdk = "v3", op = "CreateKey", input = { Exportable = true, KeyAttributes = { KeyAlgorithm = "ECC_NIST_P256",
        KeyClass = "ASYMMETRIC_KEY_PAIR", KeyUsage = "TR31_K3_ASYMMETRIC_KEY_FOR_KEY_AGREEMENT",
        KeyModesOfUse = { DeriveKey = true } } } },                                                         -- 4
      { sdk = "v3", op = "ImportKey", input = { Enabled = true, KeyMaterial = { RootCertificatePublicKey = {
        KeyAttributes = { KeyAlgorithm = "ECC_NIST_P256", KeyClass = "PUBLIC_KEY", KeyModesOfUse = { Verify = true },
          KeyUsage = "TR31_S0_ASYMMETRIC_KEY_FOR_DIGITAL_SIGNATURE" },
        PublicKeyCertificate = util.b64encode(root) } } } },                                              -- 5
      { sdk = "v3", op = "GetPublicKeyCertificate", input = { KeyIdentifier = "$4.Key.KeyArn" } },         -- 6
    })
    for i = 1, 7 do assert(r1[i].ok, i - 1 .. ": " .. tostring(r1[i].message)) end
    local pek_arn, ecdh_arn, ca_arn = r1[4].output.Key.KeyArn, r1[5].output.Key.KeyArn, r1[6].output.Key.KeyArn
    assert.equal("ECC_NIST_P256", r1[5].output.Key.KeyAttributes.KeyAlgorithm)
    local service_pub = assert(core.pki.parse(util.b64decode(r1[7].output.KeyCertificate))).public_key
    local info = hsm.random(32)
    local pin_key = assert(core.ec.derive(client, service_pub, { kdf = "NIST_SP800", hash = "SHA_512",
      algorithm = "AES_128", shared_info = info }))
    local kbpk = assert(core.ec.derive(client, service_pub, { kdf = "ANSI_X963", hash = "SHA_256",
      algorithm = "AES_256", shared_info = "AB12", attrs = { usage = "K1", mode = "B" } }))
    local work = assert(hsm.key.import("AES_128", "000102030405060708090A0B0C0D0E0F", { usage = "D0", mode = "B",
      exportability = "E" }))
    local function dh(extra)
      local t = { PrivateKeyIdentifier = ecdh_arn, CertificateAuthorityPublicKeyIdentifier = ca_arn,
        PublicKeyCertificate = client_cert, DeriveKeyAlgorithm = "AES_256", KeyDerivationFunction = "ANSI_X963",
        KeyDerivationHashAlgorithm = "SHA_256", DerivationData = { SharedInformation = "AB12" } }
      for n, v in pairs(extra or {}) do t[n] = v end
      return t
    end
    local block = assert(hsm.tr31.wrap(kbpk, work, { version = "D" }))
    local r2 = sdk(srv.port, {
      raw("/pindata/translate", { EncryptedPinBlock = hsm.pin.encrypt(pin_key, "ISO_FORMAT_4", "1234", PAN),
        IncomingKeyIdentifier = ecdh_arn, OutgoingKeyIdentifier = pek_arn, IncomingWrappedKey = {
          WrappedKeyMaterial = { DiffieHellmanSymmetricKey = { CertificateAuthorityPublicKeyIdentifier = ca_arn,
            KeyAlgorithm = "AES_128", KeyDerivationFunction = "NIST_SP800", KeyDerivationHashAlgorithm = "SHA_512",
            PublicKeyCertificate = client_cert, SharedInformation = info } } },
        IncomingTranslationAttributes = { IsoFormat4 = { PrimaryAccountNumber = PAN } },
        OutgoingTranslationAttributes = { IsoFormat0 = { PrimaryAccountNumber = PAN } } }),               -- 0
      { sdk = "v3", op = "ImportKey", input = { KeyMaterial = { DiffieHellmanTr31KeyBlock = dh {
        WrappedKeyBlock = block } } } },                                                                    -- 1
      { sdk = "v3", op = "ExportKey", input = { ExportKeyIdentifier = "$1.Key.KeyArn", KeyMaterial = {
        DiffieHellmanTr31KeyBlock = dh() } } },                                                             -- 2
      raw("/keymaterial/translate", { IncomingKeyMaterial = { DiffieHellmanTr31KeyBlock = dh {
        WrappedKeyBlock = block } }, OutgoingKeyMaterial = { Tr31KeyBlock = { WrappingKeyIdentifier = r1[3].output.Key.KeyArn } } }),
    })
    for i = 1, 4 do assert(r2[i].ok, i - 1 .. ": " .. tostring(r2[i].message)) end
    local pek = assert(hsm.key.import("TDES_2KEY", PEK))
    assert.equal("1234", hsm.pin.decrypt(pek, "ISO_FORMAT_0", r2[1].output.PinBlock, PAN))
    assert.equal(hsm.kcv(work, "CMAC"), r2[2].output.Key.KeyCheckValue)
    local back = assert(hsm.tr31.unwrap(kbpk, r2[3].output.WrappedKey.KeyMaterial))
    assert.equal(hsm.kcv(work, "CMAC"), hsm.kcv(back, "CMAC"))
    back = assert(hsm.tr31.unwrap(kek, r2[4].output.WrappedKey.WrappedKeyMaterial))
    assert.equal(hsm.kcv(work, "CMAC"), hsm.kcv(back, "CMAC"))
  end)
end)
