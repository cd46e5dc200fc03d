-- `serve aws`'s data plane (payhsm.aws.data and data_*): every operation of
-- payment-cryptography-data-2022-02-03 through the handler, with signed requests as the
-- SDKs send them (spec/aws_sdk_spec.lua drives the same over HTTP with the official SDK).
-- Keys come in as an issuer brings them: the KEK as an RSA-OAEP key cryptogram, working
-- keys as TR-31 blocks under it.
-- Known answers, each from an independent implementation or a published example:
--   [psec]  psec (github.com/knovichikhin/psec): cvv.generate_cvv, pin.generate_visa_pvv,
--           pinblock.encode_pinblock_iso_0 (+ pyca TDES-ECB), mac.generate_retail_mac and
--           mac.generate_cbc_mac (padding 1), on the keys and data here.
--   [pyemv] pyemv (github.com/knovichikhin/pyemv): kd.derive_icc_mk_a, kd.derive_common_sk,
--           kd.derive_visa_sm_sk; the ARQC as psec's retail MAC over the unpadded data;
--           ac.generate_arpc_1 and ac.generate_arpc_2; the issuer script MAC (padding 2)
--           and TDES-CBC under the session keys (pyca).
--   [pyca]  python3-cryptography: CMAC (NIST SP 800-38B Example 2's key and message gives
--           070A16B4...), HMAC-SHA256.
--   [RFC 4231] HMAC-SHA-224 test case 1.
--   [FIPS-197] Appendix C.1: AES-128 of 00112233..EEFF under 000102..0F = 69C4E0D8...
--   [X9.24] ANSI X9.24-1:2009 Annex A.4's example: BDK 0123456789ABCDEFFEDCBA9876543210,
--           KSN FFFF9876543210E00001, PIN 1234, PAN 4012345678909: PIN block 1B9C1845EB993A7A.
--   [AWS-AS2805-PEK] the per-transaction PIN key of the same repository's
--           as2805_3_1_pin_translation.py (AS2805.6.6.3 OWF over STAN 000438 and amount
--           000000000328), redone with pyca under KPP 0123456789ABCDEFFEDCBA9876543210: the
--           sample's clear block 041010DBDBDBDBDB enciphers to 82B51C4EFEAB13D3.
--   [AWS-AS2805] the AS2805 KEK validation response of AWS's sample logic
--           (aws-samples/samples-for-payment-cryptography-service, python_sdk_example/
--           as2805_node-to-node_examples/as2805_1_5_KEK_Validation.py) on the KEK here.
local ip = require "spec.support.aws.inproc"
local hsm = require "payhsm"

local K2 = "0123456789ABCDEFFEDCBA9876543210"
local PVK = "FEDCBA98765432100123456789ABCDEF"
local PEK = "89ABCDEF0123456776543210FEDCBA98"
local PAN = "4123456789012345"
local TX = "0000000010000000000000000840000000000840230101005A8CE1B200000000"

local svc, kek_arn, kek
local function import(alg, hex, usage, modes) return (ip.import(svc, kek_arn, kek, alg, hex, usage, modes)) end
local GV = { "Generate", "Verify" }
local ED = { "Encrypt", "Decrypt" }
local X = { "DeriveKey" }

local function ok(op, input)
  local out, err = ip.data(svc, op, input)
  assert(out, err and (err.type .. ": " .. tostring(err.message)))
  return out
end
local function refused(op, input, kind, pattern, reason)
  local out, err = ip.data(svc, op, input)
  assert.is_nil(out)
  assert.equal(kind, err.type)
  if pattern then assert.matches(pattern, err.message) end
  if reason then assert.equal(reason, err.reason) end
  return err
end

setup(function()
  svc = ip.service()
  kek_arn, kek = ip.import_kek(svc, "AES_256", ("0123456789ABCDEF"):rep(4))
end)

