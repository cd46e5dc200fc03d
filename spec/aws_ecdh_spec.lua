-- `serve aws`'s ECDH key agreement (payhsm.aws.ecdh, data_keys, the WrappedKey members of
-- the data plane, DiffieHellmanTr31KeyBlock in ImportKey/ExportKey), driven as AWS Payment
-- Cryptography's ECDH samples drive the real service (aws-samples/
-- samples-for-payment-cryptography-service, python_sdk_example/ecdh_flows: an ECC_NIST_P256
-- TR31_K3 key pair with DeriveKey, the client's CA imported as a RootCertificatePublicKey, the
-- client's P-256 key certified by it, NIST_SP800 with SHA_512 into AES_128, ISO format 4 PIN
-- blocks). The client side here is payhsm's core (core.ec, core.pki), whose ECDH and KDFs
-- agree with pyca/cryptography (spec/ec_spec.lua, tools/crosscheck/ecdh_pyca.py).
-- Known answers: [FIPS-197] Appendix C.1 (AES-128 of 00112233..EEFF under 000102..0F is
-- 69C4E0D86A7B0430D8CDB78070B4C55A).
local hsm = require "payhsm"
local core = require "payhsm.core"
local util = require "payhsm.util"
local ip = require "spec.support.aws.inproc"

local PAN = "4123456789012345"
local PEK_HEX = "89ABCDEF0123456776543210FEDCBA98"
local svc, kek_arn, kek, ecdh_arn, service_pub, ca_arn, ca_key, pek_arn, pek

local function ok(fn, op, input)
  local out, err = fn(svc, op, input)
  assert(out, err and (err.type .. ": " .. tostring(err.message)))
  return out
end
local function refused(fn, op, input, pattern)
  local out, err = fn(svc, op, input)
  assert.is_nil(out)
  assert.equal("ValidationException", err.type)
  if pattern then assert.matches(pattern, err.message) end
end
local b64 = util.b64encode

-- an ECC key pair of the service; returns its ARN and public key (from its certificate)
local function ecc_pair(alg, derive_usage)
  local out = ok(ip.control, "CreateKey", { Exportable = false, DeriveKeyUsage = derive_usage, KeyAttributes = {
    KeyAlgorithm = alg, KeyClass = "ASYMMETRIC_KEY_PAIR", KeyUsage = "TR31_K3_ASYMMETRIC_KEY_FOR_KEY_AGREEMENT",
    KeyModesOfUse = { DeriveKey = true } } })
  local cert = ok(ip.control, "GetPublicKeyCertificate", { KeyIdentifier = out.Key.KeyArn })
  return out.Key.KeyArn, assert(core.pki.parse(util.b64decode(cert.KeyCertificate))).public_key, out.Key, cert
end

-- the client: a fresh key pair on curve, certified by the client CA (ca_key unless signer)
local function client(curve, signer, opts)
  local k = core.ec.generate(curve or "P-256")
  local o = { subject = "client", issuer = "Client CA", usage = "agree" }
  for n, v in pairs(opts or {}) do o[n] = v end
  return k, b64(core.pki.certificate(signer or ca_key, k, o))
end

local function ecdh_params(cert, alg, info, kdf, hash)
  return { CertificateAuthorityPublicKeyIdentifier = ca_arn, PublicKeyCertificate = cert, KeyAlgorithm = alg,
    KeyDerivationFunction = kdf or "NIST_SP800", KeyDerivationHashAlgorithm = hash or "SHA_512", SharedInformation = info }
end

setup(function()
  svc = ip.service()
  kek_arn, kek = ip.import_kek(svc, "AES_256", ("0123456789ABCDEF"):rep(4))
  ecdh_arn, service_pub = ecc_pair("ECC_NIST_P256")
  -- the client's certificate authority (AWS Private CA in the sample): a P-256 root
  ca_key = core.ec.generate("P-256")
  local root = core.pki.certificate(ca_key, ca_key, { subject = "Client CA", issuer = "Client CA", ca = true })
  ca_arn = ok(ip.control, "ImportKey", { KeyMaterial = { RootCertificatePublicKey = { KeyAttributes = {
    KeyAlgorithm = "ECC_NIST_P256", KeyClass = "PUBLIC_KEY", KeyModesOfUse = { Verify = true },
    KeyUsage = "TR31_S0_ASYMMETRIC_KEY_FOR_DIGITAL_SIGNATURE" }, PublicKeyCertificate = b64(root) } } }).Key.KeyArn
  pek_arn = ip.import(svc, kek_arn, kek, "TDES_2KEY", PEK_HEX, "TR31_P0_PIN_ENCRYPTION_KEY", { "Encrypt", "Decrypt" })
  pek = hsm.key.import("TDES_2KEY", PEK_HEX)
end)