describe("aws data plane: card validation data", function()
  local cvk
  setup(function() cvk = import("TDES_2KEY", K2, "TR31_C0_CARD_VERIFICATION_KEY", GV) end)
  local function gen(attrs) return ok("GenerateCardValidationData", { KeyIdentifier = cvk, PrimaryAccountNumber = PAN,
    GenerationAttributes = attrs }).ValidationData end
  it("CVV, CVV2 and iCVV [psec]", function()
    assert.equal("561", gen { CardVerificationValue1 = { CardExpiryDate = "8701", ServiceCode = "101" } })
    assert.equal("636", gen { CardVerificationValue2 = { CardExpiryDate = "8701" } })
    assert.equal("651", gen { CardVerificationValue1 = { CardExpiryDate = "8701", ServiceCode = "999" } })
  end)
  it("verifies, and refuses a wrong value with INVALID_VALIDATION_DATA", function()
    local out = ok("VerifyCardValidationData", { KeyIdentifier = cvk, PrimaryAccountNumber = PAN, ValidationData = "636",
      VerificationAttributes = { CardVerificationValue2 = { CardExpiryDate = "8701" } } })
    assert.equal(cvk, out.KeyArn)
    refused("VerifyCardValidationData", { KeyIdentifier = cvk, PrimaryAccountNumber = PAN, ValidationData = "637",
      VerificationAttributes = { CardVerificationValue2 = { CardExpiryDate = "8701" } } },
      "VerificationFailedException", "verification failed", "INVALID_VALIDATION_DATA")
  end)
  it("dCVV and CVC3 under the ICC key of an E6 IMK agree between generate and verify", function()
    local imk = import("TDES_2KEY", K2, "TR31_E6_EMV_MKEY_OTHER", X)
    local attrs = { DynamicCardVerificationValue = { PanSequenceNumber = "00", CardExpiryDate = "8701",
      ServiceCode = "101", ApplicationTransactionCounter = "0001" } }
    local v = ok("GenerateCardValidationData", { KeyIdentifier = imk, PrimaryAccountNumber = PAN,
      GenerationAttributes = attrs }).ValidationData
    assert.matches("^%d%d%d$", v)
    ok("VerifyCardValidationData", { KeyIdentifier = imk, PrimaryAccountNumber = PAN, ValidationData = v,
      VerificationAttributes = attrs })
    local c3 = { DynamicCardVerificationCode = { PanSequenceNumber = "00", UnpredictableNumber = "00000899",
      ApplicationTransactionCounter = "005E", TrackData = "5413339000001513D49121010000000000" } }
    local code = ok("GenerateCardValidationData", { KeyIdentifier = imk, PrimaryAccountNumber = PAN,
      GenerationAttributes = c3, ValidationDataLength = 5 }).ValidationData
    assert.matches("^%d%d%d%d%d$", code)
    ok("VerifyCardValidationData", { KeyIdentifier = imk, PrimaryAccountNumber = PAN, ValidationData = code:sub(-3),
      VerificationAttributes = c3 })
  end)
  it("answers Amex CSC, CardHolderVerificationValue and Discover with ValidationException", function()
    refused("GenerateCardValidationData", { KeyIdentifier = cvk, PrimaryAccountNumber = PAN, GenerationAttributes = {
      AmexCardSecurityCodeVersion1 = { CardExpiryDate = "8701" } } }, "ValidationException", "Amex")
    refused("VerifyCardValidationData", { KeyIdentifier = cvk, PrimaryAccountNumber = PAN, ValidationData = "123",
      VerificationAttributes = { DiscoverDynamicCardVerificationCode = { CardExpiryDate = "8701",
        UnpredictableNumber = "1234", ApplicationTransactionCounter = "01" } } }, "ValidationException", "Discover")
  end)
  it("key usage: a CVV needs TR31_C0, a dCVV TR31_E6; modes Generate / Verify", function()
    local mac = import("TDES_2KEY", K2, "TR31_M3_ISO_9797_3_MAC_KEY", GV)
    refused("GenerateCardValidationData", { KeyIdentifier = mac, PrimaryAccountNumber = PAN, GenerationAttributes = {
      CardVerificationValue2 = { CardExpiryDate = "8701" } } }, "ValidationException", "TR31_C0_CARD_VERIFICATION_KEY")
    local vonly = import("TDES_2KEY", K2, "TR31_C0_CARD_VERIFICATION_KEY", { "Verify" })
    refused("GenerateCardValidationData", { KeyIdentifier = vonly, PrimaryAccountNumber = PAN, GenerationAttributes = {
      CardVerificationValue2 = { CardExpiryDate = "8701" } } }, "ValidationException", "do not include Generate")
    local gonly = import("TDES_2KEY", K2, "TR31_C0_CARD_VERIFICATION_KEY", { "Generate" })
    refused("VerifyCardValidationData", { KeyIdentifier = gonly, PrimaryAccountNumber = PAN, ValidationData = "636",
      VerificationAttributes = { CardVerificationValue2 = { CardExpiryDate = "8701" } } }, "ValidationException",
      "do not include Verify")
    refused("GenerateCardValidationData", { KeyIdentifier = cvk, PrimaryAccountNumber = PAN, GenerationAttributes = {
      DynamicCardVerificationValue = { PanSequenceNumber = "00", CardExpiryDate = "8701", ServiceCode = "101",
        ApplicationTransactionCounter = "0001" } } }, "ValidationException", "TR31_E6_EMV_MKEY_OTHER")
  end)
end)

describe("aws data plane: VerifyAuthRequestCryptogram", function()
  local imk
  setup(function() imk = import("TDES_2KEY", K2, "TR31_E0_EMV_MKEY_APP_CRYPTOGRAMS", X) end)
  local function verify(kind, attrs, arqc, resp)
    local a = { PrimaryAccountNumber = PAN, PanSequenceNumber = "00" }
    for k, v in pairs(attrs) do a[k] = v end
    return ip.data(svc, "VerifyAuthRequestCryptogram", { KeyIdentifier = imk, TransactionData = TX,
      AuthRequestCryptogram = arqc, MajorKeyDerivationMode = "EMV_OPTION_A",
      SessionKeyDerivationAttributes = { [kind] = a }, AuthResponseAttributes = resp })
  end
  it("EmvCommon with ARPC method 1 and 2 [pyemv]", function()
    local out = assert(verify("EmvCommon", { ApplicationTransactionCounter = "0001" }, "13437BD21D9827D8",
      { ArpcMethod1 = { AuthResponseCode = "3030" } }))
    assert.equal("EC3D07BA7E04F151", out.AuthResponseValue)
    out = assert(verify("EmvCommon", { ApplicationTransactionCounter = "0001" }, "13437bd21d9827d8",
      { ArpcMethod2 = { CardStatusUpdate = "03900000", ProprietaryAuthenticationData = "0102" } }))
    assert.equal("97B7E8B8", out.AuthResponseValue)
    assert.equal(imk, out.KeyArn)
  end)
  it("Mastercard, Emv2000 (H 8, b 4, zero IV), Visa and Amex (the ICC master key) [pyemv]", function()
    assert(verify("Mastercard", { ApplicationTransactionCounter = "0001", UnpredictableNumber = "12345678" },
      "5376ED1CE740530D"))
    assert(verify("Emv2000", { ApplicationTransactionCounter = "0001" }, "EF542601B4340B40"))
    assert(verify("Visa", {}, "FAEBF3409B03B8A3"))
    assert(verify("Amex", {}, "FAEBF3409B03B8A3"))
    local _, err = verify("Mastercard", { ApplicationTransactionCounter = "0001", UnpredictableNumber = "12345679" },
      "5376ED1CE740530D")
    assert.equal("INVALID_AUTH_REQUEST_CRYPTOGRAM", err.reason)
  end)
  it("a wrong ARQC: INVALID_AUTH_REQUEST_CRYPTOGRAM", function()
    local _, err = verify("EmvCommon", { ApplicationTransactionCounter = "0002" }, "13437BD21D9827D8")
    assert.equal("VerificationFailedException", err.type)
    assert.equal("INVALID_AUTH_REQUEST_CRYPTOGRAM", err.reason)
    assert.equal(400, err.status)
  end)
  it("does not pad the transaction data", function()
    refused("VerifyAuthRequestCryptogram", { KeyIdentifier = imk, TransactionData = TX:sub(1, 60),
      AuthRequestCryptogram = "13437BD21D9827D8", MajorKeyDerivationMode = "EMV_OPTION_A",
      SessionKeyDerivationAttributes = { EmvCommon = { PrimaryAccountNumber = PAN, PanSequenceNumber = "00",
        ApplicationTransactionCounter = "0001" } } }, "ValidationException", "does not pad")
  end)
  it("key usage: TR31_E0 with DeriveKey", function()
    local e6 = import("TDES_2KEY", K2, "TR31_E6_EMV_MKEY_OTHER", X)
    refused("VerifyAuthRequestCryptogram", { KeyIdentifier = e6, TransactionData = TX,
      AuthRequestCryptogram = "13437BD21D9827D8", MajorKeyDerivationMode = "EMV_OPTION_A",
      SessionKeyDerivationAttributes = { Visa = { PrimaryAccountNumber = PAN, PanSequenceNumber = "00" } } },
      "ValidationException", "TR31_E0_EMV_MKEY_APP_CRYPTOGRAMS")
  end)
end)

describe("aws data plane: MACs", function()
  local M = "4E6F77206973207468652074696D6520666F7220616C6C20"
  it("ISO 9797-1 algorithms 1 and 3 [psec], CMAC and HMAC [pyca]", function()
    local m1 = import("TDES_2KEY", K2, "TR31_M1_ISO_9797_1_MAC_KEY", GV)
    local m3 = import("TDES_2KEY", K2, "TR31_M3_ISO_9797_3_MAC_KEY", GV)
    local m6 = import("AES_128", "2B7E151628AED2A6ABF7158809CF4F3C", "TR31_M6_ISO_9797_5_CMAC_KEY", GV)
    local m7 = import("HMAC_SHA256", "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
      "TR31_M7_HMAC_KEY", GV)
    local function mac(k, alg, data, len) return ok("GenerateMac", { KeyIdentifier = k, MessageData = data,
      GenerationAttributes = { Algorithm = alg }, MacLength = len }).Mac end
    assert.equal("93462A6DB9B4A4D1", mac(m1, "ISO9797_ALGORITHM1", M))
    assert.equal("A1C72E74EA3FA9B6", mac(m3, "ISO9797_ALGORITHM3", M))
    assert.equal("A1C72E74", mac(m3, "ISO9797_ALGORITHM3", M, 4))
    assert.equal("070A16B46B4D4144F79BDD9DD04A287C", mac(m6, "CMAC", "6BC1BEE22E409F96E93D7E117393172A"))
    assert.equal("CFD94B13A91450BABCDCEBFBBD4C2D43B16E2B6C58CE34FFC62CE1FD1A585534", mac(m7, "HMAC_SHA256", M))
    -- [RFC 4231] test case 1, HMAC-SHA-224
    local m224 = import("HMAC_SHA224", ("0B"):rep(20), "TR31_M7_HMAC_KEY", GV)
    assert.equal("896FB1128ABBDF196832107CD49DF33F47B4B1169912BA4F53684B22", mac(m224, "HMAC_SHA224", "4869205468657265"))
    ok("VerifyMac", { KeyIdentifier = m3, MessageData = M, Mac = "A1C72E74EA3FA9B6",
      VerificationAttributes = { Algorithm = "ISO9797_ALGORITHM3" } })
    refused("VerifyMac", { KeyIdentifier = m3, MessageData = M, Mac = "A1C72E74EA3FA9B7",
      VerificationAttributes = { Algorithm = "ISO9797_ALGORITHM3" } }, "VerificationFailedException", nil, "INVALID_MAC")
    refused("GenerateMac", { KeyIdentifier = m1, MessageData = M, GenerationAttributes = {
      Algorithm = "ISO9797_ALGORITHM3" } }, "ValidationException", "TR31_M3_ISO_9797_3_MAC_KEY")
    refused("GenerateMac", { KeyIdentifier = m7, MessageData = M, GenerationAttributes = { Algorithm = "HMAC_SHA512" } },
      "ValidationException", "HMAC_SHA512 key")
    local vonly = import("TDES_2KEY", K2, "TR31_M3_ISO_9797_3_MAC_KEY", { "Verify" })
    refused("GenerateMac", { KeyIdentifier = vonly, MessageData = M, GenerationAttributes = {
      Algorithm = "ISO9797_ALGORITHM3" } }, "ValidationException", "do not include Generate")
    refused("GenerateMac", { KeyIdentifier = m3, MessageData = M, GenerationAttributes = { Algorithm = "AS2805_4_1" } },
      "ValidationException", "AS2805_4_1")
  end)
  it("EmvMac: the issuer script MAC under SK-SMI [pyemv]", function()
    local smi = import("TDES_2KEY", K2, "TR31_E2_EMV_MKEY_INTEGRITY", X)
    local function emv(mode, value) return ok("GenerateMac", { KeyIdentifier = smi, MessageData = "8424000210",
      GenerationAttributes = { EmvMac = { MajorKeyDerivationMode = "EMV_OPTION_A", PrimaryAccountNumber = PAN,
        PanSequenceNumber = "00", SessionKeyDerivationMode = mode, SessionKeyDerivationValue = value } } }).Mac end
    assert.equal("5D194FC20E9BB6B4", emv("EMV_COMMON_SESSION_KEY", { ApplicationCryptogram = "13437BD21D9827D8" }))
    assert.equal("726822128D5CF25B", emv("VISA", { ApplicationTransactionCounter = "0001" }))
  end)
  it("DUKPT MACs: generate and verify agree; a BDK is required", function()
    local bdk = import("TDES_2KEY", K2, "TR31_B0_BASE_DERIVATION_KEY", X)
    for _, kind in ipairs { "DukptIso9797Algorithm1", "DukptIso9797Algorithm3", "DukptCmac" } do
      local attrs = { [kind] = { KeySerialNumber = "FFFF9876543210E00001", DukptKeyVariant = "REQUEST" } }
      local mac = ok("GenerateMac", { KeyIdentifier = bdk, MessageData = M, GenerationAttributes = attrs }).Mac
      ok("VerifyMac", { KeyIdentifier = bdk, MessageData = M, Mac = mac, VerificationAttributes = attrs })
      attrs[kind].DukptKeyVariant = "RESPONSE"
      refused("VerifyMac", { KeyIdentifier = bdk, MessageData = M, Mac = mac, VerificationAttributes = attrs },
        "VerificationFailedException", nil, "INVALID_MAC")
    end
  end)
end)