describe("aws ECDH: keys", function()
  it("CreateKey makes ECC key pairs on each curve, with a certificate from the service's CA", function()
    for alg, curve in pairs { ECC_NIST_P256 = "P-256", ECC_NIST_P384 = "P-384", ECC_NIST_P521 = "P-521" } do
      local _, pub, key, cert = ecc_pair(alg, "TR31_P0_PIN_ENCRYPTION_KEY")
      assert.equal(curve, pub:curve())
      assert.equal(alg, key.KeyAttributes.KeyAlgorithm)
      assert.equal("ASYMMETRIC_KEY_PAIR", key.KeyAttributes.KeyClass)
      assert.equal("TR31_P0_PIN_ENCRYPTION_KEY", key.DeriveKeyUsage)
      local chain = assert(core.pki.parse(util.b64decode(cert.KeyCertificateChain)))
      assert.is_true(core.pki.verify(util.b64decode(cert.KeyCertificate), chain.public_key))
    end
  end)
  it("refuses DeriveKeyUsage on other keys, and ECC roots of the wrong curve", function()
    refused(ip.control, "CreateKey", { Exportable = true, DeriveKeyUsage = "TR31_P0_PIN_ENCRYPTION_KEY",
      KeyAttributes = { KeyAlgorithm = "AES_128", KeyClass = "SYMMETRIC_KEY", KeyUsage = "TR31_K0_KEY_ENCRYPTION_KEY",
        KeyModesOfUse = { Encrypt = true, Decrypt = true, Wrap = true, Unwrap = true } } }, "DeriveKeyUsage")
    local k = core.ec.generate("P-384")
    refused(ip.control, "ImportKey", { KeyMaterial = { RootCertificatePublicKey = { KeyAttributes = {
      KeyAlgorithm = "ECC_NIST_P256", KeyClass = "PUBLIC_KEY", KeyModesOfUse = { Verify = true },
      KeyUsage = "TR31_S0_ASYMMETRIC_KEY_FOR_DIGITAL_SIGNATURE" }, PublicKeyCertificate = b64(core.pki.certificate(k, k,
      { subject = "r", issuer = "r", ca = true })) } } }, "holds an ECC key on P%-384, not ECC_NIST_P256")
  end)
end)

describe("aws ECDH: PIN set and reveal as AWS's sample does them", function()
  it("PIN set: an ISO 4 block under the ECDH key becomes an ISO 0 block under the PEK", function()
    local k, cert = client()
    local info = hsm.random(32)
    -- the client's side of the agreement (ConcatKDFHash SHA-512 into AES-128 in the sample)
    local derived = assert(core.ec.derive(k, service_pub, { kdf = "NIST_SP800", hash = "SHA_512", algorithm = "AES_128",
      shared_info = info }))
    local block = hsm.pin.encrypt(derived, "ISO_FORMAT_4", "1234", PAN)
    local out = ok(ip.data, "TranslatePinData", { EncryptedPinBlock = block, IncomingKeyIdentifier = ecdh_arn,
      OutgoingKeyIdentifier = pek_arn, IncomingWrappedKey = { WrappedKeyMaterial = { DiffieHellmanSymmetricKey =
        ecdh_params(cert, "AES_128", info) } },
      IncomingTranslationAttributes = { IsoFormat4 = { PrimaryAccountNumber = PAN } },
      OutgoingTranslationAttributes = { IsoFormat0 = { PrimaryAccountNumber = PAN } } })
    assert.equal("1234", hsm.pin.decrypt(pek, "ISO_FORMAT_0", out.PinBlock, PAN))
    assert.equal(pek_arn, out.KeyArn)
    -- other shared information derives another key: the block no longer reads
    local err = select(2, ip.data(svc, "TranslatePinData", { EncryptedPinBlock = block, IncomingKeyIdentifier = ecdh_arn,
      OutgoingKeyIdentifier = pek_arn, IncomingWrappedKey = { WrappedKeyMaterial = { DiffieHellmanSymmetricKey =
        ecdh_params(cert, "AES_128", hsm.random(32)) } },
      IncomingTranslationAttributes = { IsoFormat4 = { PrimaryAccountNumber = PAN } },
      OutgoingTranslationAttributes = { IsoFormat0 = { PrimaryAccountNumber = PAN } } }))
    assert.equal("ValidationException", err.type)
  end)
  it("PIN reveal: the PEK's ISO 0 block comes back as ISO 4 under the client's derived key (ANSI X9.63)", function()
    local k, cert = client()
    local info = hsm.random(16)
    local out = ok(ip.data, "TranslatePinData", { EncryptedPinBlock = hsm.pin.encrypt(pek, "ISO_FORMAT_0", "98765", PAN),
      IncomingKeyIdentifier = pek_arn, OutgoingKeyIdentifier = ecdh_arn, OutgoingWrappedKey = { WrappedKeyMaterial = {
        DiffieHellmanSymmetricKey = ecdh_params(cert, "AES_256", info, "ANSI_X963", "SHA_256") } },
      IncomingTranslationAttributes = { IsoFormat0 = { PrimaryAccountNumber = PAN } },
      OutgoingTranslationAttributes = { IsoFormat4 = { PrimaryAccountNumber = PAN } } })
    local derived = assert(core.ec.derive(k, service_pub, { kdf = "ANSI_X963", hash = "SHA_256", algorithm = "AES_256",
      shared_info = info }))
    assert.equal("98765", hsm.pin.decrypt(derived, "ISO_FORMAT_4", out.PinBlock, PAN))
    assert.equal(ecdh_arn, out.KeyArn)
    assert.equal(hsm.kcv(derived, "CMAC"), out.KeyCheckValue)
  end)
end)