describe("aws data plane: PINs", function()
  local pvk, pek
  setup(function()
    pvk = import("TDES_2KEY", PVK, "TR31_V2_VISA_PIN_VERIFICATION_KEY", GV)
    pek = import("TDES_2KEY", PEK, "TR31_P0_PIN_ENCRYPTION_KEY", ED)
  end)
  it("Visa PVV of a PIN block [psec]; VerifyPinData and INVALID_PIN", function()
    local out = ok("GeneratePinData", { GenerationKeyIdentifier = pvk, EncryptionKeyIdentifier = pek,
      PrimaryAccountNumber = PAN, PinBlockFormat = "ISO_FORMAT_0",
      GenerationAttributes = { VisaPinVerificationValue = { EncryptedPinBlock = "31D4BEB2D4BC4E03",
        PinVerificationKeyIndex = 1 } } })
    assert.equal("2845", out.PinData.VerificationValue)
    ok("VerifyPinData", { VerificationKeyIdentifier = pvk, EncryptionKeyIdentifier = pek, PrimaryAccountNumber = PAN,
      PinBlockFormat = "ISO_FORMAT_0", EncryptedPinBlock = "31D4BEB2D4BC4E03",
      VerificationAttributes = { VisaPin = { PinVerificationKeyIndex = 1, VerificationValue = "2845" } } })
    refused("VerifyPinData", { VerificationKeyIdentifier = pvk, EncryptionKeyIdentifier = pek, PrimaryAccountNumber = PAN,
      PinBlockFormat = "ISO_FORMAT_0", EncryptedPinBlock = "31D4BEB2D4BC4E03",
      VerificationAttributes = { VisaPin = { PinVerificationKeyIndex = 1, VerificationValue = "2846" } } },
      "VerificationFailedException", nil, "INVALID_PIN")
  end)
  it("a random Visa PIN verifies against its PVV", function()
    local out = ok("GeneratePinData", { GenerationKeyIdentifier = pvk, EncryptionKeyIdentifier = pek,
      PrimaryAccountNumber = PAN, PinBlockFormat = "ISO_FORMAT_0", PinDataLength = 4,
      GenerationAttributes = { VisaPin = { PinVerificationKeyIndex = 1 } } })
    ok("VerifyPinData", { VerificationKeyIdentifier = pvk, EncryptionKeyIdentifier = pek, PrimaryAccountNumber = PAN,
      PinBlockFormat = "ISO_FORMAT_0", EncryptedPinBlock = out.EncryptedPinBlock,
      VerificationAttributes = { VisaPin = { PinVerificationKeyIndex = 1, VerificationValue = out.PinData.VerificationValue } } })
  end)
  it("IBM 3624: natural PIN, offset, verification", function()
    local v1 = import("TDES_2KEY", PVK, "TR31_V1_IBM3624_PIN_VERIFICATION_KEY", GV)
    local ibm = { DecimalizationTable = "0123456789012345", PinValidationDataPadCharacter = "F",
      PinValidationData = "412345678901" }
    local out = ok("GeneratePinData", { GenerationKeyIdentifier = v1, EncryptionKeyIdentifier = pek,
      PrimaryAccountNumber = PAN, PinBlockFormat = "ISO_FORMAT_0", GenerationAttributes = { Ibm3624NaturalPin = ibm } })
    assert.equal("0000", out.PinData.PinOffset)
    local v = { PinOffset = "0000" }
    for k, x in pairs(ibm) do v[k] = x end
    ok("VerifyPinData", { VerificationKeyIdentifier = v1, EncryptionKeyIdentifier = pek, PrimaryAccountNumber = PAN,
      PinBlockFormat = "ISO_FORMAT_0", EncryptedPinBlock = out.EncryptedPinBlock,
      VerificationAttributes = { Ibm3624Pin = v } })
    refused("VerifyPinData", { VerificationKeyIdentifier = pvk, EncryptionKeyIdentifier = pek, PrimaryAccountNumber = PAN,
      PinBlockFormat = "ISO_FORMAT_0", EncryptedPinBlock = out.EncryptedPinBlock,
      VerificationAttributes = { Ibm3624Pin = v } }, "ValidationException", "TR31_V1_IBM3624_PIN_VERIFICATION_KEY")
  end)
  it("TranslatePinData: DUKPT in [X9.24] to ISO 0 under a PEK [psec], and back out by DUKPT", function()
    local bdk = import("TDES_2KEY", K2, "TR31_B0_BASE_DERIVATION_KEY", X)
    local out = ok("TranslatePinData", { IncomingKeyIdentifier = bdk, OutgoingKeyIdentifier = pek,
      EncryptedPinBlock = "1B9C1845EB993A7A", IncomingDukptAttributes = { KeySerialNumber = "FFFF9876543210E00001" },
      IncomingTranslationAttributes = { IsoFormat0 = { PrimaryAccountNumber = "4012345678909" } },
      OutgoingTranslationAttributes = { IsoFormat0 = { PrimaryAccountNumber = "4012345678909" } } })
    assert.equal("33358C5F4C389652", out.PinBlock)
    assert.equal(pek, out.KeyArn)
    out = ok("TranslatePinData", { IncomingKeyIdentifier = pek, OutgoingKeyIdentifier = bdk,
      EncryptedPinBlock = "33358C5F4C389652", OutgoingDukptAttributes = { KeySerialNumber = "FFFF9876543210E00001" },
      IncomingTranslationAttributes = { IsoFormat0 = { PrimaryAccountNumber = "4012345678909" } },
      OutgoingTranslationAttributes = { IsoFormat0 = { PrimaryAccountNumber = "4012345678909" } } })
    assert.equal("1B9C1845EB993A7A", out.PinBlock)
  end)
  it("TranslatePinData with IncomingAs2805Attributes: the block is under the AS2805 KPE [AWS-AS2805-PEK]", function()
    local kpp = import("TDES_2KEY", "0123456789ABCDEFFEDCBA9876543210", "TR31_P0_PIN_ENCRYPTION_KEY", ED)
    local pek = import("TDES_2KEY", PEK, "TR31_P0_PIN_ENCRYPTION_KEY", ED)
    local input = { IncomingKeyIdentifier = kpp, OutgoingKeyIdentifier = pek, EncryptedPinBlock = "82B51C4EFEAB13D3",
      IncomingAs2805Attributes = { SystemTraceAuditNumber = "000438", TransactionAmount = "000000000328" },
      IncomingTranslationAttributes = { IsoFormat0 = { PrimaryAccountNumber = "4242424242424242" } },
      OutgoingTranslationAttributes = { IsoFormat0 = { PrimaryAccountNumber = "4242424242424242" } } }
    local out = ok("TranslatePinData", input)
    assert.equal("1034", hsm.pin.decrypt(hsm.key.import("TDES_2KEY", PEK), "ISO_FORMAT_0", out.PinBlock,
      "4242424242424242"))
    -- the clear block is the sample's own: the translation is the identity on it
    assert.equal("041010DBDBDBDBDB", hsm.cipher.decrypt(hsm.key.import("TDES_2KEY", PEK), "ECB", out.PinBlock))
    input.IncomingAs2805Attributes.TransactionAmount = "000000000329"
    refused("TranslatePinData", input, "ValidationException")
  end)
  it("TranslatePinData between formats 0, 3 and 4 returns the same PIN; never to format 1", function()
    local aes = import("AES_128", "000102030405060708090A0B0C0D0E0F", "TR31_P0_PIN_ENCRYPTION_KEY", ED)
    local function tr(from, to, fk, tk, block)
      return ok("TranslatePinData", { IncomingKeyIdentifier = fk, OutgoingKeyIdentifier = tk, EncryptedPinBlock = block,
        IncomingTranslationAttributes = { [from] = from ~= "IsoFormat1" and { PrimaryAccountNumber = PAN } or {} },
        OutgoingTranslationAttributes = { [to] = to ~= "IsoFormat1" and { PrimaryAccountNumber = PAN } or {} } }).PinBlock
    end
    local b4 = tr("IsoFormat0", "IsoFormat4", pek, aes, "31D4BEB2D4BC4E03")
    local b3 = tr("IsoFormat4", "IsoFormat3", aes, pek, b4)
    assert.equal("31D4BEB2D4BC4E03", tr("IsoFormat3", "IsoFormat0", pek, pek, b3))
    refused("TranslatePinData", { IncomingKeyIdentifier = pek, OutgoingKeyIdentifier = pek, EncryptedPinBlock = b3,
      IncomingTranslationAttributes = { IsoFormat3 = { PrimaryAccountNumber = PAN } },
      OutgoingTranslationAttributes = { IsoFormat1 = {} } }, "ValidationException", "no longer be bound")
  end)
  it("key usage: a PEK must be TR31_P0 (or a BDK with DUKPT attributes)", function()
    refused("TranslatePinData", { IncomingKeyIdentifier = pvk, OutgoingKeyIdentifier = pek,
      EncryptedPinBlock = "31D4BEB2D4BC4E03", IncomingTranslationAttributes = { IsoFormat0 = { PrimaryAccountNumber = PAN } },
      OutgoingTranslationAttributes = { IsoFormat0 = { PrimaryAccountNumber = PAN } } }, "ValidationException",
      "TR31_P0_PIN_ENCRYPTION_KEY")
    refused("TranslatePinData", { IncomingKeyIdentifier = pek, OutgoingKeyIdentifier = pek,
      EncryptedPinBlock = "31D4BEB2D4BC4E03", IncomingDukptAttributes = { KeySerialNumber = "FFFF9876543210E00001" },
      IncomingTranslationAttributes = { IsoFormat0 = { PrimaryAccountNumber = PAN } },
      OutgoingTranslationAttributes = { IsoFormat0 = { PrimaryAccountNumber = PAN } } }, "ValidationException",
      "TR31_B0_BASE_DERIVATION_KEY")
  end)
end)