describe("aws ECDH: wrapped working keys in data-plane requests", function()
  it("PIN reset: GeneratePinData puts the new PIN's block under the client's ECDH key (EncryptionWrappedKey)", function()
    local pvk_arn = ip.import(svc, kek_arn, kek, "TDES_2KEY", "FEDCBA98765432100123456789ABCDEF",
      "TR31_V2_VISA_PIN_VERIFICATION_KEY", { "Generate", "Verify" })
    local k, cert = client()
    local out = ok(ip.data, "GeneratePinData", { GenerationKeyIdentifier = pvk_arn, EncryptionKeyIdentifier = ecdh_arn,
      PrimaryAccountNumber = PAN, PinBlockFormat = "ISO_FORMAT_4", GenerationAttributes = { VisaPin = {
        PinVerificationKeyIndex = 1 } }, EncryptionWrappedKey = { WrappedKeyMaterial = { DiffieHellmanSymmetricKey =
          ecdh_params(cert, "AES_128", "5EED") } } })
    local derived = assert(core.ec.derive(k, service_pub, { kdf = "NIST_SP800", hash = "SHA_512", algorithm = "AES_128",
      shared_info = "5EED" }))
    local pin = hsm.pin.decrypt(derived, "ISO_FORMAT_4", out.EncryptedPinBlock, PAN)
    assert.matches("^%d%d%d%d$", pin)
    -- the PVV is the new PIN's [the Visa PVV of the PIN the client reads]
    assert.equal(hsm.pin.visa_pvv(hsm.key.import("TDES_2KEY", "FEDCBA98765432100123456789ABCDEF"), pin, PAN, "1"),
      out.PinData.VerificationValue)
    assert.equal(ecdh_arn, out.EncryptionKeyArn)
  end)
  it("EncryptData under a DiffieHellmanSymmetricKey: the client deciphers with its derived key", function()
    local k, cert = client()
    local out = ok(ip.data, "EncryptData", { KeyIdentifier = ecdh_arn, PlainText = "00112233445566778899AABBCCDDEEFF",
      EncryptionAttributes = { Symmetric = { Mode = "ECB" } }, WrappedKey = { WrappedKeyMaterial = {
        DiffieHellmanSymmetricKey = ecdh_params(cert, "AES_128", "0A0B0C0D") } } })
    local derived = assert(core.ec.derive(k, service_pub, { kdf = "NIST_SP800", hash = "SHA_512", algorithm = "AES_128",
      shared_info = "0A0B0C0D" }))
    assert.equal("00112233445566778899AABBCCDDEEFF", hsm.cipher.decrypt(derived, "ECB", out.CipherText))
    assert.equal(ecdh_arn, out.KeyArn)
  end)
  it("EncryptData under a Tr31KeyBlock wrapped by the named KEK [FIPS-197]", function()
    local dek = hsm.key.import("AES_128", "000102030405060708090A0B0C0D0E0F", { usage = "D0", mode = "B",
      exportability = "E" })
    local block = assert(hsm.tr31.wrap(kek, dek, { version = "D" }))
    local out = ok(ip.data, "EncryptData", { KeyIdentifier = kek_arn, PlainText = "00112233445566778899AABBCCDDEEFF",
      EncryptionAttributes = { Symmetric = { Mode = "ECB" } }, WrappedKey = { WrappedKeyMaterial = {
        Tr31KeyBlock = block }, KeyCheckValueAlgorithm = "CMAC" } })
    assert.equal("69C4E0D86A7B0430D8CDB78070B4C55A", out.CipherText)
    assert.equal(hsm.kcv(dek, "CMAC"), out.KeyCheckValue)
    assert.equal(kek_arn, out.KeyArn)
    -- a wrapped PIN key is not a data key
    local p0 = hsm.key.import("AES_128", "000102030405060708090A0B0C0D0E0F", { usage = "P0", mode = "B" })
    refused(ip.data, "EncryptData", { KeyIdentifier = kek_arn, PlainText = "00112233445566778899AABBCCDDEEFF",
      EncryptionAttributes = { Symmetric = { Mode = "ECB" } }, WrappedKey = { WrappedKeyMaterial = {
        Tr31KeyBlock = assert(hsm.tr31.wrap(kek, p0, { version = "D" })) } } }, "usage TR31_P0")
  end)
end)