describe("aws data plane: encryption", function()
  it("Symmetric AES ECB [FIPS-197], CBC round trip, ReEncryptData", function()
    local dek = import("AES_128", "000102030405060708090A0B0C0D0E0F", "TR31_D0_SYMMETRIC_DATA_ENCRYPTION_KEY", ED)
    local ct = ok("EncryptData", { KeyIdentifier = dek, PlainText = "00112233445566778899AABBCCDDEEFF",
      EncryptionAttributes = { Symmetric = { Mode = "ECB" } } }).CipherText
    assert.equal("69C4E0D86A7B0430D8CDB78070B4C55A", ct)
    local dek2 = import("TDES_2KEY", K2, "TR31_D0_SYMMETRIC_DATA_ENCRYPTION_KEY", ED)
    local re = ok("ReEncryptData", { IncomingKeyIdentifier = dek, OutgoingKeyIdentifier = dek2, CipherText = ct,
      IncomingEncryptionAttributes = { Symmetric = { Mode = "ECB" } },
      OutgoingEncryptionAttributes = { Symmetric = { Mode = "CBC", InitializationVector = "0102030405060708" } } })
    assert.equal(dek2, re.KeyArn)
    local pt = ok("DecryptData", { KeyIdentifier = dek2, CipherText = re.CipherText,
      DecryptionAttributes = { Symmetric = { Mode = "CBC", InitializationVector = "0102030405060708" } } }).PlainText
    assert.equal("00112233445566778899AABBCCDDEEFF", pt)
    refused("EncryptData", { KeyIdentifier = dek, PlainText = "0011", EncryptionAttributes = {
      Symmetric = { Mode = "ECB" } } }, "ValidationException", "multiple of 16")
    refused("EncryptData", { KeyIdentifier = dek, PlainText = "00112233445566778899AABBCCDDEEFF",
      EncryptionAttributes = { Symmetric = { Mode = "CFB64" } } }, "ValidationException", "no CFB64 mode")
  end)
  it("Symmetric CFB1, CFB8, CFB128 and OFB [SP 800-38A F.3.1, F.3.7, F.3.13, F.4.1], TDES CFB64 [pyca]", function()
    local dek = import("AES_128", "2B7E151628AED2A6ABF7158809CF4F3C", "TR31_D0_SYMMETRIC_DATA_ENCRYPTION_KEY", ED)
    local iv = "000102030405060708090A0B0C0D0E0F"
    for _, v in ipairs { { "CFB1", "6BC1", "68B3" }, { "CFB8", "6BC1BEE22E409F96E93D7E117393172AAE2D",
      "3B79424C9C0DD436BACE9E0ED4586A4F32B9" }, { "CFB128", "6BC1BEE22E409F96E93D7E117393172A",
      "3B3FD92EB72DAD20333449F8E83CFB4A" }, { "CFB", "6BC1BEE22E409F96E93D7E117393172A",
      "3B3FD92EB72DAD20333449F8E83CFB4A" }, { "OFB", "6BC1BEE22E409F96E93D7E117393172AAE2D8A571E03AC9C9EB76FAC45AF8E51",
      "3B3FD92EB72DAD20333449F8E83CFB4A7789508D16918F03F53C52DAC54ED825" } } do
      local attrs = { Symmetric = { Mode = v[1], InitializationVector = iv } }
      assert.equal(v[3], ok("EncryptData", { KeyIdentifier = dek, PlainText = v[2], EncryptionAttributes = attrs })
        .CipherText, v[1])
      assert.equal(v[2], ok("DecryptData", { KeyIdentifier = dek, CipherText = v[3], DecryptionAttributes = attrs })
        .PlainText)
    end
    local tdes = import("TDES_2KEY", K2, "TR31_D0_SYMMETRIC_DATA_ENCRYPTION_KEY", ED)
    assert.equal("09F180E1858D44D84E4421F76F47E1082F619C22461DEF7D", ok("EncryptData", { KeyIdentifier = tdes,
      PlainText = "4E6F77206973207468652074696D6520666F7220616C6C20", EncryptionAttributes = { Symmetric = {
        Mode = "CFB64", InitializationVector = "1234567890ABCDEF" } } }).CipherText)
  end)
  it("Emv: the SM confidentiality session key [pyemv]; Dukpt round trip; Asymmetric answers", function()
    local smc = import("TDES_2KEY", K2, "TR31_E1_EMV_MKEY_CONFIDENTIALITY", X)
    local out = ok("EncryptData", { KeyIdentifier = smc, PlainText = "00112233445566778899AABBCCDDEEFF",
      EncryptionAttributes = { Emv = { MajorKeyDerivationMode = "EMV_OPTION_A", PrimaryAccountNumber = PAN,
        PanSequenceNumber = "00", SessionDerivationData = "0001000000000000", Mode = "CBC" } } })
    assert.equal("A228269BD871B609DDF2454E822716E1", out.CipherText)
    local bdk = import("AES_128", "FEDCBA9876543210F1F1F1F1F1F1F1F1", "TR31_B0_BASE_DERIVATION_KEY", X)
    local attrs = { Dukpt = { KeySerialNumber = "123456789012345600000001", Mode = "CBC" } }
    local ct = ok("EncryptData", { KeyIdentifier = bdk, PlainText = "00112233445566778899AABBCCDDEEFF",
      EncryptionAttributes = attrs }).CipherText
    assert.equal("00112233445566778899AABBCCDDEEFF", ok("DecryptData", { KeyIdentifier = bdk, CipherText = ct,
      DecryptionAttributes = attrs }).PlainText)
    refused("EncryptData", { KeyIdentifier = bdk, PlainText = "0011", EncryptionAttributes = { Asymmetric = {} } },
      "ValidationException", "TR31_D1")
  end)
  it("Asymmetric RSA: openssl encrypts under the key's certificate, DecryptData opens it [openssl]; "
    .. "EncryptData/DecryptData round trips for each PaddingType", function()
    local pair = assert(ip.control(svc, "CreateKey", { Exportable = false, KeyAttributes = {
      KeyUsage = "TR31_D1_ASYMMETRIC_KEY_FOR_DATA_ENCRYPTION", KeyClass = "ASYMMETRIC_KEY_PAIR",
      KeyAlgorithm = "RSA_2048", KeyModesOfUse = { Encrypt = true, Decrypt = true, Wrap = true, Unwrap = true } } })).Key.KeyArn
    local cert = assert(ip.control(svc, "GetPublicKeyCertificate", { KeyIdentifier = pair })).KeyCertificate
    local dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. dir)
    local f = assert(io.open(dir .. "/cert.pem", "w"))
    f:write(require("payhsm.util").b64decode(cert))
    f:close()
    local msg = "4111111111111111D2512101"
    local bin = msg:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end)
    f = assert(io.open(dir .. "/msg.bin", "wb"))
    f:write(bin)
    f:close()
    -- the openssl command line as the independent side: OAEP with SHA-256 (label hash and MGF1)
    assert(os.execute(("openssl x509 -in %s/cert.pem -pubkey -noout > %s/pub.pem && openssl pkeyutl -encrypt -pubin "
      .. "-inkey %s/pub.pem -pkeyopt rsa_padding_mode:oaep -pkeyopt rsa_oaep_md:sha256 -pkeyopt rsa_mgf1_md:sha256 "
      .. "-in %s/msg.bin -out %s/ct.bin"):format(dir, dir, dir, dir, dir)))
    f = assert(io.open(dir .. "/ct.bin", "rb"))
    local ct = f:read("*a"):gsub(".", function(c) return ("%02X"):format(c:byte()) end)
    f:close()
    os.execute("rm -rf " .. dir)
    assert.equal(msg, ok("DecryptData", { KeyIdentifier = pair, CipherText = ct,
      DecryptionAttributes = { Asymmetric = { PaddingType = "OAEP_SHA256" } } }).PlainText)
    for _, pad in ipairs { "PKCS1", "OAEP_SHA1", "OAEP_SHA256", "OAEP_SHA512" } do
      local attrs = { Asymmetric = { PaddingType = pad } }
      local c = ok("EncryptData", { KeyIdentifier = pair, PlainText = msg, EncryptionAttributes = attrs }).CipherText
      assert.equal(512, #c)
      assert.equal(msg, ok("DecryptData", { KeyIdentifier = pair, CipherText = c, DecryptionAttributes = attrs }).PlainText)
    end
    -- the wrong padding, an altered ciphertext, data longer than the key and padding allow
    local c = ok("EncryptData", { KeyIdentifier = pair, PlainText = msg,
      EncryptionAttributes = { Asymmetric = { PaddingType = "OAEP_SHA256" } } }).CipherText
    refused("DecryptData", { KeyIdentifier = pair, CipherText = c, DecryptionAttributes = { Asymmetric = {
      PaddingType = "OAEP_SHA512" } } }, "ValidationException", "does not decrypt")
    refused("DecryptData", { KeyIdentifier = pair, CipherText = ("00"):rep(255) .. "01", DecryptionAttributes = {
      Asymmetric = { PaddingType = "OAEP_SHA256" } } }, "ValidationException", "does not decrypt")
    refused("EncryptData", { KeyIdentifier = pair, PlainText = ("00"):rep(250), EncryptionAttributes = { Asymmetric = {
      PaddingType = "OAEP_SHA512" } } }, "ValidationException", "do not fit")
    -- a symmetric data key is refused for Asymmetric, an RSA key for Symmetric
    refused("EncryptData", { KeyIdentifier = pair, PlainText = msg, EncryptionAttributes = { Symmetric = { Mode = "ECB" } } },
      "ValidationException", "TR31_D0")
  end)
  it("key usage: Symmetric needs TR31_D0 with Encrypt / Decrypt", function()
    local eonly = import("AES_128", "000102030405060708090A0B0C0D0E0F", "TR31_D0_SYMMETRIC_DATA_ENCRYPTION_KEY",
      { "Encrypt" })
    refused("DecryptData", { KeyIdentifier = eonly, CipherText = "69C4E0D86A7B0430D8CDB78070B4C55A",
      DecryptionAttributes = { Symmetric = { Mode = "ECB" } } }, "ValidationException", "do not include Decrypt")
    refused("EncryptData", { KeyIdentifier = kek_arn, PlainText = "00112233445566778899AABBCCDDEEFF",
      EncryptionAttributes = { Symmetric = { Mode = "ECB" } } }, "ValidationException",
      "TR31_D0_SYMMETRIC_DATA_ENCRYPTION_KEY")
  end)
end)

describe("aws data plane: operations the v2 SDK predates", function()
  it("GenerateAs2805KekValidation response [AWS-AS2805] and request", function()
    local k = import("TDES_2KEY", K2, "TR31_K0_KEY_ENCRYPTION_KEY", ED)
    local out = ok("GenerateAs2805KekValidation", { KeyIdentifier = k, RandomKeySendVariantMask = "VARIANT_MASK_82",
      KekValidationType = { KekValidationResponse = { RandomKeySend = "9217DC67B8763BABCFDF3DADFCD0F84A" } } })
    assert.equal("E9C48FAB0A4D69F23C9A3B42F61E9FC9", out.RandomKeyReceive)
    out = ok("GenerateAs2805KekValidation", { KeyIdentifier = k, RandomKeySendVariantMask = "VARIANT_MASK_82",
      KekValidationType = { KekValidationRequest = { DeriveKeyAlgorithm = "TDES_2KEY" } } })
    local back = ok("GenerateAs2805KekValidation", { KeyIdentifier = k, RandomKeySendVariantMask = "VARIANT_MASK_82",
      KekValidationType = { KekValidationResponse = { RandomKeySend = out.RandomKeySend } } })
    assert.equal(out.RandomKeyReceive, back.RandomKeyReceive)
  end)
  it("GenerateMacEmvPinChange (Mastercard) and its key usage", function()
    local smi = import("TDES_2KEY", K2, "TR31_E2_EMV_MKEY_INTEGRITY", X)
    local smc = import("TDES_2KEY", PVK, "TR31_E1_EMV_MKEY_CONFIDENTIALITY", X)
    local pek = import("TDES_2KEY", PEK, "TR31_P0_PIN_ENCRYPTION_KEY", ED)
    local input = { NewPinPekIdentifier = pek, NewEncryptedPinBlock = "31D4BEB2D4BC4E03", PinBlockFormat = "ISO_FORMAT_0",
      SecureMessagingIntegrityKeyIdentifier = smi, SecureMessagingConfidentialityKeyIdentifier = smc,
      MessageData = "8424000210000000", DerivationMethodAttributes = { Mastercard = { MajorKeyDerivationMode =
        "EMV_OPTION_A", PrimaryAccountNumber = PAN, PanSequenceNumber = "00", ApplicationCryptogram = "13437BD21D9827D8" } } }
    local out = ok("GenerateMacEmvPinChange", input)
    assert.matches("^%x+$", out.Mac)
    assert.equal(16, #out.EncryptedPinBlock)
    assert.equal(pek, out.NewPinPekArn)
    input.SecureMessagingIntegrityKeyIdentifier = smc
    refused("GenerateMacEmvPinChange", input, "ValidationException", "TR31_E2_EMV_MKEY_INTEGRITY")
  end)
  it("TranslateKeyMaterial names a key it does not know (its ECDH flows: spec/aws_ecdh_spec.lua)", function()
    local _, err = ip.data(svc, "TranslateKeyMaterial", { IncomingKeyMaterial = { DiffieHellmanTr31KeyBlock = {
      PrivateKeyIdentifier = "alias/x", CertificateAuthorityPublicKeyIdentifier = "alias/y", PublicKeyCertificate = "AA",
      DeriveKeyAlgorithm = "AES_128", KeyDerivationFunction = "NIST_SP800", KeyDerivationHashAlgorithm = "SHA_256",
      DerivationData = { SharedInformation = "00" }, WrappedKeyBlock = ("A"):rep(56) } },
      OutgoingKeyMaterial = { Tr31KeyBlock = { WrappingKeyIdentifier = "alias/z" } } })
    assert.equal("ResourceNotFoundException", err.type)
    assert.matches("alias/x", err.message)
  end)
end)

describe("aws data plane: requests", function()
  it("validates against AWS's model, names unknown and stopped keys", function()
    refused("GenerateMac", { KeyIdentifier = "alias/none", MessageData = "0", GenerationAttributes = {
      Algorithm = "CMAC" } }, "ValidationException", "'messageData'")
    local err = refused("GenerateMac", { KeyIdentifier = "alias/none", MessageData = "00", GenerationAttributes = {
      Algorithm = "CMAC" } }, "ResourceNotFoundException")
    assert.equal(404, err.status)
    local m = import("TDES_2KEY", K2, "TR31_M3_ISO_9797_3_MAC_KEY", GV)
    assert(ip.control(svc, "StopKeyUsage", { KeyIdentifier = m }))
    refused("GenerateMac", { KeyIdentifier = m, MessageData = "00", GenerationAttributes = {
      Algorithm = "ISO9797_ALGORITHM3" } }, "ValidationException", "disabled")
  end)
end)

-- AWS's user guide, "Valid keys for cryptographic operations" (key usage per operation and
-- attribute kind): each row offers a key of another usage and expects the refusal to name
-- the usage the operation takes.
describe("aws data plane: key usage per operation", function()
  local other, M = nil, "00112233445566778899AABBCCDDEEFF"
  setup(function() other = import("TDES_2KEY", K2, "TR31_M1_ISO_9797_1_MAC_KEY", GV) end)
  local function dukpt() return { KeySerialNumber = "FFFF9876543210E00001", DukptKeyVariant = "REQUEST" } end
  local emv = { MajorKeyDerivationMode = "EMV_OPTION_A", PrimaryAccountNumber = PAN, PanSequenceNumber = "00" }
  local function with(t, extra)
    local o = {}
    for k, v in pairs(t) do o[k] = v end
    for k, v in pairs(extra) do o[k] = v end
    return o
  end
  local ROWS = {
    { "EncryptData", "TR31_D0_SYMMETRIC_DATA_ENCRYPTION_KEY", function(k) return { KeyIdentifier = k, PlainText = M,
      EncryptionAttributes = { Symmetric = { Mode = "ECB" } } } end },
    { "EncryptData", "TR31_B0_BASE_DERIVATION_KEY", function(k) return { KeyIdentifier = k, PlainText = M,
      EncryptionAttributes = { Dukpt = { KeySerialNumber = "FFFF9876543210E00001" } } } end },
    { "DecryptData", "TR31_E1_EMV_MKEY_CONFIDENTIALITY", function(k) return { KeyIdentifier = k, CipherText = M,
      DecryptionAttributes = { Emv = with(emv, { SessionDerivationData = "0001000000000000" }) } } end },
    { "GenerateCardValidationData", "TR31_C0_CARD_VERIFICATION_KEY", function(k) return { KeyIdentifier = k,
      PrimaryAccountNumber = PAN, GenerationAttributes = { CardVerificationValue1 = { CardExpiryDate = "8701",
        ServiceCode = "101" } } } end },
    { "VerifyCardValidationData", "TR31_E6_EMV_MKEY_OTHER", function(k) return { KeyIdentifier = k,
      PrimaryAccountNumber = PAN, ValidationData = "123", VerificationAttributes = { DynamicCardVerificationCode = {
        PanSequenceNumber = "00", UnpredictableNumber = "1234", ApplicationTransactionCounter = "01",
        TrackData = "1234" } } } end },
    { "GeneratePinData", "TR31_V2_VISA_PIN_VERIFICATION_KEY", function(k) return { GenerationKeyIdentifier = k,
      EncryptionKeyIdentifier = k, PrimaryAccountNumber = PAN, PinBlockFormat = "ISO_FORMAT_0",
      GenerationAttributes = { VisaPin = { PinVerificationKeyIndex = 1 } } } end },
    { "GeneratePinData", "TR31_V1_IBM3624_PIN_VERIFICATION_KEY", function(k) return { GenerationKeyIdentifier = k,
      EncryptionKeyIdentifier = k, PrimaryAccountNumber = PAN, PinBlockFormat = "ISO_FORMAT_0",
      GenerationAttributes = { Ibm3624RandomPin = { DecimalizationTable = "0123456789012345",
        PinValidationDataPadCharacter = "F", PinValidationData = "1234" } } } end },
    { "VerifyPinData", "TR31_V2_VISA_PIN_VERIFICATION_KEY", function(k) return { VerificationKeyIdentifier = k,
      EncryptionKeyIdentifier = k, PrimaryAccountNumber = PAN, PinBlockFormat = "ISO_FORMAT_0",
      EncryptedPinBlock = "31D4BEB2D4BC4E03", VerificationAttributes = { VisaPin = { PinVerificationKeyIndex = 1,
        VerificationValue = "1234" } } } end },
    { "TranslatePinData", "TR31_P0_PIN_ENCRYPTION_KEY", function(k) return { IncomingKeyIdentifier = k,
      OutgoingKeyIdentifier = k, EncryptedPinBlock = "31D4BEB2D4BC4E03",
      IncomingTranslationAttributes = { IsoFormat0 = { PrimaryAccountNumber = PAN } },
      OutgoingTranslationAttributes = { IsoFormat0 = { PrimaryAccountNumber = PAN } } } end },
    { "GenerateMac", "TR31_M6_ISO_9797_5_CMAC_KEY", function(k) return { KeyIdentifier = k, MessageData = M,
      GenerationAttributes = { Algorithm = "CMAC" } } end },
    { "GenerateMac", "TR31_M7_HMAC_KEY", function(k) return { KeyIdentifier = k, MessageData = M,
      GenerationAttributes = { Algorithm = "HMAC_SHA256" } } end },
    { "VerifyMac", "TR31_B0_BASE_DERIVATION_KEY", function(k) return { KeyIdentifier = k, MessageData = M,
      Mac = "00000000", VerificationAttributes = { DukptCmac = dukpt() } } end },
    { "VerifyMac", "TR31_E2_EMV_MKEY_INTEGRITY", function(k) return { KeyIdentifier = k, MessageData = M,
      Mac = "00000000", VerificationAttributes = { EmvMac = with(emv, { SessionKeyDerivationMode = "VISA",
        SessionKeyDerivationValue = { ApplicationTransactionCounter = "0001" } }) } } end },
    { "VerifyAuthRequestCryptogram", "TR31_E0_EMV_MKEY_APP_CRYPTOGRAMS", function(k) return { KeyIdentifier = k,
      TransactionData = TX, AuthRequestCryptogram = "0000000000000000", MajorKeyDerivationMode = "EMV_OPTION_A",
      SessionKeyDerivationAttributes = { Amex = { PrimaryAccountNumber = PAN, PanSequenceNumber = "00" } } } end },
    { "GenerateMacEmvPinChange", "TR31_P0_PIN_ENCRYPTION_KEY", function(k) return { NewPinPekIdentifier = k,
      NewEncryptedPinBlock = "31D4BEB2D4BC4E03", PinBlockFormat = "ISO_FORMAT_0", SecureMessagingIntegrityKeyIdentifier = k,
      SecureMessagingConfidentialityKeyIdentifier = k, MessageData = "8424000210000000",
      DerivationMethodAttributes = { Visa = with(emv, { ApplicationTransactionCounter = "0001",
        AuthorizationRequestKeyIdentifier = k }) } } end },
    { "GenerateAs2805KekValidation", "TR31_K0_KEY_ENCRYPTION_KEY", function(k) return { KeyIdentifier = k,
      RandomKeySendVariantMask = "VARIANT_MASK_82C0", KekValidationType = { KekValidationRequest = {
        DeriveKeyAlgorithm = "TDES_2KEY" } } } end },
  }
  for _, row in ipairs(ROWS) do
    it(("%s takes %s"):format(row[1], row[2]), function()
      refused(row[1], row[3](other), "ValidationException", row[2])
    end)
  end
  it("ISO9797_ALGORITHM1 takes TR31_M1 (a TR31_M3 key is refused)", function()
    local m3 = import("TDES_2KEY", K2, "TR31_M3_ISO_9797_3_MAC_KEY", GV)
    refused("GenerateMac", { KeyIdentifier = m3, MessageData = M, GenerationAttributes = {
      Algorithm = "ISO9797_ALGORITHM1" } }, "ValidationException", "TR31_M1_ISO_9797_1_MAC_KEY")
  end)
end)