describe("aws ECDH: key blocks under an agreed key", function()
  local function kbpk_for(k, info)
    return assert(core.ec.derive(k, service_pub, { kdf = "ANSI_X963", hash = "SHA_384", algorithm = "AES_256",
      shared_info = info, attrs = { usage = "K1", mode = "B" } }))
  end
  local function dh(cert, info, extra)
    local t = { PrivateKeyIdentifier = ecdh_arn, CertificateAuthorityPublicKeyIdentifier = ca_arn,
      PublicKeyCertificate = cert, DeriveKeyAlgorithm = "AES_256", KeyDerivationFunction = "ANSI_X963",
      KeyDerivationHashAlgorithm = "SHA_384", DerivationData = { SharedInformation = info } }
    for n, v in pairs(extra or {}) do t[n] = v end
    return t
  end
  it("TranslateKeyMaterial: a block under the agreed key comes out under the service's KEK", function()
    local k, cert = client()
    local work = hsm.key.import("TDES_2KEY", PEK_HEX, { usage = "P0", mode = "B", exportability = "E" })
    local incoming = dh(cert, "C0FFEE")
    incoming.WrappedKeyBlock = assert(hsm.tr31.wrap(kbpk_for(k, "C0FFEE"), work, { version = "D" }))
    local out = ok(ip.data, "TranslateKeyMaterial", { IncomingKeyMaterial = { DiffieHellmanTr31KeyBlock = incoming },
      OutgoingKeyMaterial = { Tr31KeyBlock = { WrappingKeyIdentifier = kek_arn } } })
    assert.equal("TR31_KEY_BLOCK", out.WrappedKey.WrappedKeyMaterialFormat)
    assert.equal(hsm.kcv(work), out.WrappedKey.KeyCheckValue)
    local back, header = assert(hsm.tr31.unwrap(kek, out.WrappedKey.WrappedKeyMaterial))
    assert.equal(hsm.kcv(work), hsm.kcv(back))
    assert.equal("P0", header.usage)
    -- a block under another agreed key does not open
    incoming.WrappedKeyBlock = assert(hsm.tr31.wrap(kbpk_for(k, "C0FFEF"), work, { version = "D" }))
    refused(ip.data, "TranslateKeyMaterial", { IncomingKeyMaterial = { DiffieHellmanTr31KeyBlock = incoming },
      OutgoingKeyMaterial = { Tr31KeyBlock = { WrappingKeyIdentifier = kek_arn } } }, "does not unwrap")
  end)
  it("ImportKey and ExportKey with a DiffieHellmanTr31KeyBlock", function()
    local k, cert = client()
    local work = hsm.key.import("AES_128", "000102030405060708090A0B0C0D0E0F", { usage = "D0", mode = "B",
      exportability = "E" })
    local d = dh(cert, "0102")
    d.WrappedKeyBlock = assert(hsm.tr31.wrap(kbpk_for(k, "0102"), work, { version = "D" }))
    local key = ok(ip.control, "ImportKey", { KeyMaterial = { DiffieHellmanTr31KeyBlock = d } }).Key
    assert.equal(hsm.kcv(work, "CMAC"), key.KeyCheckValue)
    assert.equal("TR31_D0_SYMMETRIC_DATA_ENCRYPTION_KEY", key.KeyAttributes.KeyUsage)
    local out = ok(ip.control, "ExportKey", { ExportKeyIdentifier = key.KeyArn, KeyMaterial = {
      DiffieHellmanTr31KeyBlock = dh(cert, "0304") } })
    local back = assert(hsm.tr31.unwrap(kbpk_for(k, "0304"), out.WrappedKey.KeyMaterial))
    assert.equal(hsm.kcv(work, "CMAC"), hsm.kcv(back, "CMAC"))
    assert.equal(ecdh_arn, out.WrappedKey.WrappingKeyArn)
  end)
  it("refuses certificates the CA did not sign, other curves, expired ones, and keys that are not K3", function()
    local _, cert = client(nil, core.ec.generate("P-256"))
    local base = { IncomingKeyMaterial = { DiffieHellmanTr31KeyBlock = dh(cert, "01", { WrappedKeyBlock = ("A"):rep(56) }) },
      OutgoingKeyMaterial = { Tr31KeyBlock = { WrappingKeyIdentifier = kek_arn } } }
    refused(ip.data, "TranslateKeyMaterial", base, "not signed by the certificate authority")
    _, cert = client("P-384")
    base.IncomingKeyMaterial.DiffieHellmanTr31KeyBlock.PublicKeyCertificate = cert
    refused(ip.data, "TranslateKeyMaterial", base, "ECC key on P%-256")
    _, cert = client(nil, nil, { not_before = os.time() - 10 * 86400, days = 2 })
    base.IncomingKeyMaterial.DiffieHellmanTr31KeyBlock.PublicKeyCertificate = cert
    refused(ip.data, "TranslateKeyMaterial", base, "not valid now")
    _, cert = client()
    base.IncomingKeyMaterial.DiffieHellmanTr31KeyBlock.PublicKeyCertificate = cert
    base.IncomingKeyMaterial.DiffieHellmanTr31KeyBlock.PrivateKeyIdentifier = kek_arn
    refused(ip.data, "TranslateKeyMaterial", base, "not an ECC key pair for key agreement")
    base.IncomingKeyMaterial.DiffieHellmanTr31KeyBlock.PrivateKeyIdentifier = ecdh_arn
    base.IncomingKeyMaterial.DiffieHellmanTr31KeyBlock.CertificateAuthorityPublicKeyIdentifier = kek_arn
    refused(ip.data, "TranslateKeyMaterial", base, "imported root certificate")
    base.IncomingKeyMaterial.DiffieHellmanTr31KeyBlock.CertificateAuthorityPublicKeyIdentifier = ca_arn
    -- an HMAC key cannot protect a key block
    base.IncomingKeyMaterial.DiffieHellmanTr31KeyBlock.DeriveKeyAlgorithm = "HMAC_SHA224"
    refused(ip.data, "TranslateKeyMaterial", base, "must be a TDES or AES algorithm")
  end)
  it("a key pair's DeriveKeyUsage limits what its agreements derive", function()
    local arn, pub = ecc_pair("ECC_NIST_P256", "TR31_K1_KEY_BLOCK_PROTECTION_KEY")
    local k, cert = client()
    local derived = assert(core.ec.derive(k, pub, { kdf = "NIST_SP800", hash = "SHA_512", algorithm = "AES_128",
      shared_info = "01" }))
    refused(ip.data, "TranslatePinData", { EncryptedPinBlock = hsm.pin.encrypt(derived, "ISO_FORMAT_4", "1234", PAN),
      IncomingKeyIdentifier = arn, OutgoingKeyIdentifier = pek_arn, IncomingWrappedKey = { WrappedKeyMaterial = {
        DiffieHellmanSymmetricKey = ecdh_params(cert, "AES_128", "01") } },
      IncomingTranslationAttributes = { IsoFormat4 = { PrimaryAccountNumber = PAN } },
      OutgoingTranslationAttributes = { IsoFormat0 = { PrimaryAccountNumber = PAN } } },
      "derives TR31_K1_KEY_BLOCK_PROTECTION_KEY keys")
  end)
end)
